"""Ninth hostile review of the restore hold (accord.node.doublesign, accord.node.catchup).

The guarantee attacked: a validator restored from a backup never signs a vote that conflicts
with one its original signed, and the hold ends once the network has moved past the
original's rounds, with at most f Byzantine peers lying in STATUS, clocks and answers.

The eighth review's fixes hold on a fixed validator set (see the report). Every attack here
uses what issue 19 added since: the set of a height is the governance contract's, but the
hold's order statistics still take ``f`` and ``n`` from *genesis*
(``DoubleSignGuard.vouch_start``, ``check_clock``, ``ends_hold``, ``release``,
``CatchUp.maybe_sync``), and they count the STATUS of every transport peer, including
validators governance has removed (the transport never forgets a validator) and which no
bound on Byzantine members covers. The set the core runs is at hand while the node holds
(``node.driver.view``: its keys and the transport numbering of its members), so each test
gives the fake node that view, as the driver has it.

Each test failed on the code of "double-sign, eighth review" and passes with the fix: the
hold's statistics take f and n from the set the node runs, count only that set's members'
status, and the start is vouched for again when catch-up enters another set.
"""

from __future__ import annotations

import asyncio
import time
import types
from pathlib import Path

from accord.node.catchup import CatchUp
from accord.node.doublesign import DoubleSignGuard
from accord.storage import backup as bk

ROUND_MS = 100
DRIFT_MS = 3 * ROUND_MS


def _genesis(n: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        f=(n - 1) // 3,
        n=n,
        genesis_time_ms=0,
        consensus=types.SimpleNamespace(round_ms=ROUND_MS, time_drift=lambda: DRIFT_MS),
    )


def _now() -> int:
    return int(time.time() * 1000)  # what CatchUp.on_status gives vouch_start


def _round(ms: int) -> int:
    return ms // ROUND_MS


class _RestoredNode:
    """What CatchUp reads of a node: a restored one at ``height`` with a real guard, running a
    core on ``members`` (transport indices of the set of the next height, ``me`` among them),
    as ``Driver.view`` describes it."""

    def __init__(
        self,
        genesis: types.SimpleNamespace,
        guard: DoubleSignGuard,
        members: list[int],
        me: int,
        height: int,
    ) -> None:
        self.running = True
        self.fault = None
        self.name = "restored"
        self.genesis = genesis
        self.double_sign = guard
        self.ops = types.SimpleNamespace(holds_catch_up=False, syncing=False)
        self.worker = types.SimpleNamespace(barrier=self._noop, commits_waiting=0)
        self.chain = types.SimpleNamespace(head=lambda: (height, b"h"))
        view = types.SimpleNamespace(
            keys=tuple(bytes([t]) * 48 for t in members),
            me=members.index(me),
            to_transport=list(members),
            from_transport={t: j for j, t in enumerate(members)},
        )
        self.driver = types.SimpleNamespace(step=lambda event: None, view=view, following=False)
        self.asked: list[int] = []
        counter = types.SimpleNamespace(inc=lambda *a, **k: None)
        self.meters = types.SimpleNamespace(sync=counter, bad_msgs=counter)

        async def request(peer, body, timeout):  # type: ignore[no-untyped-def]
            self.asked.append(peer)
            return []

        self.transport = types.SimpleNamespace(request=request)

    async def _noop(self) -> None:
        return None


def _restored(
    tmp_path: Path, genesis_n: int, members: list[int], me: int, first_start_ms: int, height: int
) -> tuple[DoubleSignGuard, CatchUp, _RestoredNode]:
    """A folder restored with ``accord node restore``, first started at ``first_start_ms`` by
    its own clock, with the driver's ``signer_at`` for a set of ``len(members)``."""
    genesis = _genesis(genesis_n)
    bk.write_restored_marker(tmp_path, {})
    guard = DoubleSignGuard(genesis, me, enabled=True)  # type: ignore[arg-type]
    guard.open(tmp_path, first_start_ms)
    guard.signer_at = lambda h: (len(members), members.index(me))
    assert guard.holding
    node = _RestoredNode(genesis, guard, members, me, height)
    return guard, CatchUp(node), node  # type: ignore[arg-type]


def _statuses(cu: CatchUp, reports: list[tuple[int, int, int]]) -> None:
    """STATUS frames ``(peer, head, clock)`` in the order they arrive, through on_status."""

    async def run() -> None:
        for peer, head, clock in reports:
            cu.on_status(peer, [head, b"x" * 32, clock])
            for _ in range(3):
                await asyncio.sleep(0)
            cu._inflight.clear()

    asyncio.run(run())


