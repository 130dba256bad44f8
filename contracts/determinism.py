"""Determinism by construction: what a contract's code may use, checked when it is registered,
and the restricted builtins it runs with.

Every validator must compute the same receipts for the same block. A contract that reads a
clock, draws random numbers, iterates a set or hashes a str gets a different answer on each
node, and the chain can only refuse every proposal that holds its transactions. So a contract
is refused *before* it runs anywhere:

* :func:`check_contract` (node start, genesis building) and :func:`check_module_source` (a
  future governance ``register`` action, given the module's source) parse the source with
  :mod:`ast` and raise :class:`NondeterministicContract` naming file, line and construct.
* :func:`restricted_class` gives the runtime a subclass whose functions run with a builtins
  dict that lacks what the check refuses, so code that slips past the check (a name built at
  run time, a ``__builtins__`` lookup) fails the same way on every node: a failed receipt
  recording ``NameError`` or ``ImportError``, never a divergent result. Its functions run
  metered code (:mod:`accord.contracts.meter`): every loop iteration and every call of the
  contract's own code costs gas, so a loop that never touches state still ends.

This is a guard rail for audited code, not a sandbox: Python cannot be sandboxed from inside,
and the check errs on the side of refusing. Limits (see docs/determinism.md): a set held in a
variable and iterated later is not recognised, and loops inside builtins are not metered.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from accord.base.errors import GenesisError
from accord.contracts.meter import RESERVED_PREFIX, meter_globals, metered_code

ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "__future__",
        "typing",
        "collections.abc",
        "dataclasses",
        "hashlib",
        "hmac",
        "enum",
        "abc",
        "accord.base.encoding",
        "accord.base.errors",
        "accord.base.genesis",
        "accord.base.types",
        "accord.contracts",
        "accord.contracts.base",
        "accord.zk.notes",
        "accord.zk.babyjub",
        "accord.zk.poseidon",
    }
)
"""Modules a contract may import. They compute pure functions of their inputs; everything
else (``random``, ``time``, ``os``, ``sys``, threads, sockets, files, ``datetime``) is out."""

FORBIDDEN_BUILTINS: dict[str, str] = {
    "id": "an object's address differs between processes",
    "hash": "str and bytes hashes are randomised per process",
    "open": "file I/O",
    "input": "console I/O",
    "print": "console I/O (use events)",
    "breakpoint": "a debugger hook",
    "help": "console I/O",
    "exit": "ends the process",
    "quit": "ends the process",
    "eval": "runs code the check never saw",
    "exec": "runs code the check never saw",
    "compile": "runs code the check never saw",
    "__import__": "imports past the allow-list",
    "globals": "reaches module state and builtins",
    "locals": "reaches frame state",
    "vars": "reaches object internals",
    "dir": "lists internals that differ between Python versions",
    "getattr": "a computed attribute name can reach internals the check cannot see",
    "setattr": "a computed attribute name can reach internals the check cannot see",
    "delattr": "a computed attribute name can reach internals the check cannot see",
    "memoryview": "aliases buffers",
    "float": "floats have no canonical encoding (use integers in the smallest unit)",
    "complex": "no canonical encoding",
    "__builtins__": "reaches the unrestricted builtins",
}
"""Builtins a contract may not name, and why (the reason goes into the error)."""

_ALLOWED_DUNDERS = frozenset({"__init__", "__name__"})

_ACCELERATORS = frozenset({"_hashlib", "_blake2", "_sha2", "_sha256", "_sha512", "_sha1", "_md5"})
"""C modules that allow-listed modules hand out their functions from (``hashlib.sha256`` is
``_hashlib.openssl_sha256``): reachable only through the allow-listed module."""


def _module(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _reached(obj: object) -> str | None:
    """Why ``obj``, found as an attribute of an allow-listed module, must not be used, or None.

    An allow-listed module's own namespace also holds what it imported (``typing.sys``,
    ``genesis.Path``): reaching those would step around the import allow-list."""
    if isinstance(obj, types.ModuleType):
        return None if obj.__name__ in ALLOWED_MODULES else f"module {obj.__name__}"
    origin = getattr(obj, "__module__", None)
    if not isinstance(origin, str) or origin in ALLOWED_MODULES or origin in _ACCELERATORS:
        return None
    if origin == "builtins" and isinstance(obj, type):
        return None  # a builtin type (int, bytes, ...) re-exported: harmless
    return f"{getattr(obj, '__name__', type(obj).__name__)} from module {origin}"


class NondeterministicContract(GenesisError):
    """A contract's code uses something that can differ between validators."""

    code = "nondeterministic_contract"


