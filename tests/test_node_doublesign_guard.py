"""The double-sign guard on its own (accord.node.doublesign): what halts, what a restored
folder adopts, when it may vote again, and that its safety record only ever moves up.

The attacker here holds a copy of the validator key: whatever it signs must halt the node
unless the vote provably predates this folder (the original's, before a restore)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import Certificate
from accord.consensus import SAFETY_KEY, SafetyState, Status
from accord.node.config import init_network
from accord.node.doublesign import DoubleSignGuard, Verdict
from accord.storage import Store
from accord.storage import backup as b

ME = 3


@pytest.fixture(scope="module")
def genesis(tmp_path_factory: pytest.TempPathFactory) -> Genesis:
    return init_network(
        tmp_path_factory.mktemp("net"),
        validators=4,
        genesis_time_ms=1_000_000,
        deterministic=True,
        p2p_tls=False,
        demo_accounts=1,
        consensus=ConsensusParams(round_ms=1000, stage2_ms=500),
    )


def cert(height: int, rnd: int, signers: list[int]) -> Certificate:
    bitmap = bytes([sum(1 << i for i in signers)])
    return Certificate(height, rnd, 1, bytes([height % 256]) * 32, bitmap, b"\x00" * 96)


def status(c_height: int = 0, c_round: int = -1) -> Status:
    return Status(
        height=c_height + 1,
        round=-1,
        head_hash=b"",
        head_cert=None,
        seed=b"",
        now_ms=-1,
        skew_ms=0,
        next_wakeup_ms=0,
        txs_pending=False,
        p_round=c_round,
        p_height=c_height,
        p_hash=b"",
        c_round=c_round,
        c_height=c_height,
        c_hash=b"",
        lock=None,
        stats={},
    )


def ms_of_round(genesis: Genesis, r: int) -> int:
    return genesis.genesis_time_ms + r * genesis.consensus.round_ms


def test_an_unrestored_folder_halts_on_its_vote_above_its_record(
    genesis: Genesis, tmp_path: Path
) -> None:
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(tmp_path, ms_of_round(genesis, 100))
    assert not g.holding and g.boundary is None
    assert g.judge(cert(5, 40, [0, 1, 2]), status(4, 39)) is Verdict.OK  # not our vote
    assert g.judge(cert(4, 39, [0, 1, ME]), status(4, 39)) is Verdict.OK  # the recorded one
    assert g.judge(cert(3, 20, [0, 1, ME]), status(4, 39)) is Verdict.OK  # below it
    # One round above the record, however old the round: a copy signed it.
    assert g.judge(cert(4, 40, [0, 1, ME]), status(4, 39)) is Verdict.HALT
    assert g.judge(cert(5, 2, [0, 1, ME]), status(4, 39)) is Verdict.HALT
    with Store(tmp_path / "s", sync=False) as store:
        reason = g.check(cert(5, 41, [0, ME, 2]), status(4, 39), store)
        assert reason is not None and "another instance with this validator's key" in reason
        assert store.get_safety(SAFETY_KEY) is None  # a halt changes nothing
    off = DoubleSignGuard(genesis, ME, enabled=False)
    off.open(tmp_path, ms_of_round(genesis, 100))
    assert off.judge(cert(5, 41, [0, 1, ME]), status(4, 39)) is Verdict.OK


def test_a_restored_folder_adopts_only_votes_from_before_it_started(
    genesis: Genesis, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    b.write_restored_marker(data, {"restored_ms": ms_of_round(genesis, 90)})
    started = ms_of_round(genesis, 100)
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(data, started)
    assert g.holding
    drift_rounds = genesis.consensus.time_drift() // genesis.consensus.round_ms
    # the original's clock up to a drift ahead, this one up to 4 drifts + 3 rounds behind
    assert g.boundary == 100 + 5 * drift_rounds + 3 + 1
    with Store(tmp_path / "s", sync=False) as store:
        # the restored record: C at (2, 10); the original signed on up to (7, 60)
        store.put_safety(SAFETY_KEY, SafetyState(p_round=10, c_round=10, c_height=2).encode())
        st = status(2, 10)
        assert g.check(cert(6, 50, [0, 1, ME]), st, store) is None
        assert g.check(cert(7, 60, [0, ME, 2]), st, store) is None
        rec = SafetyState.decode(store.get_safety(SAFETY_KEY) or b"", 4)
        assert (rec.c_height, rec.c_round, rec.p_round) == (7, 60, 60)
        assert g.adopted == (7, 60) and g.adoptions == 2
        # the core (not driven while holding) still reports the restored record: the guard
        # judges against what it adopted, so an older certificate needs nothing more
        assert g.judge(cert(6, 50, [0, 1, ME]), st) is Verdict.OK
        # the record never moves down, whatever order certificates come in
        rec_bytes = g.raised(store.get_safety(SAFETY_KEY), cert(5, 45, [ME, 1, 2]))
        rec = SafetyState.decode(rec_bytes, 4)
        assert (rec.c_height, rec.c_round, rec.p_round) == (7, 60, 60)
        # A vote of ours from a round after this folder started: a live second instance.
        late = cert(8, g.boundary, [0, 1, ME])
        assert g.judge(late, st) is Verdict.HALT
        reason = g.check(late, st, store)
        assert reason is not None and "after this restored folder started" in reason
        rec = SafetyState.decode(store.get_safety(SAFETY_KEY) or b"", 4)
        assert (rec.c_height, rec.c_round) == (7, 60)  # not adopted
        # even with the check off, a restore adopts (nothing halts then)
        off = DoubleSignGuard(genesis, ME, enabled=False)
        off.open(data, started + 50_000)
        assert off.judge(late, st) is Verdict.OK


def test_a_restart_while_holding_keeps_the_first_start_as_the_boundary(
    genesis: Genesis, tmp_path: Path
) -> None:
    b.write_restored_marker(tmp_path, {"restored_ms": ms_of_round(genesis, 90)})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(tmp_path, ms_of_round(genesis, 100))
    first = g.boundary
    again = DoubleSignGuard(genesis, ME, enabled=True)
    again.open(tmp_path, ms_of_round(genesis, 500))  # restarted much later, still holding
    assert again.holding and again.boundary == first
    # what another instance signed between the two starts still halts the node
    assert first is not None
    assert again.judge(cert(9, first + 5, [0, 1, ME]), status(2, 10)) is Verdict.HALT
    # a marker whose start lies ahead of this clock (stepped back, or the folder moved to
    # another host) keeps it: lowering it would reopen rounds the original voted in (second
    # review: a 60 s step back lowered the boundary by 600 rounds)
    b.write_restored_marker(tmp_path, {"started_ms": ms_of_round(genesis, 10_000)})
    g3 = DoubleSignGuard(genesis, ME, enabled=True)
    g3.open(tmp_path, ms_of_round(genesis, 600))
    assert g3.boundary is not None and g3.boundary > 10_000


def test_a_clock_far_behind_the_network_halts_a_holding_node(
    genesis: Genesis, tmp_path: Path
) -> None:
    """The boundary comes from this clock: a certified block stamped more than twice the
    drift ahead of it shows the clock behind by more than the margin allows (second review:
    a VM 600 ms behind signed a second prepare in its original's round)."""
    drift = genesis.consensus.time_drift()
    b.write_restored_marker(tmp_path, {})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    now = ms_of_round(genesis, 100)
    g.open(tmp_path, now)
    # within what a stamp may be: the drift ahead of a voter whose clock is the drift ahead
    # of ours, and a drift for the trip (a Byzantine proposer stamping ahead of honest
    # voters 250 ms fast halted an honest node at twice the drift: third review)
    assert g.check_clock(now + 3 * drift, now) is None
    assert g.check_clock(now - 10**6, now) is None  # an old block during catch-up
    reason = g.check_clock(now + 3 * drift + 1, now)
    assert reason is not None and "clock" in reason and "restore" in reason
    g.holding = False
    assert g.check_clock(now + 10**6, now) is None  # only a holding node relies on its clock


def test_a_damaged_marker_still_means_restored(genesis: Genesis, tmp_path: Path) -> None:
    (tmp_path / b.RESTORED).write_text("{not json")
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(tmp_path, ms_of_round(genesis, 100))
    assert g.holding and g.boundary is not None
    assert b.read_restored_marker(tmp_path) is not None  # rewritten whole, with the start


def test_the_hold_ends_only_with_a_block_proposed_after_the_restore(
    genesis: Genesis, tmp_path: Path
) -> None:
    """Peers' reported heads decide nothing (a review released a node 95 heights early with
    one liar's status): only a committed block proposed at or after the boundary does."""
    b.write_restored_marker(tmp_path, {"restored_ms": ms_of_round(genesis, 90)})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    now = ms_of_round(genesis, 100)
    g.open(tmp_path, now)
    assert g.boundary is not None and g.holding
    heads = {0: 40, 1: 41, 2: 12}
    clocks = {0: now, 1: now, 2: now}
    assert not g.ends_hold(g.boundary, 41, heads, clocks, now)  # the start is not vouched yet
    assert g.vouch_start(clocks) and g.boundary == g._boundary_after(now)
    assert not g.ends_hold(g.boundary - 1, 41, heads, clocks, now)  # may have been decided
    assert g.ends_hold(g.boundary, 41, heads, clocks, now)
    assert g.ends_hold(g.boundary + 50, 45, heads, clocks, now)
    # ...and only as the network's newest block, as f+1 peers vouch for it (the second
    # highest head: 40): an older one, past the boundary, is not where the core restarts
    assert g.ends_hold(g.boundary + 50, 40, heads, clocks, now)
    assert not g.ends_hold(g.boundary + 50, 39, heads, clocks, now)
    # one liar claiming a far head cannot hold it (fourth review: it held for ever)
    assert g.ends_hold(g.boundary, 41, {**heads, 0: 10**9}, clocks, now)
    # f or fewer reports may all be lies: wait for more
    assert not g.ends_hold(g.boundary, 41, {1: 41}, clocks, now)
    assert not g.ends_hold(g.boundary, 41, heads, {1: now}, now)
    assert not g.ends_hold(g.boundary, 41, heads, {}, now)
    g.holding = False
    assert not g.ends_hold(g.boundary + 50, 41, heads, clocks, now)  # nothing to end


def test_peers_clocks_vouch_for_this_one_before_the_hold_ends(
    genesis: Genesis, tmp_path: Path
) -> None:
    """Fourth review: a stalled network makes no fresh block, so the block check never saw a
    clock 15.6 s behind. Peers' clocks are judged by the (f+1)-th lowest, which one liar
    cannot move past the honest ones."""
    drift = genesis.consensus.time_drift()
    b.write_restored_marker(tmp_path, {})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    now = ms_of_round(genesis, 100)
    g.open(tmp_path, now)
    assert g.boundary is not None
    heads = {0: 41, 1: 41, 2: 41}
    g.start_vouched = True  # (vouch_start is tested on its own below)
    behind = 5 * drift  # this clock behind every honest one
    honest = {0: now + behind, 1: now + behind, 2: now + behind}
    assert not g.ends_hold(g.boundary, 41, heads, honest, now)
    reason = g.check_clock(now, now, honest)  # a stale block's stamp looks fine, peers do not
    assert reason is not None and "3 peers" in reason and "restore" in reason
    # a liar reporting a slow clock moves nothing
    assert not g.ends_hold(g.boundary, 41, heads, {**honest, 0: now}, now)
    assert g.check_clock(now, now, {**honest, 0: now}) is not None
    # a liar reporting a fast clock can neither release nor halt a node on time
    fine = {0: now + 10**9, 1: now, 2: now - 50}
    assert g.ends_hold(g.boundary, 41, heads, fine, now)
    assert g.check_clock(now, now, fine) is None
    # with fewer than 2f+1 reports a high one may be the liar's: no halt, and no release
    assert g.check_clock(now, now, {0: now + 10**9, 1: now}) is None
    assert not g.ends_hold(g.boundary, 41, heads, {0: now + 10**9, 1: now + behind}, now)
    # within three drifts of the honest clocks is fine
    near = {p: now + 3 * drift for p in range(3)}
    assert g.check_clock(now, now, near) is None and g.ends_hold(g.boundary, 41, heads, near, now)


def test_release_closes_every_round_below_the_boundary(genesis: Genesis, tmp_path: Path) -> None:
    """The original voted only in rounds below the boundary; release closes them all, and up
    to the drift past the network's time when that is ahead of this clock."""
    b.write_restored_marker(tmp_path, {})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    now = ms_of_round(genesis, 100)
    g.open(tmp_path, now)
    assert g.boundary is not None
    with Store(tmp_path / "s", sync=False) as store:
        closed = g.release(store, ms_of_round(genesis, 80))  # this clock stepped back since
        assert closed == g.boundary - 1 and not g.holding
        raw = store.get_safety(SAFETY_KEY)
        assert raw is not None and SafetyState.decode(raw, 4).p_round == g.boundary - 1
        b.write_restored_marker(tmp_path, {})
        g2 = DoubleSignGuard(genesis, ME, enabled=True)
        g2.open(tmp_path, now)
        far = ms_of_round(genesis, 10_000)
        assert g2.release(store, now, {0: far, 1: far, 2: far}) >= 10_000
        # with only f+1 reports the (f+1)-th lowest may be a liar's: not followed
        b.write_restored_marker(tmp_path, {})
        g3 = DoubleSignGuard(genesis, ME, enabled=True)
        g3.open(tmp_path, now)
        with Store(tmp_path / "s3", sync=False) as fresh:
            assert g3.release(fresh, now, {0: 10**15, 1: now}) < 10_000


def test_adoption_never_lowers_the_commit_round(genesis: Genesis) -> None:
    """The core's rule on C votes is on rounds alone: a certificate one height up from an
    earlier round must not pull ``c_round`` down (it did: the pair was compared, then the
    certificate's round copied in)."""
    g = DoubleSignGuard(genesis, ME, enabled=True)
    rec = SafetyState(p_round=49, p_height=5, c_round=50, c_height=5, c_hash=b"\x05" * 32)
    out = SafetyState.decode(g.raised(rec.encode(), cert(6, 45, [0, 1, ME])), 4)
    assert out.c_round == 50 and out.p_round == 49 and out.c_height == 6
    up = SafetyState.decode(g.raised(rec.encode(), cert(6, 70, [0, 1, ME])), 4)
    assert (up.c_height, up.c_round, up.p_round) == (6, 70, 70)


def test_release_closes_the_original_rounds_then_removes_the_marker(
    genesis: Genesis, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    b.write_restored_marker(data, {"restored_ms": ms_of_round(genesis, 90)})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(data, ms_of_round(genesis, 100))
    with Store(tmp_path / "s", sync=False) as store:
        store.put_safety(SAFETY_KEY, SafetyState(p_round=60, c_round=60, c_height=7).encode())
        now = ms_of_round(genesis, 130) + 10
        closed = g.release(store, now)
        drift_rounds = genesis.consensus.time_drift() // genesis.consensus.round_ms
        assert closed == 130 + drift_rounds
        rec = SafetyState.decode(store.get_safety(SAFETY_KEY) or b"", 4)
        assert rec.p_round == closed and (rec.c_height, rec.c_round) == (7, 60)
        assert not g.holding and b.read_restored_marker(data) is None
        # p_round never goes down: a record already past "now" stays where it is
        store.put_safety(SAFETY_KEY, SafetyState(p_round=10_000).encode())
        b.write_restored_marker(data, {})
        g.open(data, now)
        assert g.release(store, now) == 10_000
    # in this run, a quorum completed late with the original's vote is still recognised...
    assert g.judge(cert(8, 99, [0, 1, ME]), status(7, 60)) is Verdict.ADOPT
    # ...while a fresh start without the marker is strict again
    strict = DoubleSignGuard(genesis, ME, enabled=True)
    strict.open(data, now)
    assert strict.judge(cert(8, 99, [0, 1, ME]), status(7, 60)) is Verdict.HALT


def test_restore_leaves_the_marker_written_atomically(tmp_path: Path) -> None:
    from .support.chains import make_chain

    with Store(tmp_path / "live", sync=False) as store:
        make_chain(store, 2, 20, random.Random(3))
        manifest = b.backup_store(store, tmp_path / "bk")
    before = int(time.time() * 1000)
    b.restore(tmp_path / "bk", tmp_path / "restored")
    marker = b.read_restored_marker(tmp_path / "restored")
    assert marker is not None and marker["restored_ms"] >= before
    assert marker["head_height"] == manifest["head_height"] == 2
    assert not list((tmp_path / "restored").glob("*.tmp"))
    # a backup itself never carries one (it is not a restored folder)
    assert b.read_restored_marker(tmp_path / "bk") is None


def test_a_restore_interrupted_after_the_store_is_placed_still_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second review: the store was moved into place before the marker was written, so an
    interrupt in between left a restored store that starts strictly, with no hold."""
    from .support.chains import make_chain

    with Store(tmp_path / "live", sync=False) as store:
        make_chain(store, 2, 20, random.Random(3))
        b.backup_store(store, tmp_path / "bk")

    def interrupted(_: object) -> dict[str, object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(b, "_describe", interrupted)  # right after the store is in place
    with pytest.raises(KeyboardInterrupt):
        b.restore(tmp_path / "bk", tmp_path / "restored")
    assert (tmp_path / "restored" / b.DATA).exists()
    assert b.read_restored_marker(tmp_path / "restored") is not None


def test_a_clock_behind_at_the_first_start_and_stepped_right_since_is_caught(
    genesis: Genesis, tmp_path: Path
) -> None:
    """Sixth review: the boundary came from the clock at the first start, the checks judged
    the clock as it is now. A VM snapshot booted 60 s behind, the node started, NTP stepped
    the clock right 2 s later: every check passed and the hold ended on a block proposed in
    a round the original had voted in (and the original's own vote of round 95 halted the
    node instead of being adopted). The peers' clocks now vouch for the start itself."""
    true_start = ms_of_round(genesis, 100)  # the original voted until just before this
    b.write_restored_marker(tmp_path, {})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(tmp_path, true_start - 60_000)  # 60 s behind at the first start
    slow = g.boundary
    assert slow is not None and slow <= 99
    now = true_start + 2_000  # stepped right
    clocks = {0: now, 1: now, 2: now}
    heads = {0: 41, 1: 41, 2: 41}
    assert not g.ends_hold(slow, 41, heads, clocks, now)  # not before the peers vouch
    assert not g.vouch_start({0: now, 1: now})  # f+1 reports may hold a liar's: wait
    assert g.vouch_start(clocks)
    assert g.boundary is not None and g.boundary > 100
    assert not g.ends_hold(slow, 41, heads, clocks, now)
    assert g.judge(cert(41, 95, [0, 1, ME]), status(40, 80)) is Verdict.ADOPT
    # kept across a restart while holding, whatever the clock says then
    again = DoubleSignGuard(genesis, ME, enabled=True)
    again.open(tmp_path, true_start - 60_000)
    # vouched for again at this start (a copy may start later), never below the kept boundary
    assert not again.start_vouched and again.boundary == g.boundary
    # a liar's fast clock among 2f+1 reports moves nothing
    b.write_restored_marker(tmp_path, {})
    h = DoubleSignGuard(genesis, ME, enabled=True)
    h.open(tmp_path, true_start)
    assert h.vouch_start({0: true_start + 10**12, 1: true_start, 2: true_start - 100})
    assert h.boundary == h._boundary_after(true_start)


@pytest.mark.parametrize("bad", ["x", 1e15, True, -5, None, [1]])
def test_a_damaged_vouched_time_in_the_marker_is_vouched_for_again(
    genesis: Genesis, tmp_path: Path, bad: object
) -> None:
    """Seventh review: a ``vouched_ms`` that is not a positive int crashed the start (a
    string) or, unvouched yet still used, put the boundary 30 years ahead for good (a float):
    vouch_start can only raise it. Now such a value counts as no vouching at all: the start
    holds and the peers vouch for it again."""
    start = ms_of_round(genesis, 100)
    b.write_restored_marker(tmp_path, {"started_ms": start, "vouched_ms": bad})
    g = DoubleSignGuard(genesis, ME, enabled=True)
    g.open(tmp_path, start)
    assert g.holding and not g.start_vouched
    assert g.boundary == g._boundary_after(start)
    assert g.vouch_start({0: start, 1: start, 2: start})
    assert g.boundary == g._boundary_after(start)