def test_two_byzantine_members_of_a_grown_set_choose_the_restore_boundary(tmp_path: Path) -> None:
    """Finding 1 (safety). Genesis has 4 validators (f = 1); governance has grown the set to 7
    (f = 2, quorum 5). The hold still reads its statistics with genesis's f = 1.

    Schedule (rounds of 100 ms, drift 300 ms, T = now): validator 6 (transport index 6) votes
    until T - 0.5 s; at height 51 it is locked on block B (the P-quorum for B reached 1, 2, 6
    and Byzantine 0 and 1; the C-quorum reached honest 2 only, which commits B; 3, 4, 5 saw no
    P-quorum). It goes away; its folder is restored from an older backup on a VM snapshot whose
    clock reads T - 60 s at the node's first start, and NTP steps it right at once (the sixth
    review's schedule). The Byzantine 0 and 1 stop voting, so the chain stays at 50 (51 at
    2): honest 2, 3, 4, 5 and the holding node are not a quorum of 5.

    Byzantine 0 and 1 send STATUS first, claiming the restored VM's own slow clock, T - 60 s;
    honest 2 comes next. With three reports, ``vouch_start`` takes the 2nd lowest (f + 1 with
    genesis's f), a liar's: the start is "vouched for" at T - 60 s, the boundary stays 600
    rounds below the original's last round, and it is never vouched for again. ``ends_hold``
    then releases on block 50, proposed 100 rounds before the original stopped (the 2nd
    highest head is 50, the 2nd lowest clock a liar's), ``check_clock`` sees nothing (the
    clock is right now, the 2nd lowest of six clocks is a liar's). Released at 50, key 6 votes
    at 51 without the original's lock on B: with 0, 1, 3 and 4 it certifies B' against 2's B.
    Key 6 signed both sides of a fork; the double-sign check saw no vote of its key above its
    record (the original's votes at 51 are in no certificate).

    What would hold: the statistics with the f of the set the node runs (here 2: the 3rd
    lowest of 2f+1 = 5 reports, or the highest of f + 1 = 3 within three drifts of this
    clock); then the first three reports give T, and the boundary lies past the original's
    rounds."""
    now = _now()
    original_last = now - 500
    members = [0, 1, 2, 3, 4, 5, 6]
    guard, cu, _ = _restored(tmp_path, 4, members, 6, now - 60_000, height=50)
    slow = now - 60_000
    _statuses(cu, [(0, 50, slow), (1, 50, slow), (2, 51, now)])
    _statuses(cu, [(3, 50, now), (4, 50, now), (5, 50, now)])
    block_50_round = _round(now - 10_000)  # proposed while the original still voted
    assert block_50_round < _round(original_last)
    t = _now()
    header_time = now - 10_000
    assert guard.check_clock(header_time, t, cu.peer_clocks()) is None  # the clock is right
    released = guard.ends_hold(block_50_round, 50, cu.peer_heads, cu.peer_clocks(), t)
    assert not released, (
        f"block 50, proposed in round {block_50_round} while the original voted until round "
        f"{_round(original_last)}, ends the hold (boundary {guard.boundary}, chosen by two "
        "Byzantine members of a 7-validator set read with genesis's f = 1): the restored key "
        "votes at 51 without the original's lock"
    )


def test_a_chain_grown_from_one_validator_lets_one_liar_choose_the_boundary(
    tmp_path: Path,
) -> None:
    """Finding 2 (safety). Genesis has one validator (f = 0) and governance has grown the set
    to 4 (f = 1). For the hold that node is "alone in its genesis": ``ends_hold`` releases on
    the block alone (``others == 0``: no head, no clock is asked), ``maybe_sync`` fetches
    before anything is vouched for, and ``vouch_start`` vouches on the first report alone
    (f = 0: one report is "2f + 1").

    Schedule as in finding 1: validator 3 (transport index 3) votes until T - 0.5 s, locked
    at 51 on B (P-quorum 0, 2, 3; C-quorum only to 2); restored on a VM 60 s slow at the first
    start, stepped right at once; Byzantine 0 sends its STATUS first, claiming T - 60 s. The
    boundary stays 60 s low, and block 50, proposed while the original voted, ends the hold
    although the honest peers' heads and clocks (1 and 2: T) say otherwise. Released at 50,
    key 3 votes at 51 without the lock; with 0 and 1 it certifies B' against 2's B.

    What would hold: f and the count of others from the set of the next height (the one the
    core runs), so the node asks its three peers and vouches with two of them."""
    now = _now()
    original_last = now - 500
    members = [0, 1, 2, 3]
    guard, cu, _ = _restored(tmp_path, 1, members, 3, now - 60_000, height=50)
    _statuses(cu, [(0, 50, now - 60_000), (1, 50, now), (2, 51, now)])
    block_50_round = _round(now - 10_000)
    assert block_50_round < _round(original_last)
    released = guard.ends_hold(block_50_round, 50, cu.peer_heads, cu.peer_clocks(), _now())
    assert not released, (
        f"block 50, proposed in round {block_50_round} while the original voted until round "
        f"{_round(original_last)}, ends the hold (boundary {guard.boundary}): on a chain whose "
        "genesis had one validator, one Byzantine STATUS sets the restore boundary"
    )


