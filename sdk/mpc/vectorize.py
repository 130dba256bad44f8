"""Automatic rewriting of element-wise loops into vector operations (PrivPy's headline).

In MPC every multiplication or comparison is a round trip between the servers, so
``[x[i] * y[i] for i in range(n)]`` written as a loop costs n rounds where ``x * y`` costs
one. :func:`vectorize` reads a program's source, finds the loops that only combine
elements with the same index, and replaces each with one operation on whole arrays, so the
plain Python of the PrivPy talk runs at vector speed::

    @vectorize
    def program(party, x, y):
        xy = [x[i] * y[i] for i in range(len(x))]        # one vector multiply
        total = 0
        for i in range(len(x)):
            total += x[i] * y[i]                          # one multiply and a local sum
        return xy, total

Forms rewritten (the loop runs over ``range(...)`` with a plain name as its variable):

* a list comprehension ``[E for i in range(...)]``: it yields an array whose first axis is
  the list index (indexing, slicing, ``len`` and iteration behave as on the list);
* ``sum(E for i in range(...))`` and ``sum([E ...])``;
* a loop whose whole body is ``acc += E``, ``acc -= E`` or ``acc = acc + E``: one vector
  operation and a local sum (share addition is exact, so the sum is the loop's sum);
* a loop whose whole body is ``out.append(E)``: ``out`` is extended with the elements of one
  vector operation (it stays the same list object).

``E`` may combine ``a[i]``, ``a[i + c]``, ``a[i - c]``, ``a[i, ...]`` (for any array or list
``a`` and loop-invariant ``c``), the bare index ``i``, loop-invariant values, arithmetic,
comparisons, ``@``, ``.sum()``, ``.T`` and the element-wise functions of
:mod:`accord.mpc.engine` (and any registered with :func:`register`). Elements broadcast as
they would one by one: a matrix row times a vector entry scales the row.

Any other loop runs exactly as written (correct, only slower). A loop that looks
element-wise (it indexes arrays with its variable) but cannot be rewritten is reported with
a :class:`VectorizeWarning` naming its line and the reason; ``strict=True`` makes that an
error. Loops that do not index by their variable (epochs, mini-batches) are sequential by
nature and are left alone silently. ``fn.vectorize_report`` lists what happened to every
loop.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import operator
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from accord.base.errors import MpcError
from accord.mpc import engine
from accord.mpc.engine import SharedArray

HELPER = "__accord_vz__"


class VectorizeError(MpcError):
    """A program could not be rewritten and ``strict=True`` was asked for."""


class VectorizeWarning(UserWarning):
    """A loop that looked element-wise runs as written (one round trip per element)."""


@dataclass(frozen=True)
class LoopReport:
    line: int
    kind: str  # "comprehension", "sum", "accumulate", "append", "sequential", "not rewritten"
    detail: str = ""


# --- run time: arrays whose first axis is the loop index -----------------------------------


class Batch:
    """All iterations' values of one sub-expression, stacked on a leading axis of length n."""

    def __init__(self, value: Any, n: int) -> None:
        self.v = value
        self.n = n

    @property
    def elem_ndim(self) -> int:
        return int(np.ndim(self.v.a) if isinstance(self.v, SharedArray) else np.ndim(self.v)) - 1

    def expanded(self, k: int) -> Any:
        """The value with ``k`` axes inserted after the loop axis (per-element broadcasting)."""
        if k <= 0:
            return self.v
        shape = (
            (self.n,)
            + (1,) * k
            + tuple(np.shape(self.v.a if isinstance(self.v, SharedArray) else self.v))[1:]
        )
        return self.v.reshape(shape)

    def __getitem__(self, key: Any) -> Batch:
        key = key if isinstance(key, tuple) else (key,)
        return Batch(self.v[(slice(None),) + key], self.n)

    def sum(self) -> Batch:
        if self.elem_ndim == 0:
            return self
        axes = tuple(range(1, self.elem_ndim + 1))
        if isinstance(self.v, SharedArray):
            return Batch(self.v.sum(axis=axes), self.n)
        return Batch(np.sum(self.v, axis=axes), self.n)

    @property
    def T(self) -> Batch:  # noqa: N802 - NumPy's name
        axes = (0,) + tuple(range(self.elem_ndim, 0, -1))
        return Batch(self.v.transpose(*axes), self.n)

    def lane(self, k: int) -> Any:
        return self.v[k]


