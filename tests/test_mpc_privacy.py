"""What one server sees does not depend on the inputs; revealed values reach only receivers."""

from __future__ import annotations

import numpy as np

from accord.mpc import engine as E
from accord.mpc.local import local_runs, run_local


def _program(p, x, y):
    z = x * y
    c = x < y
    s = E.sigmoid(x)
    return [z.a, z.b, c.a, c.b, s.a]


def _views(x_val: float, y_val: float, n: int = 20000):
    x = np.full(n, x_val)
    y = np.full(n, y_val)
    held = run_local(_program, {"x": (x, 16), "y": (y, 16)}, keep_views=True)
    parties = local_runs[-1]
    return held, [np.concatenate([v.ravel() for v in p.stats.views]) for p in parties]


def _top_bit_rate(words: np.ndarray) -> float:
    return float((words >> np.uint64(63)).mean())


def _byte_hist(words: np.ndarray) -> np.ndarray:
    return np.bincount((words & np.uint64(0xFF)).astype(np.int64), minlength=256) / words.size


def test_each_server_view_looks_uniform_whatever_the_inputs():
    held0, views0 = _views(0.0, 0.0)
    held1, views1 = _views(50.0, -3.25)
    for i in range(3):
        v0, v1 = views0[i], views1[i]
        assert v0.size == v1.size  # same message pattern for every input
        for v in (v0, v1):
            assert abs(_top_bit_rate(v) - 0.5) < 0.01
        # low-byte histograms of the two views are close (uniform up to sampling noise)
        assert np.abs(_byte_hist(v0) - _byte_hist(v1)).max() < 0.003
        # what the server holds at the end has the same distribution for both inputs (one
        # word of a truncated product is the servers' own bounded mask, not uniform, but it
        # does not depend on the secret)
        for arr0, arr1 in zip(held0[i], held1[i], strict=True):
            assert abs(_top_bit_rate(arr0) - _top_bit_rate(arr1)) < 0.05


def test_no_server_holds_enough_shares_to_reconstruct():
    x = np.arange(1, 2001, dtype=np.float64)
    held = run_local(lambda p, x: (x.a.copy(), x.b.copy()), {"x": (x, 16)})
    secret = (x * 2**16).astype(np.int64).view(np.uint64)
    for a, b in held:
        # a server holds two of the three words; their sum is off by the missing uniform word
        assert np.mean(a + b == secret) < 0.01
        assert abs(_top_bit_rate(a + b - secret) - 0.5) < 0.05
    # any two servers together can (that is the honest-majority threshold)
    (a0, b0), (_a1, b1) = held[0], held[1]
    assert np.array_equal(a0 + b0 + b1, secret)


def test_reveal_to_a_receiver_sends_nothing_to_the_others():
    def prog(p, x):
        before = p.stats.views.copy()
        out = x.reveal(to=2)
        return out, len(p.stats.views) - len(before)

    r = run_local(prog, {"x": (np.array([3.0, 4.0]), 16)}, keep_views=True)
    assert r[0] == (None, 0) and r[1] == (None, 0)
    assert r[2][0].tolist() == [3.0, 4.0] and r[2][1] == 1
