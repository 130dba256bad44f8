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
``__accord_steps__(...)``, each ``while`` body starts with ``__accord_step__()``, each
function body with ``__accord_run__ = __accord_enter__()`` and runs inside ``try: ...
finally: __accord_leave__(__accord_run__)``, each lambda's body becomes
``__accord_call__(lambda: body)``), compiles it with the original file name and line numbers, and takes
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

**Depth.** A call of contract code is also a level of nesting: past :data:`MAX_DEPTH` levels
the transaction fails (a ``Revert``) at the same call on every validator. Python's own
recursion limit would have stopped it instead, at a point that depends on how deep the
node's stack already was (a proposer builds from another call path than a validator
validates), and so written different receipts on different validators. A generator counts as
a level from its first item until it finishes (while it is suspended too), which is the same
on every validator; one finished by the garbage collector after its transaction gives its
level back to that transaction's run, never to a later one.

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
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from accord.base.errors import GenesisError, Revert

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

MAX_DEPTH = 100
"""How deeply contract code may nest its own calls in one transaction (functions, lambdas,
generators). Python's own limit counts the node's frames too, which differ between a
proposer and a validator, so a recursion stopped by it could end at a different point on
each: this one counts contract frames only and ends at the same call everywhere, far below
Python's limit (a level costs at most three Python frames)."""

ENTER = "__accord_enter__"
LEAVE = "__accord_leave__"
CALL = "__accord_call__"
RUN = "__accord_run__"


class Run:
    """What the meter keeps of one transaction (or query): its context and how deeply its
    contract code is nested now."""

    __slots__ = ("ctx", "depth")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.depth = 0


CURRENT: ContextVar[Run | None] = ContextVar("accord_metered_run", default=None)
"""The transaction (or query) being executed; the runtime sets it (:func:`running`)."""


def running(ctx: Context) -> Token[Run | None]:
    """Meter ``ctx``'s execution from now on; give the token back to ``CURRENT.reset``."""
    return CURRENT.set(Run(ctx))


def step() -> None:
    """One step of contract code: charge the executing context, if any."""
    run = CURRENT.get()
    if run is not None:
        run.ctx.charge(STEP_GAS)


def enter() -> Run | None:
    """A call of contract code: one step, one level deeper (past :data:`MAX_DEPTH`, the
    transaction fails with the same :class:`~accord.base.errors.Revert` on every validator).
    Returns the run to hand to :func:`leave`, so a generator finished after its transaction
    (by the garbage collector) changes no later one."""
    run = CURRENT.get()
    if run is None:
        return None
    run.ctx.charge(STEP_GAS)
    if run.depth >= MAX_DEPTH:
        raise Revert(f"contract code nested deeper than {MAX_DEPTH} calls")
    run.depth += 1
    return run


def leave(run: Run | None) -> None:
    """The call :func:`enter` counted has returned (or raised)."""
    if run is not None:
        run.depth -= 1


def call(thunk: Callable[[], Any]) -> Any:
    """A lambda's body, counted as a call (a lambda has no statement to put a ``try`` in)."""
    run = enter()
    try:
        return thunk()
    finally:
        leave(run)


def steps(iterable: Iterable[Any]) -> Iterator[Any]:
    """The items of ``iterable``, one step charged before each (a loop that ends early pays
    only for what it took)."""
    run = CURRENT.get()
    if run is None:
        yield from iterable
        return
    charge = run.ctx.charge
    for item in iterable:
        charge(STEP_GAS)
        yield item


def meter_globals(g: dict[str, Any]) -> None:
    """Put the step functions into the globals metered code runs with."""
    g[STEP] = step
    g[STEPS] = steps
    g[ENTER] = enter
    g[LEAVE] = leave
    g[CALL] = call


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
        """``run = enter()`` then the body inside ``try: ... finally: leave(run)``. A
        docstring stays the first statement (it is what ``__doc__`` reads)."""
        doc = (
            body[:1]
            if body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
            else []
        )
        rest = body[len(doc) :] or [ast.Pass()]
        enter_ = ast.Assign(
            [ast.Name(RUN, ast.Store())], ast.Call(ast.Name(ENTER, ast.Load()), [], [])
        )
        leave_ = ast.Expr(ast.Call(ast.Name(LEAVE, ast.Load()), [ast.Name(RUN, ast.Load())], []))
        guarded = ast.Try(body=rest, handlers=[], orelse=[], finalbody=[leave_])
        return [*doc, ast.copy_location(enter_, at), ast.copy_location(guarded, at)]

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
        # contract's (``any(map(lambda i: 0, range(10**18)))``, ``iter(lambda: 0, 1)``) and
        # that can recurse (``f(f)``): its body runs as ``call(lambda: body)``, a counted
        # call. The inner lambda is made here, after the visit: it is not rewritten again.
        self.generic_visit(node)
        thunk = ast.Lambda(
            ast.arguments(
                posonlyargs=[],
                args=[],
                vararg=None,
                kwonlyargs=[],
                kw_defaults=[],
                kwarg=None,
                defaults=[],
            ),
            node.body,
        )
        call_ = ast.Call(ast.Name(CALL, ast.Load()), [ast.copy_location(thunk, node.body)], [])
        node.body = ast.copy_location(call_, node.body)
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
        # ``yield from`` is a loop run by the interpreter: each item it passes on is a step.
        # (The items go through :func:`steps`, so a value sent into the outer generator is
        # not forwarded to the inner one: contract code has no use for ``send``.)
        self.generic_visit(node)
        node.value = self._wrap(node.value)
        return node


_Key = tuple[str, int]
_compiled: dict[tuple[str, bytes], dict[_Key, types.CodeType | None]] = {}


def _codes(code: types.CodeType, out: dict[_Key, types.CodeType | None]) -> None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            key = (const.co_qualname, const.co_firstlineno)
            # Two functions of one name on one line (``a, b = lambda: 1, lambda: 2``) cannot
            # be told apart by the key: neither is found, rather than one run for the other.
            out[key] = None if key in out else const
            _codes(const, out)


def _metered_module(filename: str) -> dict[_Key, types.CodeType | None] | None:
    """Every function's metered code in the module at ``filename``, by (qualname, first line);
    None when its source cannot be read (a class made at run time)."""
    lines = linecache.getlines(filename)
    if not lines:
        return None
    source = "".join(lines)
    key = (filename, hashlib.sha256(source.encode()).digest())
    codes: dict[_Key, types.CodeType | None] | None = _compiled.get(key)
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
    "MAX_DEPTH",
    "RESERVED_PREFIX",
    "STEP_GAS",
    "Run",
    "call",
    "enter",
    "leave",
    "running",
    "Unmeterable",
    "meter_globals",
    "metered_code",
    "step",
    "steps",
]