@dataclass(frozen=True, slots=True)
class Problem:
    filename: str
    line: int
    construct: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}: {self.construct}"


# --------------------------------------------------------------------------------------------
# The static check.


def _import_allowed(module: str) -> bool:
    return module in ALLOWED_MODULES


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_set_expr(node: ast.expr) -> bool:
    if isinstance(node, ast.Set | ast.SetComp):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("set", "frozenset")
    )


class _Visitor(ast.NodeVisitor):
    def __init__(self, filename: str, own: str | None = None, package: str | None = None) -> None:
        self.filename = filename
        self.own = own  # the contract's own top-level package: its modules are checked too
        self.package = package  # for relative imports
        self.problems: list[Problem] = []
        self._functions: list[str] = []
        self._modules: dict[str, types.ModuleType] = {}  # local name -> allow-listed module

    def _add(self, node: ast.AST, what: str) -> None:
        self.problems.append(Problem(self.filename, getattr(node, "lineno", 0), what))

    def _own(self, module: str) -> bool:
        own = self.own
        return own is not None and (module == own or module.startswith(own + "."))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._own(alias.name):
                continue  # a helper of the contract's own package: checked on its own
            if not _import_allowed(alias.name):
                self._add(node, f"import {alias.name} (not in the contract import allow-list)")
                continue
            module = _module(alias.name)
            if module is not None and alias.asname:
                self._modules[alias.asname] = module
            elif module is not None and "." not in alias.name:
                self._modules[alias.name] = module

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            try:
                module = importlib.util.resolve_name("." * node.level + module, self.package or "")
            except (ImportError, ValueError):
                module = ""
            if not self._own(module):
                self._add(node, "relative import outside the contract's own package")
                return
        if self._own(module):
            return  # the contract's own helpers: checked on their own (contracts.installed)

        for alias in node.names:
            full = f"{module}.{alias.name}"
            if _import_allowed(full):
                sub = _module(full)
                if sub is not None:
                    self._modules[alias.asname or alias.name] = sub
                continue
            if not _import_allowed(module):
                self._add(
                    node,
                    f"from {module} import {alias.name} (not in the contract import allow-list)",
                )
                continue
            parent = _module(module)
            if parent is None or alias.name == "*":
                self._add(node, f"from {module} import {alias.name} (cannot be checked)")
                continue
            obj = getattr(parent, alias.name, None)
            why = _reached(obj)
            if why is not None:
                self._add(node, f"from {module} import {alias.name} (it is {why})")
            elif isinstance(obj, types.ModuleType):
                self._modules[alias.asname or alias.name] = obj

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # annotations only: never runs
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._functions.append(node.name)
        self.generic_visit(node)
        self._functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _stores(self, targets: list[ast.expr], node: ast.AST) -> None:
        # An instance lives as long as its node process: state kept on it between calls
        # differs between a validator that restarted and one that did not.
        if not self._functions or self._functions[-1] == "__init__":
            return
        for t in targets:
            for n in ast.walk(t):
                if (
                    isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name)
                    and n.value.id == "self"
                ):
                    self._add(
                        node,
                        f"assignment to self.{n.attr} outside __init__ (state kept "
                        "between calls; keep it in ctx state)",
                    )

    def visit_Assign(self, node: ast.Assign) -> None:
        self._stores(node.targets, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._stores([node.target], node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        why = FORBIDDEN_BUILTINS.get(node.id)
        if why is not None:
            self._add(node, f"builtin {node.id}() ({why})")
        elif node.id.startswith(RESERVED_PREFIX):
            self._add(node, f"name {node.id} (reserved for the gas meter)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        a = node.attr
        base = node.value
        if a.startswith("__") and a.endswith("__") and a not in _ALLOWED_DUNDERS:
            self._add(node, f"attribute {a} (reaches interpreter internals)")
        elif (
            a.startswith("_")
            and a not in _ALLOWED_DUNDERS
            and not (isinstance(base, ast.Name) and base.id in ("self", "cls"))
        ):
            # ctx._rt, ctx._state, ctx._writes: the runtime's internals (other contracts'
            # state, writes past the gas meter) are not part of what a contract may touch.
            self._add(node, f"private attribute {a} of another object")
        elif isinstance(base, ast.Name) and base.id in self._modules:
            module = self._modules[base.id]
            if not hasattr(module, a):
                sub = _module(f"{module.__name__}.{a}")
                why = None if sub is None else _reached(sub)
            else:
                why = _reached(getattr(module, a))
            if why is not None:
                self._add(node, f"{base.id}.{a} (it is {why})")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, float | complex):
            self._add(node, f"float literal {node.value!r} (floats have no canonical encoding)")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Div):
            self._add(node, "true division / (gives a float; use //)")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._stores([node.target], node)
        if isinstance(node.op, ast.Div):
            self._add(node, "true division /= (gives a float; use //=)")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self._add(node, "global statement (module state differs between validators' lifetimes)")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self._add(node, "nonlocal statement (state kept between calls)")

    def _iterates(self, node: ast.expr, where: ast.AST) -> None:
        if _is_set_expr(node):
            self._add(where, "iteration over a set (its order differs between processes; sort it)")

    def visit_For(self, node: ast.For) -> None:
        self._iterates(node.iter, node)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._iterates(node.iter, node.iter)
        self.generic_visit(node)


def _called_names(fn: ast.AST, methods: set[str], functions: set[str]) -> Iterator[str]:
    """Calls a function makes to the checked scope's own functions and methods."""
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in functions:
            yield f.id
        elif (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.value.id in ("self", "cls")
            and f.attr in methods
        ):
            yield "." + f.attr


def _recursion(
    filename: str, functions: dict[str, ast.AST], methods: dict[str, ast.AST]
) -> list[Problem]:
    """Refuse call cycles among the scope's functions: Python's depth limit counts frames of
    the caller too (the node's own stack differs between proposing and validating), so a deep
    recursion can fail on one validator and succeed on another."""
    nodes = {**functions, **{"." + k: v for k, v in methods.items()}}
    graph = {k: set(_called_names(v, set(methods), set(functions))) for k, v in nodes.items()}
    problems: list[Problem] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(k: str, path: list[str]) -> None:
        state[k] = 1
        for nxt in sorted(graph.get(k, ())):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [k, nxt]
                shown = " -> ".join(c.lstrip(".") for c in cycle)
                problems.append(
                    Problem(filename, getattr(nodes[nxt], "lineno", 0), f"recursion {shown}")
                )
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[k] = 2

    for k in sorted(nodes):
        if k not in state:
            visit(k, [k])
    return problems


def _top_level_names(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    defs: dict[str, list[ast.stmt]] = {}
    for stmt in tree.body:
        names: list[str] = []
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [stmt.name]
        elif isinstance(stmt, ast.Assign):
            names = [n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names = [stmt.target.id]
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            names = [(a.asname or a.name).split(".")[0] for a in stmt.names]
        for n in names:
            defs.setdefault(n, []).append(stmt)
    return defs


def _scope(tree: ast.Module, roots: list[str] | None) -> list[ast.stmt]:
    """The top-level statements whose code a contract can run: the root classes and,
    transitively, every top-level name they use (functions, constants, imports). ``None``
    means the whole module (a module registered on its own)."""
    if roots is None:
        return list(tree.body)
    defs = _top_level_names(tree)
    chosen: dict[int, ast.stmt] = {}
    wanted: dict[int, set[str]] = {}  # an import statement -> the names of it that are used
    todo = list(roots)
    done: set[str] = set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        for stmt in defs.get(name, []):
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                wanted.setdefault(id(stmt), set()).add(name)
                chosen[id(stmt)] = stmt
                continue
            if id(stmt) in chosen:
                continue
            chosen[id(stmt)] = stmt
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and node.id in defs:
                    todo.append(node.id)
    out: list[ast.stmt] = []
    for key, stmt in chosen.items():
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            # Only the names the contract uses: ``from m import used, unused`` in a test
            # module must not make the contract answer for ``unused``.
            names = [a for a in stmt.names if (a.asname or a.name).split(".")[0] in wanted[key]]
            part: ast.stmt
            if isinstance(stmt, ast.Import):
                part = ast.Import(names=names)
            else:
                part = ast.ImportFrom(module=stmt.module, names=names, level=stmt.level)
            stmt = ast.copy_location(part, stmt)
        out.append(stmt)
    out.sort(key=lambda s: s.lineno)
    return out


def reachable_statements(tree: ast.Module, roots: list[str] | None) -> list[ast.stmt]:
    """The top-level statements of ``tree`` that the ``roots`` classes can reach (all of
    them for ``None``): what is the contract's code in a module that holds other code too."""
    return _scope(tree, roots)


def check_source(
    source: str,
    filename: str,
    roots: list[str] | None = None,
    *,
    own: str | None = None,
    package: str | None = None,
) -> list[Problem]:
    """Every determinism problem in ``source``; with ``roots``, only in the code those
    top-level classes can reach (a contract defined next to other code, as in a test).
    Imports from ``own`` (the contract's top-level package) are allowed: those modules are
    checked themselves."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        return [Problem(filename, e.lineno or 0, f"syntax error: {e.msg}")]
    v = _Visitor(filename, own, package)
    functions: dict[str, ast.AST] = {}
    methods: dict[str, ast.AST] = {}
    for stmt in _scope(tree, roots):
        v.visit(stmt)
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[stmt.name] = stmt
        elif isinstance(stmt, ast.ClassDef):
            for item in stmt.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    methods.setdefault(item.name, item)
    problems = v.problems + _recursion(filename, functions, methods)
    problems.sort(key=lambda p: p.line)
    return problems


def _raise(problems: list[Problem], what: str) -> None:
    if problems:
        listed = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise NondeterministicContract(
            f"{what} is refused: it could compute different results on different validators: "
            f"{listed}{more}"
        )


def check_module_source(source: str, filename: str, name: str = "contract") -> None:
    """Refuse a contract module given as source (what a governance ``register`` action
    would carry): every statement of the module is checked."""
    _raise(check_source(source, filename), f"contract {name!r} ({filename})")


def check_contract(cls: type) -> None:
    """Refuse a contract class whose code (its own and that of contract base classes other
    than :class:`~accord.contracts.base.Contract`) could differ between validators."""
    from accord.contracts.base import Contract

    if cls in _checked:
        return
    problems: list[Problem] = []
    by_file: dict[str, list[str]] = {}
    for klass in cls.__mro__:
        if klass is Contract or not (isinstance(klass, type) and issubclass(klass, Contract)):
            continue
        try:
            path = inspect.getsourcefile(klass)
        except TypeError:
            path = None
        if path is None:
            raise NondeterministicContract(
                f"contract class {klass.__qualname__} has no source file to check"
            )
        if "<locals>" in klass.__qualname__:
            raise NondeterministicContract(
                f"contract class {klass.__qualname__} ({path}) must be defined at module level"
            )
        by_file.setdefault(path, []).append(klass.__qualname__.split(".")[0])
    from accord.contracts.installed import NODE_PACKAGE, own_modules

    top = cls.__module__.split(".")[0]
    own = None if top == NODE_PACKAGE else top
    package = getattr(inspect.getmodule(cls), "__package__", None)
    for path, roots in by_file.items():
        problems += check_source(
            Path(path).read_text(encoding="utf-8"), path, roots, own=own, package=package
        )
    if own is not None:
        # The helpers the contract imports from its own package run as its code: each is
        # checked whole (the code hash covers the same modules).
        for name, helper in own_modules(cls):
            if str(helper) in by_file:
                continue
            pkg = name if helper.name == "__init__.py" else name.rpartition(".")[0]
            problems += check_source(
                helper.read_text(encoding="utf-8"), str(helper), None, own=own, package=pkg
            )
    _raise(problems, f"contract {getattr(cls, 'name', '') or cls.__name__!r}")
    _checked.add(cls)  # a class's source is read once per process, as for its code hash


_checked: set[type] = set()


# --------------------------------------------------------------------------------------------
# Restricted builtins at execution.


def _guarded_import(
    name: str,
    globals: Any = None,
    locals: Any = None,
    fromlist: Any = (),
    level: int = 0,
) -> Any:
    """``import`` inside contract code: only allow-listed modules, the same on every node."""
    if fromlist:
        ok = _import_allowed(name) or all(_import_allowed(f"{name}.{f}") for f in fromlist)
    else:
        ok = _import_allowed(name)
    if level or not ok:
        raise ImportError(f"contracts may not import {name}")
    return builtins.__import__(name, globals, locals, fromlist, level)


RESTRICTED_BUILTINS: dict[str, Any] = {
    k: v for k, v in vars(builtins).items() if k not in FORBIDDEN_BUILTINS
}
RESTRICTED_BUILTINS["__import__"] = _guarded_import


def _rebind(fn: types.FunctionType, g: dict[str, Any], strict: bool = True) -> types.FunctionType:
    # A function's builtins are fixed when it is created, from its globals' ``__builtins__``:
    # a copy made over the restricted globals runs with the restricted builtins, and so does
    # every nested function or lambda it creates.
    # The code that runs is the metered one (:mod:`accord.contracts.meter`): its loops and
    # calls cost gas. Without a source file (a class made at run time) it runs as it is.
    code = metered_code(fn, strict=strict) or fn.__code__
    new = types.FunctionType(code, g, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    new.__doc__ = fn.__doc__
    new.__annotations__ = dict(fn.__annotations__)
    return new


def _rewrap(value: Any, g: dict[str, Any]) -> Any:
    if isinstance(value, types.FunctionType):
        return _rebind(value, g)
    if isinstance(value, staticmethod | classmethod) and isinstance(
        value.__func__, types.FunctionType
    ):
        return type(value)(_rebind(value.__func__, g))
    if isinstance(value, property):
        parts = [_rewrap(f, g) if f is not None else None for f in (value.fget, value.fset)]
        return property(parts[0], parts[1], value.fdel, value.__doc__)
    return _MISSING


_MISSING: Any = object()


def _restricted_globals(
    module_globals: dict[str, Any], own: str, done: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """A copy of a module's globals in which the functions the contract can call run
    restricted and metered: the module's own, and those it imported from other modules of the
    contract's own top-level package ``own`` (their loops cost gas too). ``done`` maps the id
    of each module's globals already copied to its copy (helper modules import each other)."""
    g = done.get(id(module_globals))
    if g is not None:
        return g
    g = done[id(module_globals)] = dict(module_globals)
    g["__builtins__"] = RESTRICTED_BUILTINS
    meter_globals(g)
    from accord.contracts.base import Contract

    name = module_globals.get("__name__")
    for k, v in module_globals.items():
        if isinstance(v, type) and not issubclass(v, Contract):
            if v.__module__ == name:  # a helper class of this module: its methods too
                g[k] = _restricted_helper_class(v, g)
            elif own != "accord" and v.__module__.split(".")[0] == own:
                # Imported from another module of the contract's package: that module's
                # restricted copy of it (its functions see that module's globals).
                helper = sys.modules.get(v.__module__)
                if helper is not None:
                    g[k] = _restricted_globals(vars(helper), own, done).get(v.__name__, v)
            continue
        if not isinstance(v, types.FunctionType):
            continue
        if v.__globals__ is module_globals:  # a module-level helper the contract calls
            g[k] = _rebind(v, g, strict=False)
        elif own != "accord" and (v.__module__ or "").split(".")[0] == own:
            g[k] = _rebind(v, _restricted_globals(v.__globals__, own, done), strict=False)
    return g


def _restricted_helper_class(cls: type, g: dict[str, Any]) -> type:
    """A subclass of ``cls`` (a class a contract module defines that is not a contract)
    whose functions run restricted and metered with ``g``: contract code calls its methods,
    and builtins call its dunders (``any(It())`` runs ``It.__next__`` with no loop of the
    contract's), so an unmetered ``__next__`` or ``while True`` in a method ran for ever.

    Contract code names the class through ``g``, so the objects it makes are of the subclass.
    A class that cannot be subclassed (an enum with members) is refused: running its code
    unmetered would let a loop in it run free."""
    overrides: dict[str, Any] = {}
    for attr, value in vars(cls).items():
        wrapped = _rewrap(value, g)
        if wrapped is not _MISSING:
            overrides[attr] = wrapped
    if not overrides:
        return cls
    overrides["__module__"] = cls.__module__
    overrides["__qualname__"] = cls.__qualname__
    if "__slots__" in vars(cls):
        overrides["__slots__"] = ()
    try:
        return type(cls)(cls.__name__, (cls,), overrides)
    except TypeError as e:
        raise NondeterministicContract(
            f"class {cls.__qualname__} ({cls.__module__}) cannot run metered: {e}"
        ) from None


_C = TypeVar("_C", bound=type)


def restricted_class(cls: _C) -> _C:
    """A subclass of contract ``cls`` whose own functions (and those of its contract bases)
    run with :data:`RESTRICTED_BUILTINS`. Behaviour is otherwise the same: same name, same
    declared methods, ``isinstance`` still holds."""
    from accord.contracts.base import Contract

    overrides: dict[str, Any] = {}
    module_globals: dict[int, dict[str, Any]] = {}
    own = cls.__module__.split(".")[0]  # the contract's package: its helpers run restricted
    for klass in cls.__mro__:
        if klass is Contract or not issubclass(klass, Contract):
            continue
        for attr, value in vars(klass).items():
            if attr in overrides:
                continue
            fn = getattr(value, "__func__", value)
            fn = getattr(value, "fget", fn)
            if not isinstance(fn, types.FunctionType):
                continue
            g = _restricted_globals(fn.__globals__, own, module_globals)
            wrapped = _rewrap(value, g)
            if wrapped is not _MISSING:
                overrides[attr] = wrapped
    overrides["__module__"] = cls.__module__
    overrides["__qualname__"] = cls.__qualname__
    overrides["__accord_restricted__"] = True
    return cast(_C, type(cls.__name__, (cls,), overrides))


__all__ = [
    "ALLOWED_MODULES",
    "FORBIDDEN_BUILTINS",
    "RESTRICTED_BUILTINS",
    "NondeterministicContract",
    "Problem",
    "check_contract",
    "check_module_source",
    "check_source",
    "reachable_statements",
    "restricted_class",
]