def test_a_removed_validator_still_counts_among_the_peers_that_vouch(tmp_path: Path) -> None:
    """Finding 3 (safety). Genesis {0, 1, 2, 3} (f = 1); governance removed 0 and added 4: the
    set is {1, 2, 3, 4} (f = 1). The transport still knows 0 (it never drops a validator) and
    0's STATUS is counted like a member's, though no bound on Byzantine members covers a
    validator that has left (its key stakes nothing now; it may have been removed for
    misbehaving). With Byzantine member 1, two reports lie.

    Schedule as in finding 1: validator 3 votes until T - 0.5 s, locked at 51 on B (P-quorum
    1, 2, 3; C-quorum only to 2); restored on a VM 60 s slow at the first start, stepped right
    at once. Removed 0 and Byzantine 1 report T - 60 s first, honest 2 next: the 2nd lowest of
    three is a lie, the boundary stays 60 s low, and block 50, proposed while the original
    voted, ends the hold. Released at 50, key 3 votes at 51 without the lock; with 1 and 4 it
    certifies B' against 2's B.

    What would hold: only STATUS from members of the set the node runs counts
    (``driver.view.from_transport``, as consensus messages are already filtered)."""
    now = _now()
    original_last = now - 500
    members = [1, 2, 3, 4]
    guard, cu, _ = _restored(tmp_path, 4, members, 3, now - 60_000, height=50)
    _statuses(cu, [(0, 50, now - 60_000), (1, 50, now - 60_000), (2, 51, now), (4, 50, now)])
    block_50_round = _round(now - 10_000)
    assert block_50_round < _round(original_last)
    released = guard.ends_hold(block_50_round, 50, cu.peer_heads, cu.peer_clocks(), _now())
    assert not released, (
        f"block 50, proposed in round {block_50_round} while the original voted until round "
        f"{_round(original_last)}, ends the hold (boundary {guard.boundary}): a removed "
        "validator's STATUS and one Byzantine member's chose the restore boundary"
    )


def test_a_shrunk_set_holds_a_restored_node_for_ever_with_one_silent_member(
    tmp_path: Path,
) -> None:
    """Finding 4 (liveness). Genesis has 7 validators (f = 2); governance removed 4, 5 and 6,
    which are shut down: the set is {0, 1, 2, 3} (f = 1). Validator 3 is restored and holds;
    Byzantine 0 votes (the chain goes on with 0, 1, 2) but sends 3 no STATUS: the eighth
    review's attack, which that review's fix answers with f + 1 = 2 reports. Read with
    genesis's f = 2, the two honest reports are "f or fewer": nothing is vouched for, catch-up
    fetches nothing, and the network's newest block, proposed far past the boundary, does not
    end the hold. It never ends.

    What would hold: the f of the set the node runs (1), so honest 1 and 2 vouch."""
    start = _now()
    members = [0, 1, 2, 3]
    guard, cu, node = _restored(tmp_path, 7, members, 3, start, height=5)
    assert guard.boundary is not None
    for _ in range(5):
        now = _now()
        _statuses(cu, [(1, 100, now), (2, 100, now - 5)])
    assert node.asked, "catch-up never asked for a block: the hold cannot end"
    t = _now()
    newest_round = guard.boundary + 480  # the network's newest block, long past the boundary
    assert guard.ends_hold(newest_round, 100, cu.peer_heads, cu.peer_clocks(), t), (
        "the network's newest block, proposed 480 rounds past the boundary, does not end the "
        "hold: with genesis's f = 2 in a 4-validator set, one member silent in STATUS holds a "
        "restored validator for ever"
    )
