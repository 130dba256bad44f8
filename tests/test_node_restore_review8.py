"""Eighth hostile review of the restore hold (accord.node.doublesign, accord.node.catchup).

Each test replays one attack and asserts what the guarantee promises: each failed on the code
before the fixes (vouching with f+1 clocks within three drifts; vouching again at every start
while holding) and passes with them. The guarantee
attacked: a restored validator never signs a vote that conflicts with one its original signed,
and the hold ends once the network has moved past the original's rounds, with at most f
Byzantine peers lying in STATUS, clocks and answers.

Finding 1 (liveness): vouching for the restore's start needs STATUS clocks from 2f+1 peers,
and until then catch-up fetches nothing (``CatchUp.maybe_sync``) and the hold cannot end
(``DoubleSignGuard.ends_hold``). A restored validator already counts as the one faulty
validator, so in a 3f+1 network the 2f+1 reports must come from *every* other validator: a
single Byzantine validator that keeps voting (so the chain goes on) but sends the restored
node no STATUS, or no link at all, holds it for ever.
"""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

from accord.net.frames import Kind
from accord.node import Node
from accord.node.catchup import CatchUp
from accord.node.doublesign import DoubleSignGuard
from accord.storage import backup as bk

from .support.inproc import ThreadedNetwork
from .support.inproc import wait_until as _wait

ROUND_MS = 100
GENESIS = types.SimpleNamespace(
    f=1,
    n=4,
    genesis_time_ms=0,
    consensus=types.SimpleNamespace(round_ms=ROUND_MS, time_drift=lambda: 3 * ROUND_MS),
)


class _RestoredNode:
    """What CatchUp reads of a node: a restored one at height 5 with a real guard."""

    def __init__(self, guard: DoubleSignGuard) -> None:
        self.running = True
        self.fault = None
        self.name = "v3"
        self.genesis = GENESIS
        self.double_sign = guard
        self.ops = types.SimpleNamespace(holds_catch_up=False)
        self.worker = types.SimpleNamespace(barrier=self._noop, commits_waiting=0)
        self.chain = types.SimpleNamespace(head=lambda: (5, b"h"))
        self.driver = types.SimpleNamespace(step=lambda event: None)
        self.asked: list[int] = []
        counter = types.SimpleNamespace(inc=lambda *a, **k: None)
        self.meters = types.SimpleNamespace(sync=counter, bad_msgs=counter)

        async def request(peer, body, timeout):
            self.asked.append(peer)
            return []

        self.transport = types.SimpleNamespace(request=request)

    async def _noop(self) -> None:
        return None


def test_one_peer_silent_in_status_does_not_hold_a_restored_node_for_ever(tmp_path: Path) -> None:
    """Schedule: 4 validators (f = 1), validator 3 restored at t = 10 s (round 100); its
    boundary is round 119. Byzantine 0 votes in consensus (the chain goes on with 0, 1, 2)
    but sends 3 no STATUS. Honest 1 and 2 report head 100 and the true time every second from
    the start on; at t = 60 s (round 600) the network's newest block is long past the
    boundary.

    On the current code the two honest reports never vouch (2 <= 2f), so catch-up never asks
    anyone for a block and ``ends_hold`` refuses even the network's newest block, proposed
    480 rounds past the boundary, at the network's head: the hold never ends. Two honest-or-
    not reports are enough to bound the start from below (their (f+1)-th lowest is at least
    one honest clock); only the upper side needs more, and that side is bounded by this
    node's own clock (within the drift), as check_clock already assumes.

    Suggested fix: vouch with f+1 reports when their (f+1)-th lowest is within three drifts of
    this clock (a liar can then push the boundary at most three drifts ahead), and wait for
    2f+1 only when it is further ahead."""
    start = 10_000
    bk.write_restored_marker(tmp_path, {"restored_ms": start - 1000})
    guard = DoubleSignGuard(GENESIS, 3, enabled=True)
    guard.open(tmp_path, start)
    assert guard.holding and guard.boundary == 119

    node = _RestoredNode(guard)
    cu = CatchUp(node)

    async def statuses() -> None:
        for i in range(5):  # five status intervals from the start, only 1 and 2 report
            now = start + 1000 * i
            cu.on_status(1, [100, b"x" * 32, now])
            cu.on_status(2, [100, b"x" * 32, now - 5])
            for _ in range(5):
                await asyncio.sleep(0)
            cu._inflight.clear()

    asyncio.run(statuses())
    assert node.asked, "catch-up never asked for a block: the hold cannot end"
    now = 60_000
    clocks = {1: now, 2: now - 5}
    heads = {1: 100, 2: 100}
    assert guard.ends_hold(600, 100, heads, clocks, now), (
        "the network's newest block, proposed 480 rounds past the boundary, does not end the "
        "hold: one Byzantine validator silent in STATUS holds a restored node for ever"
    )