def _ndim(x: Any) -> int:
    if isinstance(x, Batch):
        return x.elem_ndim
    if isinstance(x, SharedArray):
        return x.ndim
    return int(np.ndim(x))


def _align(args: list[Any]) -> tuple[list[Any], int]:
    """Values of the operands, with batch axes lined up so that NumPy broadcasting of the
    stacked arrays is element-wise broadcasting of the elements."""
    n = next(a.n for a in args if isinstance(a, Batch))
    k = max(_ndim(a) for a in args)
    return [a.expanded(k - a.elem_ndim) if isinstance(a, Batch) else a for a in args], n


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "lt": operator.lt,
    "gt": operator.gt,
    "le": operator.le,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}


def bin(op: str, x: Any, y: Any) -> Any:  # noqa: A001 - generated code's helper
    if op == "matmul":
        return matmul(x, y)
    fn = _BINOPS[op]
    if not isinstance(x, Batch) and not isinstance(y, Batch):
        return fn(x, y)
    (vx, vy), n = _align([x, y])
    return Batch(fn(vx, vy), n)


def un(op: str, x: Any) -> Any:
    fn = operator.neg if op == "neg" else operator.pos
    if isinstance(x, Batch):
        return Batch(fn(x.v), x.n)
    return fn(x)


def matmul(x: Any, y: Any) -> Any:
    """Per-element ``x @ y`` for every combination of batched and invariant operands."""
    bx, by = isinstance(x, Batch), isinstance(y, Batch)
    if not bx and not by:
        return x @ y
    if bx and not by:  # (n, ..., d) @ invariant: NumPy's stacking does it
        return Batch(x.v @ y, x.n)
    if by and not bx:
        if y.elem_ndim == 1:  # M @ v_i for all i is V @ M^T
            return Batch(y.v @ (x.T if _ndim(x) == 2 else x), y.n)
        return Batch(x @ y.v, y.n)
    n = x.n
    if x.elem_ndim == 1 and y.elem_ndim == 1:
        return Batch((x.v * y.v).sum(axis=1), n)
    if x.elem_ndim == 1:
        return Batch((x.v.reshape(n, 1, -1) @ y.v).reshape(n, -1), n)
    if y.elem_ndim == 1:
        out = x.v @ y.v.reshape(tuple(np.shape(_raw(y.v))) + (1,))
        return Batch(out.reshape(tuple(np.shape(_raw(out)))[:-1]), n)
    return Batch(x.v @ y.v, n)


def _raw(v: Any) -> Any:
    return v.a if isinstance(v, SharedArray) else v


