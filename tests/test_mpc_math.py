"""exp, log, sqrt, reciprocal and division by a shared value, against NumPy.

Each bound is the one the function's docstring states (f = 16 fractional bits), checked
over its whole documented range; inputs are compared with the function of the value as
encoded (x itself is known only to 2^-17).
"""

from __future__ import annotations

import numpy as np
import pytest

from accord.base.errors import MpcError
from accord.mpc import engine as E
from accord.mpc.local import run_local

F = 2.0**-16


def q(v):
    return np.round(np.asarray(v, dtype=np.float64) / F) * F


def test_reciprocal_on_1_to_1000_has_no_hole_at_the_top():
    # The old Newton-from-2/(lo+hi) underflowed to 0 above ~997.
    x = q(np.concatenate([np.linspace(1, 1000, 2500), [990, 997, 998, 999, 999.9, 1000]]))
    got = run_local(lambda p, x: E.reciprocal(x, 1, 1000).reveal(), {"x": (x, 16)})[0]
    assert np.all(got > 0)
    assert np.all(np.abs(got - 1 / x) <= 4 * F + 8 * F / x)


def test_reciprocal_over_a_wide_range():
    x = q(np.geomspace(2**-16, 2**28, 2500))
    got = run_local(lambda p, x: E.reciprocal(x, 2**-16, 2**28).reveal(), {"x": (x, 16)})[0]
    assert np.all(np.abs(got - 1 / x) <= 4 * F + 8 * F / x)


def test_divide_by_a_shared_value():
    rng = np.random.default_rng(1)
    y = q(np.concatenate([np.linspace(1, 1000, 1500), rng.uniform(1, 1000, 500)]))
    x = q(rng.uniform(-1000, 1000, y.size))
    got = run_local(lambda p, x, y: E.divide(x, y, 1, 1000).reveal(), {"x": (x, 16), "y": (y, 16)})[
        0
    ]
    assert np.all(np.abs(got - x / y) <= 4 * F + np.abs(x / y) * 8 * F)
    pub = run_local(lambda p, y: E.divide(3.5, y, 1, 1000).reveal(), {"y": (y, 16)})[0]
    assert np.all(np.abs(pub - 3.5 / y) <= 4 * F + (3.5 / y) * 8 * F)


def test_sqrt_and_log_over_the_default_range():
    x = q(np.concatenate([np.geomspace(2**-16, 2**29 - 2, 2500), np.linspace(0.5, 4, 300)]))
    s, lg = run_local(lambda p, x: [E.sqrt(x).reveal(), E.log(x).reveal()], {"x": (x, 16)})[0]
    assert np.all(np.abs(s - np.sqrt(x)) <= 4 * F + np.sqrt(x) * 8 * F)
    assert np.all(np.abs(lg - np.log(x)) <= 16 * F)


def test_exp_inside_and_outside_its_range():
    x = q(np.linspace(-25, 16, 4001))
    got = run_local(lambda p, x: E.exp(x).reveal(), {"x": (x, 16)})[0]
    ref = np.exp(x)
    inside = x < 20 * np.log(2)
    assert np.all(np.abs(got - ref)[inside] <= 2 * F + ref[inside] * 16 * F)
    assert np.all(np.abs(got[~inside] - 2.0**20) <= 2.0**20 * 16 * F)  # saturated, not wrapped
    assert np.all(np.abs(got[x < -17 * np.log(2)]) <= 2 * F)


def test_elementary_functions_keep_shapes():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    outs = run_local(
        lambda p, x: (
            [f(x).reveal().shape for f in (E.exp, E.log, E.sqrt)]
            + [E.reciprocal(x, 1, 4).reveal().shape]
        ),
        {"x": (x, 16)},
    )[0]
    assert outs == [(2, 2)] * 4


def test_bad_ranges_are_refused():
    for lo, hi in ((0, 1), (2, 1), (1, 2.0**40), (float("nan"), 1)):
        with pytest.raises(MpcError):
            run_local(lambda p, x, lo=lo, hi=hi: E.reciprocal(x, lo, hi), {"x": ([1.0], 16)})
    with pytest.raises(MpcError, match="divide"):
        run_local(lambda p, x: x / x, {"x": ([1.0], 16)})


def test_divide_at_the_edges_of_its_range():
    rng = np.random.default_rng(2)
    y = q(np.geomspace(2**-16, 2**25 - 1, 1200))
    x = q(rng.uniform(-(2**20) + 1, 2**20 - 1, y.size))
    got = run_local(
        lambda p, x, y: E.divide(x, y, 2**-16, 2**25 - 1).reveal(), {"x": (x, 16), "y": (y, 16)}
    )[0]
    assert np.all(np.abs(got - x / y) <= 4 * F + np.abs(x / y) * 8 * F)
    with pytest.raises(MpcError, match="too wide"):
        run_local(lambda p, x, y: E.divide(x, y, 1, 2**26), {"x": ([1.0], 16), "y": ([2.0], 16)})