def _silence_status_to(node: Node, victim: int) -> None:
    """Make ``node`` Byzantine in STATUS only: it votes, proposes and serves as before, but
    sends ``victim`` no STATUS frame (the same as a link that carries no STATUS, or a validator
    that never connects to the victim but to the others)."""
    transport = node.transport
    assert transport is not None
    broadcast, send = transport.broadcast, transport.send

    def quiet_broadcast(kind, payload, fanout=None, exclude=()):  # type: ignore[no-untyped-def]
        if kind == Kind.STATUS:
            exclude = {*exclude, victim}
        return broadcast(kind, payload, fanout=fanout, exclude=exclude)

    def quiet_send(index, kind, payload):  # type: ignore[no-untyped-def]
        if kind == Kind.STATUS and index == victim:
            return True
        return send(index, kind, payload)

    transport.broadcast = quiet_broadcast  # type: ignore[method-assign]
    transport.send = quiet_send  # type: ignore[method-assign]


def test_a_byzantine_validator_silent_in_status_holds_a_restored_validator_for_ever(
    tmp_path: Path,
) -> None:
    """The same attack on four in-process validators (real cores, BLS, LMDB, sockets).
    Validator 3 is backed up at height 2, signs on, goes away and is restored with
    ``accord node restore``'s function; Byzantine validator 0 keeps voting but sends 3 no
    STATUS. The other three commit blocks proposed far past 3's boundary, 3 stays level with
    nothing: on the current code it never fetches a block and holds for ever (the assertion
    below fails after the network has run some 40 rounds past the boundary)."""
    net = ThreadedNetwork(tmp_path / "net", round_ms=300, stage2_ms=150, name="dsrev8-status")
    try:
        v3 = net.root / "validator-3"
        original = net.nodes[3]
        assert _wait(lambda: original.chain is not None and original.chain.head()[0] >= 2, 60)
        backup_dir = tmp_path / "bk"
        bk.backup_store(original.store, backup_dir)
        h = original.chain.head()[0]
        assert _wait(lambda: original.chain.head()[0] >= h + 3, 60)  # it signs on
        net.run(original.stop())
        (v3 / "data").rename(tmp_path / "old-data")  # the original's folder is gone
        bk.restore(backup_dir, v3 / "data")
        _silence_status_to(net.nodes[0], 3)  # Byzantine 0, before 3 comes back
        restored = Node.from_dir(v3)
        net.nodes[3] = restored
        net.run(restored.start())
        guard = restored.double_sign
        assert guard.holding and guard.boundary is not None
        boundary = guard.boundary

        def network_past_boundary() -> bool:
            chain = net.nodes[1].chain
            assert chain is not None
            header = chain.store.get_header(chain.head()[0]) if chain.head()[0] else None
            return header is not None and header.round >= boundary + 40

        # the chain goes on without 3: 0 (Byzantine only towards 3), 1 and 2 are a quorum
        assert _wait(network_past_boundary, 60), "the network itself stalled"
        released = _wait(lambda: not guard.holding, 15)
        assert restored.fault is None, restored.fault
        assert released, (
            f"still holding at height {restored.chain.head()[0]} (network at "
            f"{net.nodes[1].chain.head()[0]}, vouched: {guard.start_vouched}) 40 rounds after "
            "the network passed the boundary: one validator silent in STATUS holds it for ever"
        )
    finally:
        net.close()


