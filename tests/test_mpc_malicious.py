"""Security with abort against one malicious server (accord.mpc.malicious).

A lying server is an honest server's code with one message changed: either by position (every
message it sends, one at a time) or by where it is in the protocol (a reshare word, an opened
share, a comparison AND, a share of the released output). Each lie must make an honest server
abort with MpcAbort; the same lie against the semi-honest engine gives a wrong answer
silently, which is what the checks are for. With honest servers the answer is unchanged.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from accord.base.errors import MpcError, PeerGone
from accord.mpc.engine import Party, SharedArray
from accord.mpc.local import combine, run_local
from accord.mpc.malicious import MaliciousParty, MpcAbort, bucket_plan
from accord.mpc.programs import BALANCE_BITS, anti_stacking

from .support.mpc_liars import Liar, _party_class

LIMIT = 100


def expected(balances: list[int], limit: int = LIMIT) -> int:
    ok = all(0 <= b < 1 << BALANCE_BITS for b in balances) and sum(balances) < limit
    return int(ok)


def _inputs(balances: list[int]) -> dict[str, tuple[Any, int]]:
    return {f"s{i}": (np.array(v), 0) for i, v in enumerate(balances)}


def checked_program(outcomes: dict[int, Any] | None = None, reveal: bool = False) -> Any:
    """anti_stacking as a checked server runs it: program, then release (or an opening)."""

    def prog(p: Party, **kw: SharedArray) -> Any:
        try:
            res = anti_stacking(p, kw, limit=LIMIT)
            if reveal:
                out: Any = int(res["ok"].reveal())
            elif isinstance(p, MaliciousParty):
                out = p.release(res)
            else:
                out = res
        except BaseException as e:
            if outcomes is not None:
                outcomes[p.i] = e
            raise
        if outcomes is not None:
            outcomes[p.i] = "released"
        return out

    return prog


def answer(results: list[Any]) -> int:
    return int(combine([(r["ok"].a, r["ok"].b) for r in results]))


CASES = [
    [10, 20, 30],
    [50, 60],
    [99],
    [0, 0, 0, 0],
    [-5, 3],
    [1 << 41, 1],
    [(1 << 40) - 1],
    [33, 33, 33],
]


@pytest.mark.parametrize("balances", CASES)
def test_honest_servers_get_the_same_answer(balances: list[int]) -> None:
    checked = answer(run_local(checked_program(), _inputs(balances), party_class=MaliciousParty))
    plain = answer(run_local(checked_program(), _inputs(balances)))
    assert checked == plain == expected(balances)


# --- lies by position: every message of every server --------------------------------------------


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0

    def send(self, to: int, data: Any) -> None:
        self.sent += 1
        self.inner.send(to, data)

    def recv(self, frm: int, count: int) -> Any:
        return self.inner.recv(frm, count)


class Tamper(Counting):
    """Sends message number ``k`` with one bit flipped (``word``: first or last word)."""

    def __init__(self, inner: Any, k: int, last: bool) -> None:
        super().__init__(inner)
        self.k, self.last = k, last

    def send(self, to: int, data: Any) -> None:
        if self.sent == self.k and data.size:
            data = data.copy()
            idx = data.size - 1 if self.last else 0
            data[idx] ^= np.uint64(1 << 63) if self.last else np.uint64(1)
        super().send(to, data)


def _assert_honest_abort(outcomes: dict[int, Any], liar: int) -> None:
    """At least one honest server refuses with MpcAbort. (Aborts need not be unanimous: the
    other honest server may finish, but the oracle needs all three answers, so the request
    fails; what an honest server releases has passed its own checks.)"""
    honest = [i for i in range(3) if i != liar]
    assert any(isinstance(outcomes.get(i), MpcAbort) for i in honest), outcomes


def test_every_message_of_every_server_is_checked() -> None:
    balances = [40, 25, 10]
    counters: dict[int, Counting] = {}

    def counting(i: int) -> Any:
        def wrap(t: Any) -> Any:
            counters[i] = Counting(t)
            return counters[i]

        return wrap

    run_local(
        checked_program(),
        _inputs(balances),
        party_class=MaliciousParty,
        wrap={i: counting(i) for i in range(3)},
    )
    for liar in range(3):
        total = counters[liar].sent
        assert total > 20
        for k, last in itertools.product(range(total), (False, True)):
            outcomes: dict[int, Any] = {}
            with pytest.raises(MpcError):
                run_local(
                    checked_program(outcomes),
                    _inputs(balances),
                    party_class=MaliciousParty,
                    wrap={liar: lambda t, k=k, last=last: Tamper(t, k, last)},
                    timeout=30,
                )
            _assert_honest_abort(outcomes, liar)


# --- lies by place: a liar that knows the protocol --------------------------------------------------


class SemiHonestLiar(Party):
    """The same lies against the semi-honest engine (what the old code does with them)."""

    place = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase: list[str] = []
        self.lied = False
        self.ands_seen = 0

    _in = Liar._in

    def send(self, to: int, data: Any) -> None:
        if not self.lied and self.phase and self.phase[-1] == self.place:
            data = np.array(data, dtype=np.uint64).reshape(-1)
            data[0] += np.uint64(1)
            self.lied = True
        super().send(to, data)

    def reshare(self, t: Any) -> Any:
        if self.place == "reshare" and not self.lied:
            t = t.copy()
            t.reshape(-1)[0] += np.uint64(1)
            self.lied = True
        return super().reshare(t)

    def and_(self, *a: Any) -> Any:
        self.ands_seen += 1
        with self._in("and" if self.ands_seen == 7 else "and-other"):  # the first msb's root
            return super().and_(*a)

    def open(self, a: Any, b: Any) -> Any:
        with self._in("open"):
            return super().open(a, b)


@pytest.mark.parametrize("liar", [0, 1, 2])
@pytest.mark.parametrize("place", ["reshare", "and", "open", "output"])
def test_a_lie_in_each_place_aborts(liar: int, place: str) -> None:
    balances = [40, 25, 10]  # answer 1: a flipped comparison bit makes it 0
    reveal = place == "open"  # a program that opens its answer (the liar lies in the opening)
    outcomes: dict[int, Any] = {}
    with pytest.raises(MpcError):
        run_local(
            checked_program(outcomes, reveal=reveal),
            _inputs(balances),
            party_class=_party_class(liar, Liar, place),
            timeout=30,
        )
    _assert_honest_abort(outcomes, liar)


@pytest.mark.parametrize("liar", [0, 1, 2])
@pytest.mark.parametrize("place", ["reshare", "and"])
def test_products_are_checked_before_any_opening(liar: int, place: str) -> None:
    """A program that opens its answer: the checks run first, so neither honest server ever
    holds the opened (wrong) value."""
    outcomes: dict[int, Any] = {}
    with pytest.raises(MpcError):
        run_local(
            checked_program(outcomes, reveal=True),
            _inputs([40, 25, 10]),
            party_class=_party_class(liar, Liar, place),
            timeout=30,
        )
    for i in range(3):
        if i != liar:
            assert isinstance(outcomes[i], MpcError), outcomes


@pytest.mark.parametrize("place", ["reshare", "and", "open"])
def test_the_same_lies_fool_the_semi_honest_engine(place: str) -> None:
    """Why the checks exist: without them each lie changes the answer and nobody notices."""
    balances = [40, 25, 10]
    reveal = place == "open"
    wrong = 0
    for liar in range(3):
        res = run_local(
            checked_program(reveal=reveal),
            _inputs(balances),
            party_class=_party_class(liar, SemiHonestLiar, place),
        )
        got = [r for r in res] if reveal else answer(res)
        if reveal:
            wrong += any(r not in (0, 1) or r != expected(balances) for r in got)
        else:
            wrong += got != expected(balances)
    assert wrong >= 1


def _liar_lies(place: str) -> bool:
    made: list[Liar] = []
    cls = _party_class(0, Liar, place)

    class Track(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            made.append(self)

    with pytest.raises(MpcError):
        run_local(
            checked_program(reveal=place == "open"), _inputs([1, 2]), party_class=Track, timeout=30
        )
    return made[0].lied


def test_the_liar_really_lied() -> None:
    """Guard against a vacuous liar: in each place it changes a message."""
    for place in ("reshare", "and", "open", "output"):
        assert _liar_lies(place), place


def test_uncovered_operations_are_refused_not_run_unchecked() -> None:
    """Fixed-point and matrix products are checked now (tests/test_mpc_malicious_fixed.py);
    a server's own input, an unchecked reshare and the truncation of a bare 3-out-of-3
    sharing still have no check, so they are refused."""

    def own_input(p: Party, x: SharedArray) -> Any:
        return p.input_from(0, x.a if p.i == 0 else None, x.shape)

    def bare_reshare(p: Party, x: SharedArray) -> Any:
        return p.reshare(x.a)

    def bare_trunc(p: Party, x: SharedArray) -> Any:
        return p.trunc(x.a, 16)

    ins = {"x": (np.ones((2, 2)), 16)}
    for prog in (own_input, bare_reshare, bare_trunc):
        with pytest.raises(MpcError, match="not|cannot"):
            run_local(prog, ins, party_class=MaliciousParty, timeout=30)


def test_bucket_plan_meets_the_bound() -> None:
    import math

    for n, lanes in ((1, 1), (10, 1), (500, 64), (10_000, 64)):
        kept, b, c = bucket_plan(n, lanes)
        assert kept >= n and c >= b >= 2
        log2_binom = math.log2(math.comb(kept * b, b))
        assert log2_binom >= 40 + math.log2(lanes)
        assert math.log2(math.comb(kept * (b - 1), b - 1)) < 40 + math.log2(lanes) or b == 2


def test_peer_gone_is_not_an_abort() -> None:
    """A crashed server is a PeerGone, not a failed check (the counters tell them apart)."""
    with pytest.raises(PeerGone):
        run_local(
            checked_program(), _inputs([1, 2]), party_class=MaliciousParty, fail={1: 3}, timeout=5
        )


def test_serve_flag_names_the_checked_programs() -> None:
    from accord.cli.mpc import malicious_programs

    assert malicious_programs(None) is None  # the default set (anti_stacking)
    assert malicious_programs("none") == [] and malicious_programs("") == []
    assert malicious_programs("anti_stacking, compare") == ["anti_stacking", "compare"]
