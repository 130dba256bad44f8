"""Gas for computation: every loop iteration and every call of a contract's own code costs gas.

**Why.** Gas used to bound state access only, so a contract method that loops without
touching state (``while True: pass``, a comprehension over ``range(10**12)``) ran for ever on
every validator that executed it: one transaction stopped the chain, and a block proposer
could not even tell in advance. A transaction's gas limit must bound its CPU time too, and the
bound must be the same on every validator, so it cannot be a clock: it counts *steps*.

**What a step is.** One iteration of any loop written in contract code (``for``, ``while``,
and each ``for`` clause of a comprehension or generator expression) and one call of any
function written in contract code (methods, module-level helpers, nested functions, lambdas,
methods of the classes a contract module defines), and each item a ``yield from`` passes on.
Each step costs :data:`STEP_GAS`.
The number of steps is a function of the code and its inputs, so every validator charges the
same gas and fails the same transaction at the same point: the receipt is the same bytes.

**How.** :func:`metered_code` parses the source of the module that defines a function (the
same file the code hash covers), rewrites it (:class:`_Meter`: loop iterables are wrapped in
``__accord_steps__(...)``, each ``while`` body and each function body starts with
``__accord_step__()``), compiles it with the original file name and line numbers, and takes
the code object of the same function from the result. The restricted class of
:mod:`accord.contracts.determinism` runs that code instead of the original; nothing else about
the function changes (name, defaults, closure, line numbers in tracebacks). The two step
functions charge the :class:`~accord.contracts.base.Context` the runtime is executing
(:data:`CURRENT`, set around each transaction and query); outside one (a contract's
``__init__`` at start-up, a test calling a helper) a step is free.

A contract cannot dodge the charge: names starting with ``__accord_`` are refused by the
determinism check, the step functions live in the restricted globals (a module-level
assignment changes the original module, not them), and running out of gas is sticky (catching
``OutOfGas`` fails the transaction anyway).

**Not metered:** loops inside builtins and C code (``sum(range(n))``, ``sorted``, ``bytes *
n``, big-integer powers). Their cost is bounded by their input sizes, which contract code can
make large; a contract that is registered by vote is audited code, and docs/determinism.md
lists these.
"""

from __future__ import annotations

import ast
import hashlib
import linecache
import types
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from accord.base.errors import GenesisError

if TYPE_CHECKING:
    from accord.contracts.base import Context

STEP_GAS = 10
"""Gas per step. A step costs well under a microsecond of CPU; a token transfer's intrinsic
gas (2,000 plus 5 a byte) buys a few hundred steps, the default transaction limit (1,000,000)
about 100,000: a few milliseconds of Python."""

STEP = "__accord_step__"
STEPS = "__accord_steps__"
RESERVED_PREFIX = "__accord_"
"""Names the meter adds to contract code; contract code may not use them."""

CURRENT: ContextVar[Context | None] = ContextVar("accord_metered_context", default=None)
"""The context of the transaction (or query) being executed; the runtime sets it."""


def step() -> None:
    """One step of contract code: charge the executing context, if any."""
    ctx = CURRENT.get()
    if ctx is not None:
        ctx.charge(STEP_GAS)


def steps(iterable: Iterable[Any]) -> Iterator[Any]:
    """The items of ``iterable``, one step charged before each (a loop that ends early pays
    only for what it took)."""
    ctx = CURRENT.get()
    if ctx is None:
        yield from iterable
        return
    charge = ctx.charge
    for item in iterable:
        charge(STEP_GAS)
        yield item


def meter_globals(g: dict[str, Any]) -> None:
    """Put the step functions into the globals metered code runs with."""
    g[STEP] = step
    g[STEPS] = steps