def _elementwise(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A function that acts on each element independently applies to the stacked arrays."""

    def apply(*args: Any, **kw: Any) -> Any:
        vals, n = _align(list(args))
        return Batch(fn(*vals, **kw), n)

    return apply


def _append_batch(x: Any, y: Any) -> Batch:
    n = x.n if isinstance(x, Batch) else y.n
    parts = []
    for v in (x, y):
        if isinstance(v, Batch):
            parts.append(v.v.reshape(n, -1))
        else:
            flat = v.reshape(-1) if isinstance(v, SharedArray) else np.asarray(v).reshape(-1)
            if isinstance(flat, SharedArray):
                parts.append(flat.reshape(1, -1).broadcast_to((n, flat.size)))
            else:
                raise MpcError("append() of a batched and a public value is not supported")
    return Batch(engine.concatenate(parts, axis=1), n)


REGISTRY: dict[Any, Callable[..., Any]] = {}


def register(fn: Callable[..., Any], batched: Callable[..., Any] | None = None) -> None:
    """Let rewritten loops call ``fn`` on whole arrays.

    Without ``batched``, ``fn`` must act on each element independently (so that applying it
    to the stacked elements is applying it to each); otherwise ``batched`` receives the
    arguments, some of them :class:`Batch` values, and returns a :class:`Batch`.
    """
    REGISTRY[fn] = batched or _elementwise(fn)


for _f in (
    engine.sigmoid,
    engine.relu,
    engine.maximum,
    engine.where,
    engine.select,
    engine.reciprocal,
    engine.mulv,
    engine.exp,
    engine.log,
    engine.sqrt,
    engine.divide,
):
    register(_f)
register(engine.append, _append_batch)
register(engine.dot, lambda x, y: matmul(x, y))


def call(fn: Any, *args: Any, **kw: Any) -> Any:
    if not any(isinstance(a, Batch) for a in (*args, *kw.values())):
        return fn(*args, **kw)
    impl = REGISTRY.get(fn)
    if impl is not None:
        return impl(*args, **kw)
    # The name was rebound since the rewrite: stay correct, one element at a time.
    n = next(a.n for a in (*args, *kw.values()) if isinstance(a, Batch))
    outs = [
        fn(
            *[a.lane(k) if isinstance(a, Batch) else a for a in args],
            **{key: (a.lane(k) if isinstance(a, Batch) else a) for key, a in kw.items()},
        )
        for k in range(n)
    ]
    return Batch(_stack(outs), n)


def _stack(items: list[Any]) -> Any:
    if items and all(isinstance(v, SharedArray) for v in items):
        return engine.stack(items)
    if any(isinstance(v, SharedArray) for v in items):
        raise MpcError("cannot index a list that mixes shared and public values as a vector")
    return np.asarray(items)


def _indices(r: range, off: int, length: int) -> Any:
    n = len(r)
    start = r.start + off
    last = start + (n - 1) * r.step
    if r.step == 1 and start >= 0 and last < length:
        return slice(start, last + 1)
    idx = np.arange(n, dtype=np.int64) * r.step + start
    if np.any(idx >= length) or np.any(idx < -length):
        raise IndexError("index out of range")
    return np.where(idx < 0, idx + length, idx)


def lanes(r: range, a: Any, off: Any = 0) -> Batch:
    """``a[i + off]`` for every ``i`` in ``r``, as one slice."""
    if isinstance(a, Batch):
        raise MpcError("nested element-wise loops are not rewritten")
    if isinstance(a, (list, tuple)):
        a = _stack(list(a))
    elif not isinstance(a, SharedArray):
        a = np.asarray(a)
    return Batch(a[_indices(r, int(off), len(a))], len(r))


def index(r: range) -> Batch:
    return Batch(np.arange(r.start, r.stop, r.step, dtype=np.int64), len(r))


def _stacked(value: Any, n: int) -> Any:
    if isinstance(value, Batch):
        return value.v
    if isinstance(value, SharedArray):  # the same value in every iteration
        return value.reshape((1,) + value.shape).broadcast_to((n,) + value.shape)
    arr = np.asarray(value)
    return np.broadcast_to(arr, (n,) + arr.shape).copy()


def comprehension(r: range, body: Callable[[range], Any]) -> Any:
    n = len(r)
    if n == 0:
        return []
    return _stacked(body(r), n)


def total(r: range, body: Callable[[range], Any], start: Any = 0) -> Any:
    n = len(r)
    if n == 0:
        return start
    s = _stacked(body(r), n)
    return start + (s.sum(axis=0) if isinstance(s, SharedArray) else np.sum(s, axis=0))


def accumulate(acc: Any, sign: int, r: range, body: Callable[[range], Any]) -> Any:
    n = len(r)
    if n == 0:
        return acc
    s = _stacked(body(r), n)
    part = s.sum(axis=0) if isinstance(s, SharedArray) else np.sum(s, axis=0)
    return acc + part if sign > 0 else acc - part


def extend(out: Any, r: range, body: Callable[[range], Any]) -> None:
    n = len(r)
    if n == 0:
        return
    s = _stacked(body(r), n)
    for k in range(n):
        out.append(s[k])


# --- rewrite time ---------------------------------------------------------------------------


class _Unsupported(Exception):
    pass


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _helper(attr: str) -> ast.expr:
    return ast.Attribute(value=ast.Name(id=HELPER, ctx=ast.Load()), attr=attr, ctx=ast.Load())


def _hcall(attr: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_helper(attr), args=list(args), keywords=[])


_OPNAMES: dict[type, str] = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "truediv",
    ast.MatMult: "matmul",
    ast.Lt: "lt",
    ast.Gt: "gt",
    ast.LtE: "le",
    ast.GtE: "ge",
    ast.Eq: "eq",
    ast.NotEq: "ne",
}


class _Element:
    """Rewrites one loop body expression ``E(i)`` into the expression of all iterations."""

    def __init__(self, var: str, rname: str, resolve: Callable[[ast.expr], Any]) -> None:
        self.var = var
        self.r = rname
        self.resolve = resolve

    def uses(self, node: ast.AST) -> bool:
        return self.var in _names(node)

    def offset(self, s: ast.expr) -> ast.expr:
        if isinstance(s, ast.Name) and s.id == self.var:
            return ast.Constant(0)
        if isinstance(s, ast.BinOp) and isinstance(s.op, (ast.Add, ast.Sub)):
            left_var = isinstance(s.left, ast.Name) and s.left.id == self.var
            right_var = isinstance(s.right, ast.Name) and s.right.id == self.var
            if left_var and not self.uses(s.right):
                return (
                    s.right
                    if isinstance(s.op, ast.Add)
                    else ast.UnaryOp(op=ast.USub(), operand=s.right)
                )
            if right_var and isinstance(s.op, ast.Add) and not self.uses(s.left):
                return s.left
        raise _Unsupported(
            f"index {ast.unparse(s)!r} is not {self.var}, {self.var} + c or {self.var} - c"
        )

    def rw(self, node: ast.expr) -> ast.expr:
        if not self.uses(node):
            return node
        r = ast.Name(id=self.r, ctx=ast.Load())
        if isinstance(node, ast.Name):
            return _hcall("index", r)
        if isinstance(node, ast.Subscript):
            s = node.slice
            if not self.uses(s):
                return ast.Subscript(value=self.rw(node.value), slice=s, ctx=ast.Load())
            if self.uses(node.value):
                raise _Unsupported(
                    f"{ast.unparse(node)!r} indexes a value that itself depends on {self.var}"
                )
            rest: list[ast.expr] = []
            if isinstance(s, ast.Tuple):
                first, rest = s.elts[0], list(s.elts[1:])
                if any(self.uses(e) for e in rest):
                    raise _Unsupported(f"{self.var} may only index the first axis")
            else:
                first = s
            out: ast.expr = _hcall("lanes", r, node.value, self.offset(first))
            if rest:
                out = ast.Subscript(
                    value=out, slice=ast.Tuple(elts=rest, ctx=ast.Load()), ctx=ast.Load()
                )
            return out
        if isinstance(node, ast.BinOp) and type(node.op) in _OPNAMES:
            return _hcall(
                "bin",
                ast.Constant(_OPNAMES[type(node.op)]),
                self.rw(node.left),
                self.rw(node.right),
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return _hcall(
                "un",
                ast.Constant("neg" if isinstance(node.op, ast.USub) else "pos"),
                self.rw(node.operand),
            )
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _OPNAMES:
                raise _Unsupported("chained or non-arithmetic comparison")
            return _hcall(
                "bin",
                ast.Constant(_OPNAMES[type(node.ops[0])]),
                self.rw(node.left),
                self.rw(node.comparators[0]),
            )
        if isinstance(node, ast.Attribute) and node.attr == "T":
            return ast.Attribute(value=self.rw(node.value), attr="T", ctx=ast.Load())
        if isinstance(node, ast.Call):
            f = node.func
            if (
                isinstance(f, ast.Attribute)
                and f.attr == "sum"
                and not node.args
                and not node.keywords
            ):
                return ast.Call(
                    func=ast.Attribute(value=self.rw(f.value), attr="sum", ctx=ast.Load()),
                    args=[],
                    keywords=[],
                )
            if self.uses(f):
                raise _Unsupported(f"calls a function that depends on {self.var}")
            target = self.resolve(f)
            if target is None or target not in REGISTRY:
                raise _Unsupported(
                    f"calls {ast.unparse(f)!r}, which is not a known element-wise "
                    "function (see accord.mpc.vectorize.register)"
                )
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords
            ):
                raise _Unsupported("star arguments")
            return ast.Call(
                func=_helper("call"),
                args=[f, *[self.rw(a) for a in node.args]],
                keywords=[ast.keyword(arg=k.arg, value=self.rw(k.value)) for k in node.keywords],
            )
        raise _Unsupported(f"{type(node).__name__} expressions that depend on {self.var}")


class _Rewriter(ast.NodeTransformer):
    def __init__(self, env: dict[str, Any], local_names: set[str]) -> None:
        self.env = env
        self.locals = local_names
        self.report: list[LoopReport] = []
        self.count = 0
        self.depth = 0  # > 0 inside a nested function or lambda: left alone

    def resolve(self, f: ast.expr) -> Any:
        if isinstance(f, ast.Name):
            if f.id in self.locals:
                return None
            if f.id in self.env:
                return self.env[f.id]
            return getattr(builtins, f.id, None)
        if isinstance(f, ast.Attribute):
            base = self.resolve(f.value)
            return None if base is None else getattr(base, f.attr, None)
        return None

    def _range(self, it: ast.expr) -> bool:
        return (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and "range" not in self.locals
            and self.env.get("range", range) is range
            and 1 <= len(it.args) <= 3
            and not it.keywords
            and not any(isinstance(a, ast.Starred) for a in it.args)
        )

    def _rname(self) -> str:
        self.count += 1
        return f"__vz_r{self.count}"

    def _body(self, var: str, expr: ast.expr, rname: str) -> ast.Lambda:
        new = _Element(var, rname, self.resolve).rw(expr)
        if HELPER in _names(expr) or any(isinstance(n, ast.Lambda) for n in ast.walk(expr)):
            raise _Unsupported("contains a nested loop or lambda")
        args = ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=rname)],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        )
        return ast.Lambda(args=args, body=new)

    def _comp_parts(self, node: ast.ListComp | ast.GeneratorExp) -> tuple[str, ast.expr]:
        if len(node.generators) != 1:
            raise _Unsupported("several for clauses")
        g = node.generators[0]
        if g.ifs or g.is_async:
            raise _Unsupported("an if clause filters elements")
        if not isinstance(g.target, ast.Name):
            raise _Unsupported("the loop variable is not a plain name")
        if not self._range(g.iter):
            raise _Unsupported("not a loop over range()")
        return g.target.id, g.iter

    def _note(self, node: ast.AST, kind: str, detail: str = "") -> None:
        self.report.append(LoopReport(getattr(node, "lineno", 0), kind, detail))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        if self.depth == 0:
            self.depth += 1
            node.body = [self.visit(s) for s in node.body]
            node.body = [s for b in node.body for s in (b if isinstance(b, list) else [b])]
            self.depth -= 1
            return node
        return node  # nested functions are not rewritten

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        return node

    def visit_ListComp(self, node: ast.ListComp) -> Any:
        self.generic_visit(node)
        var_ok = len(node.generators) == 1 and isinstance(node.generators[0].target, ast.Name)
        try:
            var, it = self._comp_parts(node)
            rname = self._rname()
            lam = self._body(var, node.elt, rname)
        except _Unsupported as e:
            if var_ok and self._indexes_by(node.elt, node.generators[0].target.id):  # type: ignore[attr-defined]
                self._note(node, "not rewritten", str(e))
            return node
        self._note(node, "comprehension")
        return ast.copy_location(_hcall("comprehension", it, lam), node)

    def _indexes_by(self, node: ast.AST, var: str) -> bool:
        return any(isinstance(n, ast.Subscript) and var in _names(n.slice) for n in ast.walk(node))

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        f = node.func
        if not (
            isinstance(f, ast.Name)
            and f.id == "sum"
            and self.resolve(f) is builtins.sum
            and 1 <= len(node.args) <= 2
            and not node.keywords
        ):
            return node
        arg = node.args[0]
        if (
            isinstance(arg, ast.Call)
            and isinstance(arg.func, ast.Attribute)
            and arg.func.attr == "comprehension"
            and isinstance(arg.func.value, ast.Name)
            and arg.func.value.id == HELPER
        ):
            self.report[-1] = LoopReport(self.report[-1].line, "sum")
            return ast.copy_location(_hcall("total", *arg.args, *node.args[1:]), node)
        if isinstance(arg, ast.GeneratorExp):
            try:
                var, it = self._comp_parts(arg)
                rname = self._rname()
                lam = self._body(var, arg.elt, rname)
            except _Unsupported as e:
                g = arg.generators[0]
                if isinstance(g.target, ast.Name) and self._indexes_by(arg.elt, g.target.id):
                    self._note(arg, "not rewritten", str(e))
                return node
            self._note(arg, "sum")
            return ast.copy_location(_hcall("total", it, lam, *node.args[1:]), node)
        return node

    def visit_For(self, node: ast.For) -> Any:
        self.generic_visit(node)
        if not isinstance(node.target, ast.Name) or not self._range(node.iter):
            self._note(node, "sequential", "not a loop over range() with a plain variable")
            return node
        var = node.target.id
        looks = any(self._indexes_by(s, var) for s in node.body)
        try:
            return self._rewrite_for(node, var)
        except _Unsupported as e:
            if looks:
                self._note(node, "not rewritten", str(e))
            else:
                self._note(node, "sequential", str(e))
            return node

    def _rewrite_for(self, node: ast.For, var: str) -> list[ast.stmt]:
        if node.orelse:
            raise _Unsupported("for ... else")
        if len(node.body) != 1:
            raise _Unsupported(
                f"the body has {len(node.body)} statements (write it as one "
                "accumulation, one append or a comprehension)"
            )
        st = node.body[0]
        rname = self._rname()
        r_load = ast.Name(id=rname, ctx=ast.Load())
        new: ast.stmt
        kind: str
        if (
            isinstance(st, ast.AugAssign)
            and isinstance(st.target, ast.Name)
            and isinstance(st.op, (ast.Add, ast.Sub))
        ):
            acc, expr, sign = st.target.id, st.value, 1 if isinstance(st.op, ast.Add) else -1
            kind = "accumulate"
        elif (
            isinstance(st, ast.Assign)
            and len(st.targets) == 1
            and isinstance(st.targets[0], ast.Name)
            and isinstance(st.value, ast.BinOp)
            and isinstance(st.value.op, (ast.Add, ast.Sub))
        ):
            acc = st.targets[0].id
            b = st.value
            if isinstance(b.left, ast.Name) and b.left.id == acc:
                expr, sign = b.right, 1 if isinstance(b.op, ast.Add) else -1
            elif isinstance(b.op, ast.Add) and isinstance(b.right, ast.Name) and b.right.id == acc:
                expr, sign = b.left, 1
            else:
                raise _Unsupported("an assignment that is not acc = acc + E")
            kind = "accumulate"
        elif (
            isinstance(st, ast.Expr)
            and isinstance(st.value, ast.Call)
            and isinstance(st.value.func, ast.Attribute)
            and st.value.func.attr == "append"
            and isinstance(st.value.func.value, ast.Name)
            and len(st.value.args) == 1
            and not st.value.keywords
        ):
            acc, expr, sign = st.value.func.value.id, st.value.args[0], 0
            kind = "append"
        elif (
            isinstance(st, (ast.Assign, ast.AugAssign))
            and any(
                isinstance(t, ast.Name) and t.id in _names(getattr(st, "value", st))
                for t in (st.targets if isinstance(st, ast.Assign) else [st.target])
            )
            or isinstance(st, ast.AugAssign)
        ):
            raise _Unsupported(
                "each step reads the result of the previous one (only sums are "
                "rewritten, not running products or other recurrences)"
            )
        else:
            raise _Unsupported("the body is not an accumulation (acc += E) or an append")
        if acc == var or acc in _names(expr):
            raise _Unsupported(f"each step reads {acc!r}, which the loop updates")
        if not self._uses_elements(expr, var):
            raise _Unsupported(f"{ast.unparse(expr)!r} does not depend on the elements")
        lam = self._body(var, expr, "__vz_e" + rname[6:])
        acc_load = ast.Name(id=acc, ctx=ast.Load())
        if kind == "append":
            new = ast.Expr(value=_hcall("extend", acc_load, r_load, lam))
        else:
            new = ast.Assign(
                targets=[ast.Name(id=acc, ctx=ast.Store())],
                value=_hcall("accumulate", acc_load, ast.Constant(sign), r_load, lam),
            )
        self._note(node, kind)
        # The loop variable keeps its last value, as after the loop.
        last = ast.If(
            test=r_load,
            body=[
                ast.Assign(
                    targets=[ast.Name(id=var, ctx=ast.Store())],
                    value=ast.Subscript(value=r_load, slice=ast.Constant(-1), ctx=ast.Load()),
                )
            ],
            orelse=[],
        )
        stmts: list[ast.stmt] = [
            ast.Assign(targets=[ast.Name(id=rname, ctx=ast.Store())], value=node.iter),
            new,
            last,
        ]
        for s in stmts:
            ast.copy_location(s, node)
        return stmts

    def _uses_elements(self, expr: ast.expr, var: str) -> bool:
        return var in _names(expr)

    def visit_While(self, node: ast.While) -> Any:
        self.generic_visit(node)
        self._note(node, "sequential", "while loop")
        return node


def _assigned(fn: ast.FunctionDef) -> set[str]:
    out = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
    if fn.args.vararg:
        out.add(fn.args.vararg.arg)
    if fn.args.kwarg:
        out.add(fn.args.kwarg.arg)
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return out


def vectorize(fn: Callable[..., Any] | None = None, *, strict: bool = False) -> Any:
    """Rewrite ``fn``'s element-wise loops into vector operations (see the module docstring).

    Returns a new function with the same signature, defaults and name; ``vectorize_report``
    on it lists every loop found (line, what became of it, why). A loop that indexes by its
    variable but cannot be rewritten raises a :class:`VectorizeWarning` (or, with
    ``strict=True``, :class:`VectorizeError`) and runs as written.
    """
    if fn is None:
        return lambda f: vectorize(f, strict=strict)
    if getattr(fn, "vectorize_report", None) is not None:
        return fn
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        filename = inspect.getsourcefile(fn) or "<vectorized>"
        first = fn.__code__.co_firstlineno
    except (OSError, TypeError, AttributeError) as e:
        return _refuse(fn, strict, f"cannot read the source of {fn!r}: {e}")
    tree = ast.parse(source)
    fdef = tree.body[0] if tree.body else None
    if not isinstance(fdef, ast.FunctionDef):
        return _refuse(fn, strict, f"{fn!r} is not a plain def")
    ast.increment_lineno(tree, first - 1)
    fdef.decorator_list = []
    fdef.returns = None
    for a in (
        *fdef.args.posonlyargs,
        *fdef.args.args,
        *fdef.args.kwonlyargs,
        fdef.args.vararg,
        fdef.args.kwarg,
    ):
        if a is not None:
            a.annotation = None
    fdef.args.defaults = []
    fdef.args.kw_defaults = [None] * len(fdef.args.kwonlyargs)
    free = list(fn.__code__.co_freevars)
    cells = [c.cell_contents for c in (fn.__closure__ or ())]
    env = {**fn.__globals__, **dict(zip(free, cells, strict=True))}
    rw = _Rewriter(env, _assigned(fdef))
    rw.visit(fdef)
    problems = [r for r in rw.report if r.kind == "not rewritten"]
    for p in problems:
        msg = (
            f"{fn.__qualname__}, line {p.line}: loop not vectorised ({p.detail}); "
            "it runs as written, one round trip per element"
        )
        if strict:
            raise VectorizeError(msg)
        warnings.warn(msg, VectorizeWarning, stacklevel=2)
    maker = ast.FunctionDef(
        name="__accord_make__",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=HELPER), *[ast.arg(arg=v) for v in free]],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        ),
        body=[fdef, ast.Return(value=ast.Name(id=fdef.name, ctx=ast.Load()))],
        decorator_list=[],
        returns=None,
    )
    ast.copy_location(maker, fdef)
    module = ast.fix_missing_locations(ast.Module(body=[maker], type_ignores=[]))
    code = compile(module, filename, "exec")
    ns: dict[str, Any] = {}
    exec(code, fn.__globals__, ns)  # noqa: S102 - the program's own source, rewritten
    import sys

    new = ns["__accord_make__"](sys.modules[__name__], *cells)
    new.__defaults__ = fn.__defaults__
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__doc__ = fn.__doc__
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    new.__wrapped__ = fn
    new.vectorize_report = sorted(rw.report, key=lambda r: r.line)
    return new


def _refuse(fn: Callable[..., Any], strict: bool, why: str) -> Callable[..., Any]:
    if strict:
        raise VectorizeError(why)
    warnings.warn(f"{why}; it runs as written", VectorizeWarning, stacklevel=3)
    return fn