def test_a_copy_of_a_holding_folder_keeps_the_first_instance_boundary(tmp_path: Path) -> None:
    """Finding 2 (safety, a copied data folder). The marker keeps the first start and the
    vouched time so that a restart while holding keeps its boundary; a *copy* of a holding
    folder (a VM clone or a standby copy of the restored machine, taken while it holds) keeps
    them too, and may start long after the first instance released and voted.

    Schedule (rounds of 100 ms, drift 300 ms): R1, restored, first starts and is vouched for
    at t = 10 s, boundary round 119. Its folder is copied while it holds. R1's hold ends with
    block 39, proposed in round 150; at height 40 it replays the split of
    tests/test_node_restore_hold.py: in round 160 the P-quorum for B reaches 0, 1 and R1, the
    C-quorum reaches 1 only, which commits B; R1 is locked on B and goes away at t = 17 s.
    No certificate of a height up to 39 carries a vote R1 signed after its release. The copy
    starts at t = 30 s on a correct clock; heads: 0 and 2 at 39, 1 at 40.

    The copy's boundary is still R1's 119, and the peers' clocks at t = 30 s are not asked
    again (``start_vouched`` comes from the marker). Block 39 is past that boundary and is the
    (f+1)-th highest head, so it ends the copy's hold: the copy votes at height 40 without
    R1's lock, and Byzantine 0 (ignoring its own lock), honest 2 and the copy commit B' there,
    against 1's B: key 3 signed both sides of a fork, and the double-sign check saw nothing
    (every certificate it judged was the original's or carried no vote of key 3).

    What would hold: a boundary at least this start's (the peers' clocks now: round 300 plus
    the margin), so only a block proposed after the copy started ends its hold, at a height R1
    never reached. Suggested fix: vouch again at every start while holding and keep the larger
    boundary (raising it is always safe, a holding folder has signed nothing; a restart while
    holding then only holds longer), or bind the marker to the instance that wrote it."""
    first = 10_000
    (tmp_path / "r1").mkdir()
    bk.write_restored_marker(tmp_path / "r1", {})
    r1 = DoubleSignGuard(GENESIS, 3, enabled=True)
    r1.open(tmp_path / "r1", first)
    assert r1.vouch_start({0: first, 1: first, 2: first}) and r1.boundary == 119
    # the folder is copied while R1 holds (marker included: it is the folder's state)
    (tmp_path / "copy").mkdir()
    marker = bk.read_restored_marker(tmp_path / "r1")
    assert marker is not None
    bk.write_restored_marker(tmp_path / "copy", {k: v for k, v in marker.items() if k != "format"})
    # R1's hold ends with block 39 (proposed in round 150); it votes at 40, goes away
    at = {0: 15_000, 1: 15_000, 2: 15_000}
    assert r1.ends_hold(150, 39, {0: 39, 1: 39, 2: 39}, at, 15_000)
    # ...the copy starts at t = 30 s, on a correct clock
    now = 30_000
    copy = DoubleSignGuard(GENESIS, 3, enabled=True)
    copy.open(tmp_path / "copy", now)
    assert copy.holding
    clocks = {0: now, 1: now, 2: now - 3}
    copy.vouch_start(clocks)  # a no-op today: the copied marker says it was vouched for
    heads = {0: 39, 1: 40, 2: 39}
    assert not copy.ends_hold(150, 39, heads, clocks, now), (
        f"block 39, which ended R1's hold before R1 voted at 40, ends the copy's hold too "
        f"(boundary {copy.boundary}, from R1's first start): the copy votes at height 40, "
        "where R1 was locked on B"
    )