class _Meter(ast.NodeTransformer):
    """Adds a step to every loop iteration and function call of a module's code."""

    @staticmethod
    def _step(at: ast.AST) -> ast.stmt:
        call = ast.Expr(ast.Call(ast.Name(STEP, ast.Load()), [], []))
        return ast.copy_location(call, at)

    @staticmethod
    def _wrap(expr: ast.expr) -> ast.expr:
        call = ast.Call(ast.Name(STEPS, ast.Load()), [expr], [])
        return ast.copy_location(call, expr)

    def _body(self, body: list[ast.stmt], at: ast.AST) -> list[ast.stmt]:
        # A docstring stays the first statement (it is what ``__doc__`` reads).
        doc = (
            body[:1]
            if body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
            else []
        )
        return [*doc, self._step(at), *body[len(doc) :]]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        node.body = self._body(node.body, node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        node.body = self._body(node.body, node)
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter)
        return node

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        self.generic_visit(node)
        return node  # contract code has no event loop to run it; left as written

    def visit_While(self, node: ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body = [self._step(node), *node.body]
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        # A lambda is contract code that a builtin can call without any loop of the
        # contract's (``any(map(lambda i: 0, range(10**18)))``, ``iter(lambda: 0, 1)``): each
        # call is a step. ``step()`` returns None, so ``None or body`` is the body's value.
        self.generic_visit(node)
        call = ast.Call(ast.Name(STEP, ast.Load()), [], [])
        node.body = ast.copy_location(ast.BoolOp(ast.Or(), [call, node.body]), node.body)
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
        # ``yield from`` is a loop run by the interpreter: each item it passes on is a step.
        # (The items go through :func:`steps`, so a value sent into the outer generator is
        # not forwarded to the inner one: contract code has no use for ``send``.)
        self.generic_visit(node)
        node.value = self._wrap(node.value)
        return node


_Key = tuple[str, int]
_compiled: dict[tuple[str, bytes], dict[_Key, types.CodeType]] = {}


def _codes(code: types.CodeType, out: dict[_Key, types.CodeType]) -> None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.setdefault((const.co_qualname, const.co_firstlineno), const)
            _codes(const, out)


def _metered_module(filename: str) -> dict[_Key, types.CodeType] | None:
    """Every function's metered code in the module at ``filename``, by (qualname, first line);
    None when its source cannot be read (a class made at run time)."""
    lines = linecache.getlines(filename)
    if not lines:
        return None
    source = "".join(lines)
    key = (filename, hashlib.sha256(source.encode()).digest())
    codes = _compiled.get(key)
    if codes is None:
        tree = _Meter().visit(ast.parse(source, filename))
        ast.fix_missing_locations(tree)
        codes = {}
        _codes(compile(tree, filename, "exec", dont_inherit=True), codes)
        _compiled[key] = codes
    return codes


class Unmeterable(GenesisError):
    """A contract function whose source does not match its code (edited after import)."""


def metered_code(fn: types.FunctionType, *, strict: bool = True) -> types.CodeType | None:
    """``fn``'s code with steps added, or None when its module's source is not available.

    When the source is there but holds no function of that name at that line with the same
    closure variables, a contract's method (``strict``) raises :class:`Unmeterable`: running it
    unmetered would let a loop run free, and running another function would run code the code
    hash did not cover. A module-level function (``strict=False``) is then left as it is:
    every function written in a module's source is found, so a miss is one made by other code
    at run time (a test framework's wrapper that borrows a test's file and line), which
    contract code cannot make (``exec``, ``compile`` and ``__code__`` are refused)."""
    code = fn.__code__
    codes = _metered_module(code.co_filename)
    if codes is None:
        return None
    new = codes.get((code.co_qualname, code.co_firstlineno))
    if new is None or new.co_freevars != code.co_freevars or new.co_argcount != code.co_argcount:
        if not strict:
            return None
        raise Unmeterable(
            f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno}): its source file "
            "changed after it was imported; restart the node"
        )
    return new


__all__ = [
    "CURRENT",
    "RESERVED_PREFIX",
    "STEP_GAS",
    "Unmeterable",
    "meter_globals",
    "metered_code",
    "step",
    "steps",
]
