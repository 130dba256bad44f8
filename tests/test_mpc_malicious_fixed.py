"""Checked mode for fixed-point truncation and matrix products (accord.mpc.malicious).

Until now a checked program could use only integer and bit arithmetic: truncation and shared
matrix products were refused. They now run checked. An honest run gives the semi-honest
answer; a server that lies inside a truncation or a matrix product makes an honest server
abort with MpcAbort before anything is opened or released. The same lies against the
semi-honest engine change the answer silently.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from accord.base.errors import MpcError
from accord.mpc.engine import Party, SharedArray, sigmoid
from accord.mpc.local import run_local
from accord.mpc.malicious import MAX_CHECKED_TERMS, MaliciousParty, MpcAbort

from .support.mpc_liars import Liar, _party_class

RNG = np.random.default_rng(7)
X = RNG.normal(0, 3, (4, 5))
Y = RNG.normal(0, 3, (5, 3))
V = RNG.normal(0, 3, 5)
INPUTS = {"X": (X, 16), "Y": (Y, 16), "V": (V, 16)}


def fixed_program(outcomes: dict[int, Any] | None = None) -> Any:
    def prog(p: Party, X: SharedArray, Y: SharedArray, V: SharedArray) -> Any:  # noqa: N803
        try:
            res = {
                "mm": X @ Y,
                "mv": X @ V,
                "vm": V @ Y,
                "mul": X[:3, :3] * Y[:3].T,
                "const": X * 0.37,
                "pub_mm": X @ np.full((5, 2), 0.5),
                "div": X / 7.0,
                "sig": sigmoid(X),
            }
            if isinstance(p, MaliciousParty):
                res = p.release(res)
            out = {k: v.reveal() for k, v in res.items()}
        except BaseException as e:
            if outcomes is not None:
                outcomes[p.i] = e
            raise
        if outcomes is not None:
            outcomes[p.i] = "released"
        return out

    return prog


REF = {
    "mm": X @ Y,
    "mv": X @ V,
    "vm": V @ Y,
    "mul": X[:3, :3] * Y[:3].T,
    "const": X * 0.37,
    "pub_mm": X @ np.full((5, 2), 0.5),
    "div": X / 7.0,
    "sig": 1.0 / (1.0 + np.exp(-X)),
}


def test_honest_checked_fixed_point_and_matrix_products_are_right() -> None:
    """Fails on the old code: MaliciousParty refused every one of these operations."""
    got = run_local(fixed_program(), INPUTS, party_class=MaliciousParty)
    for k, ref in REF.items():
        assert np.shape(got[0][k]) == np.shape(ref), k
        tol = 3e-3 if k == "sig" else 5e-4
        assert np.max(np.abs(got[0][k] - ref)) < tol, k
    plain = run_local(fixed_program(), INPUTS)
    for k in REF:
        assert np.max(np.abs(got[0][k] - plain[0][k])) < 3e-3, k


def test_checked_truncation_counts_what_it_checked() -> None:
    seen: dict[int, int] = {}

    def prog(p: Any, X: SharedArray) -> Any:  # noqa: N803
        out = (X * 0.5).reveal()
        seen[p.i] = p.checked_truncs
        return out

    got = run_local(prog, {"X": (X, 16)}, party_class=MaliciousParty)[0]
    assert np.max(np.abs(got - X * 0.5)) < 1e-4
    assert seen == {0: X.size, 1: X.size, 2: X.size}


# --- a server that lies in the truncation --------------------------------------------------


class TruncShifter(MaliciousParty):
    """Adds ``delta`` units to its share of the first truncation's result (a consistent
    lie: both of its components, as a server that computed a wrong value would)."""

    delta = 0
    liar = 0

    def _trunc_unchecked(self, t: Any, k: int) -> Any:
        a, b = super()._trunc_unchecked(t, k)
        if self.i == self.liar and not getattr(self, "lied", False):
            self.lied = True
            a = a.copy()
            a.reshape(-1)[:1] += np.uint64(self.delta % (1 << 64))
        return a, b


class TruncFlipper(MaliciousParty):
    """Flips bit ``bit`` of the first word of the ``k``-th message it sends inside a
    truncation (the masked value, the wrap-bit correction or the last reshare)."""

    liar, k, bit = 0, 0, 40

    def _trunc_unchecked(self, t: Any, f: int) -> Any:
        self.in_trunc = True
        try:
            return super()._trunc_unchecked(t, f)
        finally:
            self.in_trunc = False

    def send(self, to: int, data: Any) -> None:
        if self.i == self.liar and getattr(self, "in_trunc", False):
            sent = getattr(self, "trunc_sent", 0)
            self.trunc_sent = sent + 1
            if sent == self.k and data.size:
                data = np.array(data, dtype=np.uint64).reshape(-1)
                data[0] ^= np.uint64(1 << self.bit)
                self.flipped = True
        super().send(to, data)


def _honest_abort(outcomes: dict[int, Any], liar: int) -> None:
    honest = [i for i in range(3) if i != liar]
    assert any(isinstance(outcomes.get(i), MpcAbort) for i in honest), outcomes
    assert not any(outcomes.get(i) == "released" for i in range(3)) or any(
        isinstance(outcomes.get(i), MpcAbort) for i in honest
    )


def _trunc_only(outcomes: dict[int, Any]) -> Any:
    def prog(p: Any, X: SharedArray) -> Any:  # noqa: N803
        try:
            out = (X * 0.37).reveal()
        except BaseException as e:
            outcomes[p.i] = e
            raise
        outcomes[p.i] = "released"
        return out

    return prog


@pytest.mark.parametrize("liar", [0, 1, 2])
@pytest.mark.parametrize("delta", [2, -3, 1 << 20, 1 << 48, -(1 << 48)])
def test_a_shifted_truncation_aborts(liar: int, delta: int) -> None:
    """Any shift beyond the honest rounding (one unit) aborts; 2^48 = 2^(64-16) is the shift
    a range check on d alone would miss (d wraps around the ring): the bound on y catches it."""
    cls = type("Shift", (TruncShifter,), {"delta": delta, "liar": liar})
    outcomes: dict[int, Any] = {}
    with pytest.raises(MpcError):
        run_local(_trunc_only(outcomes), {"X": (X, 16)}, party_class=cls, timeout=30)
    _honest_abort(outcomes, liar)


def test_a_flipped_truncation_message_aborts() -> None:
    """Each message a server sends inside a truncation, with bit 40 flipped, aborts the
    run. The server's role (which sends one message, which two) follows the operation
    counter, so every liar and message index is tried, and a run counts when a flip
    happened: five messages in all (role 0 sends one, roles 1 and 2 two each)."""
    flips = 0
    for liar in range(3):
        for k in range(3):
            seen: dict[int, bool] = {}

            class Flip(TruncFlipper):
                def verify(self, seen: dict[int, bool] = seen) -> None:
                    seen[self.i] = getattr(self, "flipped", False)
                    super().verify()

            Flip.liar, Flip.k = liar, k
            outcomes: dict[int, Any] = {}
            with contextlib.suppress(MpcError):
                run_local(_trunc_only(outcomes), {"X": (X, 16)}, party_class=Flip, timeout=30)
            if seen.get(liar):
                flips += 1
                _honest_abort(outcomes, liar)
            else:
                assert all(v == "released" for v in outcomes.values()), outcomes
    assert flips == 5


def test_the_same_truncation_lie_fools_the_semi_honest_engine() -> None:
    """Why the check is needed: the shifted share gives a wrong answer and no error."""

    class SemiShift(Party):
        def trunc(self, t: Any, f: int) -> Any:
            a, b = super().trunc(t, f)
            if self.i == 1:
                a = a.copy()
                a.reshape(-1)[0] += np.uint64(1 << 20)
            return a, b

    got = run_local(lambda p, X: (X * 0.37).reveal(), {"X": (X, 16)}, party_class=SemiShift)
    errors = [abs(g.reshape(-1)[0] - X.reshape(-1)[0] * 0.37) for g in got]
    assert max(errors) > 10  # 2^20 units = 16, and no server noticed


# --- a server that lies in a matrix product --------------------------------------------------


@pytest.mark.parametrize("liar", [0, 1, 2])
@pytest.mark.parametrize("frac", [0, 16])
def test_a_lie_in_a_matrix_product_aborts(liar: int, frac: int) -> None:
    """The liar adds 1 to its reshare word of the product (consistently: it keeps the wrong
    value), for an integer and for a fixed-point matrix product."""
    a = np.arange(12).reshape(3, 4) - 5 if frac == 0 else X[:3, :4]
    b = np.arange(8).reshape(4, 2) - 3 if frac == 0 else Y[:4, :2]
    outcomes: dict[int, Any] = {}

    def prog(p: Any, A: SharedArray, B: SharedArray) -> Any:  # noqa: N803
        try:
            out = p.release({"c": A @ B})
        except BaseException as e:
            outcomes[p.i] = e
            raise
        outcomes[p.i] = "released"
        return out

    cls = _party_class(liar, Liar, "reshare")
    with pytest.raises(MpcError):
        run_local(prog, {"A": (a, frac), "B": (b, frac)}, party_class=cls, timeout=30)
    _honest_abort(outcomes, liar)


def test_every_message_of_a_checked_matrix_product_is_checked() -> None:
    """Flip a high bit of each message server 1 sends in turn, in a fixed-point matrix
    product and release: every run aborts on an honest server."""

    class Tamper:
        def __init__(self, inner: Any, k: int) -> None:
            self.inner, self.k, self.sent = inner, k, 0

        def send(self, to: int, data: Any) -> None:
            if self.sent == self.k and data.size:
                data = data.copy()
                data[0] ^= np.uint64(1 << 40)
            self.sent += 1
            self.inner.send(to, data)

        def recv(self, frm: int, count: int) -> Any:
            return self.inner.recv(frm, count)

    box: dict[str, Any] = {}

    def count(t: Any) -> Any:
        box["t"] = Tamper(t, -1)
        return box["t"]

    def prog(outcomes: dict[int, Any]) -> Any:
        def run(p: Any, A: SharedArray, B: SharedArray) -> Any:  # noqa: N803
            try:
                out = p.release({"c": A @ B})
            except BaseException as e:
                outcomes[p.i] = e
                raise
            outcomes[p.i] = "released"
            return out

        return run

    ins = {"A": (X[:2, :3], 16), "B": (Y[:3, :2], 16)}
    run_local(prog({}), ins, party_class=MaliciousParty, wrap={1: count})
    total = box["t"].sent
    assert total > 10
    for k in range(total):
        outcomes: dict[int, Any] = {}
        with pytest.raises(MpcError):
            run_local(
                prog(outcomes),
                ins,
                party_class=MaliciousParty,
                wrap={1: lambda t, k=k: Tamper(t, k)},
                timeout=30,
            )
        _honest_abort(outcomes, 1)


def test_a_huge_checked_matrix_product_is_refused_before_any_message() -> None:
    n = int(np.sqrt(MAX_CHECKED_TERMS)) + 2
    with pytest.raises(MpcError, match="at most"):
        run_local(
            lambda p, A, B: A @ B,
            {
                "A": (np.zeros((n, n), dtype=np.int64), 0),
                "B": (np.zeros((n, 1), dtype=np.int64), 0),
            },
            party_class=MaliciousParty,
            timeout=30,
        )


def test_flipper_really_flipped() -> None:
    """Guard against a vacuous liar: the flipper changes a message inside a truncation."""
    flipped: dict[int, bool] = {}

    class Probe(TruncFlipper):
        liar, k = 1, 0

        def verify(self) -> None:
            flipped[self.i] = getattr(self, "flipped", False)
            super().verify()

    with pytest.raises(MpcError):
        run_local(lambda p, X: (X * 0.37).reveal(), {"X": (X, 16)}, party_class=Probe, timeout=30)
    assert flipped.get(1) is True
