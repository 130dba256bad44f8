"""Automatic rewriting of element-wise loops (accord.mpc.vectorize).

The rewritten programs must give the loop's result (checked against NumPy and against the
same program run as written) while issuing O(1) protocol operations where the loop issues
one per element (counted with the servers' operation counters, not timed).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from accord.mpc import local
from accord.mpc.engine import append, dot, sigmoid, zeros
from accord.mpc.local import run_local
from accord.mpc.ml import load_breast_cancer, train_listing
from accord.mpc.vectorize import VectorizeError, VectorizeWarning, vectorize

F = 2.0**-16


def ops() -> int:
    return local.local_runs[-1][0].stats.ops


def run(fn, inputs, **params):
    out = run_local(fn, inputs, params=params)[0]
    return out, ops()


# --- the talk's listing, in Accord's API ---------------------------------------------------


def lr_listing(party, x, y, w, round_cnt, batch, eta):
    return train_listing(party, x, y, w, round_cnt, batch, eta).reveal()


def lr_listing_as_written(party, x, y, w, round_cnt, batch, eta):
    return train_listing.__wrapped__(party, x, y, w, round_cnt, batch, eta).reveal()


def lr_numpy(x, y, w, round_cnt, batch, eta):
    n = len(x)
    for _ in range(round_cnt):
        for i in range(n // batch):
            xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
            coeff = 1 / (1 + np.exp(yb * (xb @ w[:-1] + w[-1])))
            g = np.concatenate([(coeff * yb) @ xb, [np.sum(coeff * yb)]])
            w = w + eta * g / batch
    return w


def _data(n=48, d=6):
    x, y = load_breast_cancer()
    return x[:n, :d], (2 * y[:n] - 1)


def test_lr_listing_is_rewritten_and_matches_the_loop_and_numpy():
    x, y = _data()
    w0 = np.zeros(x.shape[1] + 1)
    inputs = {"x": (x, 16), "y": (y, 0), "w": (w0, 16)}
    params = {"round_cnt": 2, "batch": 8, "eta": 0.5}
    kinds = {r.kind for r in train_listing.vectorize_report}
    assert {"comprehension", "accumulate"} <= kinds
    assert not [r for r in train_listing.vectorize_report if r.kind == "not rewritten"]
    w_loop, ops_loop = run(lr_listing_as_written, inputs, **params)
    w_fast, ops_fast = run(lr_listing, inputs, **params)
    ref = lr_numpy(x, y, w0, **params)
    # the sigmoid polynomial is within 0.003 of the exact one; 12 small steps of eta/batch
    assert np.max(np.abs(w_fast - ref)) < 0.02
    assert np.max(np.abs(w_fast - w_loop)) < 1e-3  # same arithmetic, only truncation's last bits
    # the loop version pays one protocol operation per row for xy; the rewrite pays one
    n = len(x)
    assert ops_loop - ops_fast == n - 1


def listing_mulv_as_a_loop(party, x, y, w, batch, eta):
    n, d = x.shape
    grads = zeros(party, d + 1)
    wTx = dot(x[:batch], w[:-1]) + w[-1]
    coeff = sigmoid(-y[:batch] * wTx)
    coexy = [coeff[j] * x[j] * y[j] for j in range(batch)]  # mulv written element-wise
    coey = [coeff[j] * y[j] for j in range(batch)]
    for j in range(batch):
        grads += append(coexy[j], coey[j])
    w += eta * grads / batch
    return w.reveal()


@pytest.mark.parametrize("batch", [4, 16])
def test_one_iteration_costs_o1_vector_ops_not_batch_scalar_ones(batch):
    x, y = _data(n=16)
    w0 = np.zeros(x.shape[1] + 1)
    inputs = {"x": (x, 16), "y": (y, 0), "w": (w0, 16)}
    fast = vectorize(listing_mulv_as_a_loop)
    _, ops_fast = run(fast, inputs, batch=batch, eta=0.5)
    w_loop, ops_loop = run(listing_mulv_as_a_loop, inputs, batch=batch, eta=0.5)
    w_fast, _ = run(fast, inputs, batch=batch, eta=0.5)
    ref = lr_numpy(x[:batch], y[:batch], w0, 1, batch, 0.5)
    assert np.max(np.abs(w_fast - ref)) < 0.01
    assert np.max(np.abs(w_fast - w_loop)) < 1e-3
    fixed_part = ops_fast  # the same for both batch sizes: see the assertion below
    assert ops_loop >= fixed_part + 2 * (batch - 1)  # 3 products per row as written, 1 vectorised
    test_one_iteration_costs_o1_vector_ops_not_batch_scalar_ones.seen[batch] = ops_fast


test_one_iteration_costs_o1_vector_ops_not_batch_scalar_ones.seen = {}  # type: ignore[attr-defined]


def test_vectorised_op_count_does_not_grow_with_the_batch():
    x, y = _data(n=16)
    w0 = np.zeros(x.shape[1] + 1)
    inputs = {"x": (x, 16), "y": (y, 0), "w": (w0, 16)}
    fast = vectorize(listing_mulv_as_a_loop)
    counts = [run(fast, inputs, batch=b, eta=0.5)[1] for b in (2, 8, 16)]
    assert len(set(counts)) == 1
    slow = [run(listing_mulv_as_a_loop, inputs, batch=b, eta=0.5)[1] for b in (2, 8, 16)]
    assert slow[2] - slow[1] == 3 * 8 and slow[1] - slow[0] == 3 * 6


# --- the other element-wise forms ----------------------------------------------------------


def forms(party, x, y, m):
    n = len(x)
    prods = [x[i] * y[i] for i in range(n)]
    lt = [x[i] < y[i] for i in range(n)]
    shifted = [x[i + 1] - x[i] for i in range(n - 1)]
    scaled = [m[i] * x[i] + i for i in range(n)]
    s1 = sum(x[i] * y[i] for i in range(n))
    s2 = 0
    for i in range(n):
        s2 = s2 + x[i] * y[i] * 2
    out = []
    for i in range(1, n):
        out.append(x[i] > y[i - 1])
    rows = [dot(m[i], y) for i in range(n)]
    return [_reveal(v) for v in (prods, lt, shifted, scaled, s1, s2, rows, out)] + [
        type(out).__name__
    ]


def _reveal(v):
    if isinstance(v, list):  # the loop as written builds lists of shared elements
        return np.array([e.reveal() for e in v])
    return v.reveal()


def test_forms_match_numpy_and_cost_one_operation_each():
    rng = np.random.default_rng(3)
    n = 12
    x, y = rng.uniform(-4, 4, n), rng.uniform(-4, 4, n)
    m = rng.uniform(-2, 2, (n, n))
    fast = vectorize(forms)
    assert [r.kind for r in fast.vectorize_report].count("not rewritten") == 0
    got, ops_fast = run(fast, {"x": (x, 16), "y": (y, 16), "m": (m, 16)})
    prods, lt, shifted, scaled, s1, s2, rows, out, kind = got
    assert np.allclose(prods, x * y, atol=4 * F)
    assert np.array_equal(lt, (x < y).astype(int))
    assert np.allclose(shifted, np.diff(x), atol=2 * F)
    assert np.allclose(scaled, m * x[:, None] + np.arange(n)[:, None], atol=8 * F)
    assert abs(s1 - x @ y) < n * 4 * F and abs(s2 - 2 * x @ y) < n * 8 * F
    assert np.allclose(rows, m @ y, atol=n * 4 * F)
    assert np.array_equal(np.ravel(out), (x[1:] > y[:-1]).astype(int)) and kind == "list"
    slow, ops_loop = run(forms, {"x": (x, 16), "y": (y, 16), "m": (m, 16)})
    for a, b in zip(got[:8], slow[:8], strict=True):
        assert np.allclose(a, b, atol=n * 8 * F)
    assert ops_loop > 5 * n and ops_fast < ops_loop / 3


def test_an_empty_range_gives_what_the_loop_gives():
    def prog(party, x):
        a = [x[i] * x[i] for i in range(0)]
        s = x[0] * 0
        for i in range(0):
            s += x[i] * x[i]
        return a, s.reveal()

    a, s = run_local(vectorize(prog), {"x": ([1.0, 2.0], 16)})[0]
    assert a == [] and s == 0


# --- loops it cannot rewrite: a clear warning, and the loop runs as written ----------------


def opaque(v):
    return v * v


def not_vectorisable(party, x):
    n = len(x)
    acc = x[0] * 0
    for i in range(n):
        acc += opaque(x[i])  # an unknown function
    prod = x[0]
    for i in range(1, n):
        prod = prod * x[i]  # each step reads the previous one
    return acc.reveal(), prod.reveal()


def test_unsupported_loops_warn_by_line_and_still_run_correctly():
    with pytest.warns(VectorizeWarning) as rec:
        fast = vectorize(not_vectorisable)
    messages = [str(w.message) for w in rec]
    assert any("opaque" in m and "runs as written" in m and "line" in m for m in messages)
    lines, first = inspect.getsourcelines(not_vectorisable)
    loop_line = first + next(k for k, t in enumerate(lines) if "range(1, n)" in t)
    assert any("previous one" in m and f"line {loop_line}:" in m for m in messages)
    x = np.array([1.5, -2.0, 0.5, 3.0])
    acc, prod = run_local(fast, {"x": (x, 16)})[0]
    assert abs(acc - np.sum(x * x)) < 1e-3 and abs(prod - np.prod(x)) < 1e-3


def test_strict_mode_raises_instead():
    with pytest.raises(VectorizeError, match="line"):
        vectorize(not_vectorisable, strict=True)


def test_sequential_loops_are_left_alone_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = vectorize(train_listing.__wrapped__)
    seq = [r for r in fast.vectorize_report if r.kind == "sequential"]
    assert len(seq) == 2  # the epochs and the mini-batches


# --- Python's semantics are kept where the rewrite could change them ------------------------


def test_offsets_wrap_and_overrun_as_in_the_loop():
    def wraps(party, x):
        return [x[i - 1] * 2 for i in range(len(x))]  # x[-1] first, as Python does

    x = np.array([1.0, 2.0, 3.0])
    got = run_local(lambda p, x: vectorize(wraps)(p, x).reveal(), {"x": (x, 16)})[0]
    assert np.allclose(got, 2 * np.roll(x, 1))

    def overruns(party, x):
        return [x[i + 1] for i in range(len(x))]

    with pytest.raises(IndexError):
        run_local(lambda p, x: vectorize(overruns)(p, x), {"x": (x, 16)})
    with pytest.raises(IndexError):
        run_local(lambda p, x: overruns(p, x), {"x": (x, 16)})


def test_the_loop_variable_and_closures_behave_as_in_the_loop():
    scale = 3

    def prog(party, x):
        acc = 0
        for i in range(1, len(x), 2):
            acc += x[i] * scale + i
        return acc.reveal(), i

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    fast = vectorize(prog)
    assert [r.kind for r in fast.vectorize_report] == ["accumulate"]
    acc, last = run_local(fast, {"x": (x, 16)})[0]
    assert last == 3 and abs(acc - (3 * (2 + 4) + 1 + 3)) < 1e-3


def test_a_registered_function_is_batched_and_an_unregistered_one_is_not():
    from accord.mpc.engine import relu
    from accord.mpc.vectorize import register

    def clip1(v):
        return relu(v) - relu(v - 1)

    def prog(party, x):
        return [clip1(x[i]) for i in range(len(x))]

    with pytest.warns(VectorizeWarning, match="clip1"):
        slow = vectorize(prog)
    register(clip1)
    fast = vectorize(prog)
    x = np.array([-2.0, 0.25, 0.5, 3.0])
    got = run_local(lambda p, x: fast(p, x).reveal(), {"x": (x, 16)})[0]
    assert np.allclose(got, np.clip(x, 0, 1), atol=4 * F)
    n_fast = ops()
    got_slow = run_local(lambda p, x: [v.reveal() for v in slow(p, x)], {"x": (x, 16)})[0]
    assert np.allclose(got_slow, np.clip(x, 0, 1), atol=4 * F) and ops() > n_fast


def test_the_listing_runs_as_a_server_program():
    from accord.base.errors import MpcError
    from accord.mpc.programs import PROGRAMS

    x, y = _data(n=32)
    w0 = np.zeros(x.shape[1] + 1)
    inputs = {"X": (x, 16), "y": (y, 0), "w": (w0, 16)}
    got = run_local(
        lambda p, **kw: PROGRAMS["lr_listing"](p, kw, round_cnt=2, batch=8, eta="0.5")[
            "w"
        ].reveal(),
        inputs,
    )[0]
    assert np.max(np.abs(got - lr_numpy(x, y, w0, 2, 8, 0.5))) < 0.02
    with pytest.raises(MpcError, match="batch"):
        run_local(lambda p, **kw: PROGRAMS["lr_listing"](p, kw, batch=0), inputs)
    with pytest.raises(MpcError, match="weights"):
        run_local(lambda p, **kw: PROGRAMS["lr_listing"](p, dict(kw, w=kw["X"][0])), inputs)
