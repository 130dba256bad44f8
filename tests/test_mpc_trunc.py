"""Truncation: perfectly hiding (what role 0 opens is uniform over Z_2^64 whatever z is) and
exact to one unit in the last place over its whole documented range |z| < 2^62."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.mpc import engine as E
from accord.mpc.local import run_local

from .support.mpc_sessions import F, _opened_by_role0

N = 40_000


def _opened(x_val: float, y_val: float) -> np.ndarray:
    """What the server in role 0 opens when truncating x * y, for N equal elements."""

    def prog(p, x, y):
        return _opened_by_role0(p, x, y)

    out = run_local(prog, {"x": (np.full(N, x_val), F), "y": (np.full(N, y_val), F)})
    (c,) = [c for _, c in out if c is not None]
    return c


def _top_rate(c: np.ndarray) -> float:
    return float((c >> np.uint64(63)).mean())


def test_role0_opened_values_do_not_depend_on_the_product():
    """The finding's leak: with a mask below 2^63, role 0 opens z + 2^44 + r, whose top bit is
    set with probability about z / 2^63: 0 for z = 0, 1/64 for z = 2^57 (a product of 8192 and
    4096 at 16 fractional bits, the size the LR example reached). With a full-ring mask the
    top bit is a fair coin for every z."""
    small = _opened(0.0, 0.0)
    big = _opened(8192.0, 4096.0)  # z = 2^13 * 2^16 * 2^12 * 2^16 = 2^57
    sigma = np.sqrt(0.25 / N)
    for c in (small, big):
        assert abs(_top_rate(c) - 0.5) < 5 * sigma, _top_rate(c)
    assert abs(_top_rate(small) - _top_rate(big)) < 5 * np.sqrt(2) * sigma
    # and the top byte is uniform (chi-square, 255 degrees of freedom; 400 is p < 1e-7)
    for c in (small, big):
        counts = np.bincount((c >> np.uint64(56)).astype(np.int64), minlength=256)
        expected = N / 256
        assert float(((counts - expected) ** 2 / expected).sum()) < 400


def test_opened_values_are_independent_of_z_across_magnitudes():
    """Role 0's opened top bit against |z| over products from 0 to 2^58: no correlation."""
    mags = np.linspace(0, 2**14, N)  # x in [0, 2^14], y = 2^12: |z| up to 2^58

    def prog(p, x, y):
        return _opened_by_role0(p, x, y)

    out = run_local(prog, {"x": (mags, F), "y": (np.full(N, 4096.0), F)})
    (c,) = [c for _, c in out if c is not None]
    bits = (c >> np.uint64(63)).astype(np.float64)
    r = np.corrcoef(bits, mags)[0, 1]
    assert abs(r) < 5 / np.sqrt(N), r


def _trunc_of(z: np.ndarray) -> np.ndarray:
    """Truncate a 3-out-of-3 sharing of ``z`` (each server draws the same two words from one
    seed: server 0 holds z - r1 - r2, the others r1 and r2) and reconstruct the result."""
    rnds = [np.random.default_rng(0) for _ in range(3)]

    def prog(p):
        r = rnds[p.i].integers(0, 2**63, (2, z.size), dtype=np.int64).view(np.uint64)
        r = r * np.uint64(2)
        return p.trunc([z.view(np.uint64) - r[0] - r[1], r[0], r[1]][p.i].copy(), F)

    out = run_local(prog)
    return (out[0][0] + out[1][0] + out[2][0]).view(np.int64)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-(2**62), 2**62 - 1), min_size=1, max_size=64))
def test_truncation_is_exact_over_the_whole_range(zs):
    z = np.array(zs, dtype=np.int64)
    got = _trunc_of(z)
    assert np.abs(got - (z >> F)).max() <= 1


def test_truncation_at_the_edges_and_large_negative_products():
    z = np.array(
        [-(2**62), 2**62 - 1, -(2**44) - 1, -(2**50), -(2**61), 0, -1, 1, 2**57], dtype=np.int64
    )
    assert np.abs(_trunc_of(z) - (z >> F)).max() <= 1
    # a product of reals below -4096 (z < -2^44): wrong before, exact now
    out = run_local(
        lambda p, x, y: (x * y).reveal(),
        {"x": (np.array([-5000.0, -1e6]), F), "y": (np.array([1000.0, 900.0]), F)},
    )
    assert np.allclose(out[0], [-5e6, -9e8], rtol=1e-6)


def test_sigmoid_clamps_before_its_polynomial():
    x = np.array([-(2.0**28), -1e5, -7.0, -6.5, -3.0, 0.0, 2.5, 6.5, 1e5, 2.0**28])
    out = run_local(lambda p, x: E.sigmoid(x).reveal(), {"x": (x, F)})
    want = 1 / (1 + np.exp(-np.clip(x, -50, 50)))
    assert np.abs(out[0] - want).max() < 0.003


def test_mean_and_division_by_a_public_constant_are_precise():
    """Finding 7: 1/c was encoded with 16 fractional bits (the mean of 10^5 ones was 1.526)."""

    def prog(p, x, y):
        return x.mean().reveal(), (y / 3).reveal(), (y / 1000).reveal(), (y / 0.5).reveal()

    ones = np.ones(100_000)
    y = np.array([1.0, -7.5, 12345.0])
    m, d3, d1000, dhalf = run_local(prog, {"x": (ones, F), "y": (y, F)})[0]
    assert abs(float(m) - 1.0) < 1e-4
    assert np.allclose(d3, y / 3, atol=1e-4)
    assert np.allclose(d1000, y / 1000, atol=1e-4)
    assert np.allclose(dhalf, y * 2, atol=1e-4)
