"""The MPC engine against plain NumPy: every operation, fixed-point error bounds, edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from accord.base.errors import MpcError
from accord.mpc import engine as E
from accord.mpc import ring
from accord.mpc.local import combine, run_local, split
from accord.mpc.prf import Prf

ULP = 2.0**-16
reals = st.floats(-60.0, 60.0, allow_nan=False, allow_infinity=False)
vec = arrays(np.float64, st.integers(1, 12), elements=reals)
ints = st.integers(-(2**40), 2**40)

fast = settings(max_examples=25, deadline=None)


def one(prog, **inputs):
    return run_local(prog, {k: v for k, v in inputs.items()})[0]


@fast
@given(vec, st.data())
def test_add_sub_mul_match_numpy(x, data):
    y = data.draw(arrays(np.float64, x.shape, elements=reals))
    r = one(
        lambda p, x, y: [
            (x + y).reveal(),
            (x - y).reveal(),
            (x * y).reveal(),
            (-x).reveal(),
            (x / 3.0).reveal(),
            (2.5 - x).reveal(),
        ],
        x=(x, 16),
        y=(y, 16),
    )
    # the constant 1/3 is encoded to ULP/2, so the error grows with |x|; plus one truncation
    assert np.all(np.abs(r[4] - x / 3.0) <= ULP * (np.abs(x) / 2 + 2))
    assert np.abs(r[5] - (2.5 - x)).max() <= 2 * ULP
    assert np.abs(r[0] - (x + y)).max() <= 2 * ULP
    assert np.abs(r[1] - (x - y)).max() <= 2 * ULP
    # encoding error of each operand (ULP/2) times the other, plus one ULP of truncation
    bound = ULP * (np.abs(x) + np.abs(y) + 2)
    assert np.all(np.abs(r[2] - x * y) <= bound)
    assert np.abs(r[3] + x).max() <= ULP


@fast
@given(st.lists(ints, min_size=1, max_size=8), st.lists(ints, min_size=1, max_size=8))
def test_integer_arithmetic_is_exact_mod_2_64(xs, ys):
    n = min(len(xs), len(ys))
    x, y = np.array(xs[:n], dtype=np.int64), np.array(ys[:n], dtype=np.int64)
    r = one(
        lambda p, x, y: [(x * y).reveal(), (x + y).reveal(), (x * 3 - y).reveal()],
        x=(x, 0),
        y=(y, 0),
    )
    wrap = lambda v: np.array([((int(a) + 2**63) % 2**64) - 2**63 for a in v], dtype=np.int64)  # noqa: E731
    assert np.array_equal(r[0], wrap([int(a) * int(b) for a, b in zip(x, y, strict=True)]))
    assert np.array_equal(r[1], x + y)
    assert np.array_equal(r[2], x * 3 - y)


def test_overflow_wraps_like_the_ring():
    big = np.array([2**63 - 1, -(2**63), 2**62], dtype=np.int64)
    r = one(lambda p, x: [(x + 1).reveal(), (x * 2).reveal()], x=(big, 0))
    assert r[0].tolist() == [-(2**63), -(2**63) + 1, 2**62 + 1]
    assert r[1].tolist() == [-2, 0, -(2**63)]


@fast
@given(vec, st.data())
def test_comparisons_match_numpy(x, data):
    y = data.draw(arrays(np.float64, x.shape, elements=reals))
    # values closer than the encoding resolution compare as their encodings do
    y = np.where(np.abs(x - y) < 4 * ULP, x, y)
    r = one(
        lambda p, x, y: [
            (x < y).reveal(),
            (x > y).reveal(),
            (x == y).reveal(),
            (x <= y).reveal(),
            (x >= y).reveal(),
            (x != y).reveal(),
        ],
        x=(x, 16),
        y=(y, 16),
    )
    for got, want in zip(r, [x < y, x > y, x == y, x <= y, x >= y, x != y], strict=True):
        assert np.array_equal(got, want.astype(np.int64))


@fast
@given(st.lists(st.integers(-(2**62), 2**62 - 1), min_size=1, max_size=10))
def test_sign_bit_at_the_edges_of_the_range(xs):
    x = np.array(xs + [0, -1, 1, 2**62 - 1, -(2**62)], dtype=np.int64)
    r = one(lambda p, x: x.ltz().reveal(), x=(x, 0))
    assert np.array_equal(r, (x < 0).astype(np.int64))


@fast
@given(vec)
def test_relu_select_sigmoid(x):
    r = one(
        lambda p, x: [
            E.relu(x).reveal(),
            E.sigmoid(x).reveal(),
            E.where(x > 1.0, x, x * 2).reveal(),
            E.maximum(x, 0.5).reveal(),
        ],
        x=(x, 16),
    )
    assert np.abs(r[0] - np.maximum(x, 0)).max() <= ULP
    assert np.abs(r[1] - 1 / (1 + np.exp(-x))).max() <= 0.003
    assert np.abs(r[2] - np.where(x > 1.0, x, 2 * x)).max() <= 4 * ULP
    assert np.abs(r[3] - np.maximum(x, 0.5)).max() <= 2 * ULP


@fast
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(0.5, 50.0)))
def test_reciprocal_by_newton(x):
    r = one(lambda p, x: E.reciprocal(x, 0.5, 50.0).reveal(), x=(x, 16))
    assert np.all(np.abs(r - 1 / x) <= 1e-3 * (1 / x) + 20 * ULP)


@fast
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.data())
def test_matmul_dot_and_broadcasting(n, k, m, data):
    el = st.floats(-8, 8, allow_nan=False)
    a = data.draw(arrays(np.float64, (n, k), elements=el))
    b = data.draw(arrays(np.float64, (k, m), elements=el))
    v = data.draw(arrays(np.float64, (k,), elements=el))
    row = data.draw(arrays(np.float64, (1, k), elements=el))
    r = one(
        lambda p, a, b, v, row: [
            (a @ b).reveal(),
            E.dot(a, v).reveal(),
            (a + row).reveal(),
            (a * row).reveal(),
            (a @ b.T.T).sum(axis=0).reveal(),
            (a.T @ np.ones(n)).reveal(),
        ],
        a=(a, 16),
        b=(b, 16),
        v=(v, 16),
        row=(row, 16),
    )
    tol = ULP * (k * 16 + 2)
    assert np.abs(r[0] - a @ b).max() <= tol
    assert np.abs(r[1] - a @ v).max() <= tol
    assert np.abs(r[2] - (a + row)).max() <= 2 * ULP
    assert np.abs(r[3] - a * row).max() <= ULP * 20
    assert np.abs(r[4] - (a @ b).sum(axis=0)).max() <= tol * n
    assert np.abs(r[5] - a.T @ np.ones(n)).max() <= ULP * n


def test_slicing_concatenate_stack_reshape_sum_mean():
    x = np.arange(24, dtype=np.float64).reshape(4, 6) / 7
    y = -x[:, :2]

    def prog(p, x, y):
        return [
            x[1:3, ::2].reveal(),
            E.concatenate([x, y], axis=1).reveal(),
            E.stack([x[0], x[1]]).reveal(),
            x.reshape(6, 4).T.reveal(),
            x.sum().reveal(),
            x.mean(axis=0).reveal(),
            len(x),
            x.shape,
        ]

    r = one(prog, x=(x, 16), y=(y, 16))
    assert np.abs(r[0] - x[1:3, ::2]).max() <= ULP
    assert np.abs(r[1] - np.concatenate([x, y], axis=1)).max() <= ULP
    assert np.abs(r[2] - np.stack([x[0], x[1]])).max() <= ULP
    assert np.abs(r[3] - x.reshape(6, 4).T).max() <= ULP
    assert abs(float(r[4]) - x.sum()) <= 24 * ULP
    assert np.abs(r[5] - x.mean(axis=0)).max() <= 8 * ULP
    assert r[6] == 4 and r[7] == (4, 6)


def test_large_matmul_uses_exact_limb_path():
    a = np.frombuffer(Prf(b"k" * 16).words(1, 0, 300 * 200), dtype=np.uint64).reshape(300, 200)
    b = np.frombuffer(Prf(b"k" * 16).words(2, 0, 200 * 150), dtype=np.uint64).reshape(200, 150)
    assert np.array_equal(ring.matmul(a, b), np.matmul(a, b))


def test_fixed_point_encoding_and_errors():
    assert ring.decode_fixed(ring.encode_fixed([-1.5, 2.25], 16), 16).tolist() == [-1.5, 2.25]
    with pytest.raises(MpcError):
        ring.encode_fixed([np.nan], 16)
    with pytest.raises(MpcError):
        ring.encode_fixed([2.0**60], 16)
    with pytest.raises(MpcError):
        ring.FixedPoint(frac_bits=40)


def test_split_and_combine_check_consistency():
    tri = split(np.array([5, -7]), 0)
    assert combine(tri).view(np.int64).tolist() == [5, -7]
    assert combine([tri[0], None, tri[2]]).view(np.int64).tolist() == [5, -7]
    bad = [tri[0], (tri[1][0] + np.uint64(1), tri[1][1]), tri[2]]
    with pytest.raises(MpcError):
        combine(bad)
    with pytest.raises(MpcError):
        combine([tri[0], None, None])


def test_prf_is_deterministic_and_address_separated():
    f = Prf(b"\x01" * 16)
    a = f.words(7, 1, 1000)
    assert np.array_equal(a, Prf(b"\x01" * 16).words(7, 1, 1000))
    assert not np.array_equal(a, f.words(7, 2, 1000))
    assert not np.array_equal(a, f.words(8, 1, 1000))
    assert not np.array_equal(a, Prf(b"\x02" * 16).words(7, 1, 1000))
    with pytest.raises(MpcError):
        Prf(b"short")


def test_reveal_to_one_server_only():
    x = np.array([1.5, -2.0])
    r = run_local(lambda p, x: x.reveal(to=1), {"x": (x, 16)})
    assert r[0] is None and r[2] is None
    assert r[1].tolist() == [1.5, -2.0]


def test_division_by_shared_needs_a_range():
    with pytest.raises(MpcError):
        run_local(lambda p, x: x / x, {"x": (np.ones(2), 16)})


@fast
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=200))
def test_bit_planes_transpose(words):
    v = np.array(words, dtype=np.uint64)
    w = -(-v.size // 64)
    planes = E.bit_planes(v, w)
    assert planes.shape == (64, w)
    for k, x in enumerate(words):
        for j in (0, 1, 7, 8, 31, 62, 63):
            assert (int(planes[j][k // 64]) >> (k % 64)) & 1 == (x >> j) & 1


def test_matmul_limb_path_with_a_long_inner_axis():
    a = Prf(b"m" * 16).words(1, 0, 40 * 1500).reshape(40, 1500)
    b = Prf(b"m" * 16).words(2, 0, 1500 * 30).reshape(1500, 30)
    v = Prf(b"m" * 16).words(3, 0, 1500)
    assert np.array_equal(ring.matmul(a, b), np.matmul(a, b))
    assert np.array_equal(ring.matmul(a, v), np.matmul(a, v))
    assert np.array_equal(ring.matmul(np.ascontiguousarray(b.T), a.T.copy()), np.matmul(b.T, a.T))
