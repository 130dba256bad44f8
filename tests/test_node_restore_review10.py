"""The restore hold's four gaps left untested by the ninth review (issue 17, findings 2, 3, 8).

The guarantee: a folder restored with ``accord node restore`` never signs a vote that
conflicts with one its original signed, and it either gets back to voting or says plainly
why it cannot. Each test failed on the code before its fix:

1. A restore older than every peer's pruning held for ever and said nothing (catch-up got
   empty answers and asked on); now peers say "pruned" and the node reports why it cannot
   catch up (unhealthy, with the reason) and asks no more.
2. A restored single validator never released (no peer proposes the block that ends the
   hold, and the docstring said it released on the block alone); now it stops and says why
   it cannot release safely.
3. A ``started_ms`` far in the future in the marker held for decades; now the peers' clocks
   bound it.
4. The release raced a commit asked for while the releasing one returned: the core was
   rebuilt at a head the store then moved past.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from accord.base.errors import NetError
from accord.base.genesis import ConsensusParams
from accord.base.metrics import Registry
from accord.consensus import SAFETY_KEY, Commit
from accord.node import Node, statesync
from accord.node.catchup import CatchUp
from accord.node.doublesign import DoubleSignGuard
from accord.node.driver import CoreDriver
from accord.node.worker import ChainWorker
from accord.storage import Store
from accord.storage import backup as bk

from .support.inproc import ThreadedNetwork
from .support.inproc import wait_until as _wait

ROUND_MS = 100
DRIFT_MS = 3 * ROUND_MS
GENESIS = types.SimpleNamespace(
    f=1,
    n=4,
    genesis_time_ms=0,
    consensus=types.SimpleNamespace(round_ms=ROUND_MS, time_drift=lambda: DRIFT_MS),
)


def _restore_after(net: ThreadedNetwork, tmp_path: Path, index: int, signs_on: int) -> Node:
    """Back validator ``index`` up at its current head, let it sign on for ``signs_on``
    heights, stop it, lose its folder, restore the backup and build the restored node."""
    original = net.nodes[index]
    assert original.chain is not None
    backup_dir = tmp_path / "bk"
    bk.backup_store(original.store, backup_dir)
    h = original.chain.head()[0]
    assert _wait(
        lambda: original.chain is not None and original.chain.head()[0] >= h + signs_on, 90
    )
    net.run(original.stop())
    folder = net.root / f"validator-{index}"
    (folder / "data").rename(tmp_path / f"old-data-{index}")  # the original's folder is gone
    bk.restore(backup_dir, folder / "data")
    restored = Node.from_dir(folder)
    net.nodes[index] = restored
    return restored


# --- gap 3: a start from the future ------------------------------------------------------


def test_a_start_decades_ahead_in_the_marker_is_bounded_by_the_peers_clocks(
    tmp_path: Path,
) -> None:
    """A damaged or hostile ``started_ms`` 30 years ahead put the boundary 30 years ahead:
    vouch_start could only raise it, so no block could end the hold before 2056. Now a
    start (or vouched time) more than two drifts ahead of both this clock and the peers'
    vouched time is refused and replaced by the peers' time, with an error logged."""
    now = 10_000_000
    decades = now + 30 * 365 * 86_400_000
    bk.write_restored_marker(tmp_path, {"started_ms": decades})
    g = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    g.open(tmp_path, now)
    assert g.boundary == g._boundary_after(decades)  # no peer yet: nothing to bound it by
    clocks = {0: now, 1: now + 20, 2: now - 30}
    assert g.vouch_start(clocks, now)
    assert g.boundary == g._boundary_after(now), "the boundary stays decades ahead"
    marker = bk.read_restored_marker(tmp_path)
    assert marker is not None and marker["started_ms"] == now
    heads = {0: 50, 1: 50, 2: 50}
    assert g.ends_hold(g.boundary, 50, heads, clocks, now)
    # kept across a restart while holding: the next start reads the bounded marker
    again = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    again.open(tmp_path, now + 1_000)
    assert again.boundary == g.boundary
    # a vouched time from the future is bounded the same way
    bk.write_restored_marker(tmp_path, {"started_ms": now, "vouched_ms": decades})
    v = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    v.open(tmp_path, now)
    assert v.vouch_start(clocks, now) and v.boundary == v._boundary_after(now)


def test_a_start_ahead_of_a_clock_stepped_back_is_kept(tmp_path: Path) -> None:
    """The bound judges the marker against the peers' time, not this clock alone: a start
    written by a correct clock that was then stepped back 60 s (second review) is no later
    than the network's time and is kept, so the boundary is not lowered under rounds the
    original may have voted in; and a start ahead only by a clock that was fast at the first
    start is replaced by the peers' time, which still lies above the original's rounds."""
    true_start = 10_000_000
    bk.write_restored_marker(tmp_path, {"started_ms": true_start})
    g = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    stepped_back = true_start - 60_000
    g.open(tmp_path, stepped_back)
    first = g.boundary
    now = true_start + 500  # the peers' clocks: true time
    assert g.vouch_start({0: now, 1: now, 2: now}, stepped_back)
    assert g.boundary is not None and first is not None and g.boundary >= first
    # within two drifts of the network's time may be a past start by a clock within the
    # drift (and the peers' within the drift on the other side): kept
    bk.write_restored_marker(tmp_path, {"started_ms": now + 2 * DRIFT_MS})
    k = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    k.open(tmp_path, now)
    assert k.vouch_start({0: now, 1: now, 2: now}, now)
    assert k.boundary == k._boundary_after(now + 2 * DRIFT_MS)
    # a clock an hour fast at the first start: replaced by the peers' time; the original
    # (gone before that start, by a clock at most the drift fast) voted below the new boundary
    original_last_round = g.round_of(true_start + DRIFT_MS)
    bk.write_restored_marker(tmp_path, {"started_ms": true_start + 3_600_000})
    fast = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    fast.open(tmp_path, now)
    assert fast.vouch_start({0: now, 1: now, 2: now}, now)
    assert fast.boundary == fast._boundary_after(now) > original_last_round
    # never below a round already adopted (the start is vouched for again after a set change)
    bk.write_restored_marker(tmp_path, {"started_ms": true_start + 3_600_000})
    mid = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    mid.open(tmp_path, now)
    mid.adopted = (40, fast.boundary + 7)
    assert mid.vouch_start({0: now, 1: now, 2: now}, now)
    assert mid.boundary == fast.boundary + 8


# --- gap 2: a restored single validator ---------------------------------------------------


def test_a_restored_single_validator_stops_and_says_why_instead_of_holding_silently(
    tmp_path: Path,
) -> None:
    """One validator: its commit vote alone is a certificate, so the original committed the
    blocks after the backup and only it held them. No peer can send them, vouch for a clock
    or propose the block after the boundary: the restored node held for ever, healthy and
    silent (and the docstring said it released "on the block alone"). Releasing on its own
    clock would sign a second block at a height the original committed. It now halts with a
    reason, never votes, and reports it in /v1/status and /metrics."""
    net = ThreadedNetwork(
        tmp_path / "net", validators=1, round_ms=300, stage2_ms=150, name="ds10-one"
    )
    try:
        assert _wait(
            lambda: net.nodes[0].chain is not None and net.nodes[0].chain.head()[0] >= 2, 60
        )
        restored = _restore_after(net, tmp_path, 0, signs_on=3)
        net.run(restored.start())
        assert restored.double_sign.holding
        record = restored.store.get_safety(SAFETY_KEY)
        head = restored.chain.head()[0]
        assert _wait(lambda: restored.fault is not None, 10), (
            "a restored single validator holds for ever and says nothing"
        )
        assert "only one in the validator set" in restored.fault
        time.sleep(1.0)  # several rounds: it signs nothing and commits nothing
        assert restored.store.get_safety(SAFETY_KEY) == record
        assert restored.chain.head()[0] == head and restored.double_sign.holding
        with urllib.request.urlopen(f"{net.urls[0]}/v1/status", timeout=10) as r:
            st = json.loads(r.read())
        assert st["healthy"] is False and st["holding"] is True
        assert "only one in the validator set" in st["fault"]
        with urllib.request.urlopen(f"{net.urls[0]}/metrics", timeout=10) as r:
            assert "accord_healthy 0" in r.read().decode()
    finally:
        net.close()


# --- gap 1: a restore older than every peer's pruning -------------------------------------


def test_a_restore_older_than_every_peers_pruning_says_why_and_state_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every peer pruned the blocks after the backup's head. Before, they answered an empty
    list, the restored node distrusted each in turn and asked again every status interval
    for ever, holding, with ``/v1/status`` healthy and nothing logged. Now a peer says
    "pruned", and once f+1 members (one honest at least) said it of the next height and no
    other member is left to ask, the node reports unhealthy with the reason and asks no more;
    emptying the data folder but the marker then state-syncs under the hold."""
    monkeypatch.setattr(statesync, "PRUNE_EVERY", 4)
    net = ThreadedNetwork(tmp_path / "net", round_ms=300, stage2_ms=150, name="ds10-pruned")
    try:
        for node in net.nodes:
            node.config.prune_keep = 4
            node.config.snapshot_interval = 5
        assert _wait(
            lambda: net.nodes[3].chain is not None and net.nodes[3].chain.head()[0] >= 1, 60
        )
        restored = _restore_after(net, tmp_path, 3, signs_on=1)
        assert _wait(lambda: all(n.store.base() > 4 for n in net.nodes[:3]), 120), (
            "the peers did not prune"
        )
        net.run(restored.start())
        backup_head = restored.chain.head()[0]
        assert restored.double_sign.holding
        stranded = lambda: getattr(restored.catchup, "stranded", None)  # noqa: E731
        assert _wait(lambda: stranded() is not None, 30), (
            "a restore older than every peer's pruning holds for ever and says nothing"
        )
        assert "older than every peer's retained blocks" in stranded()
        assert "state sync" in stranded() and not restored.healthy
        assert restored.chain.head()[0] == backup_head and restored.double_sign.holding
        with urllib.request.urlopen(f"{net.urls[3]}/v1/status", timeout=10) as r:
            st = json.loads(r.read())
        assert st["healthy"] is False and "retained blocks" in st["fault"]
        with urllib.request.urlopen(f"{net.urls[3]}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert "accord_healthy 0" in text and "accord_catch_up_stranded 1" in text

        def requests() -> float:
            sent = restored.metrics.get("accord_net_frames_out_total")
            assert sent is not None
            return float(sent.get(kind="block_request"))  # type: ignore[attr-defined]

        # No spinning: a member not yet among those that said "pruned" (one distrusted for a
        # while, or not asked yet) may still be asked once, then it says so too; after that,
        # several status intervals pass without a request.
        at_stranded = requests()
        settled = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not settled:
            before = requests()
            time.sleep(2.0)
            settled = requests() == before
        assert settled, "a stranded node keeps asking its peers for pruned blocks"
        assert requests() - at_stranded <= len(net.nodes) - 1
        # What the reason says: empty the data folder but keep the marker; the node state-syncs
        # from a peer's snapshot while it still holds, and the hold ends by its rule.
        net.run(restored.stop())
        data = net.root / "validator-3" / "data"
        for path in data.iterdir():
            if path.name != bk.RESTORED:
                path.unlink() if path.is_file() else shutil.rmtree(path)
        again = Node.from_dir(net.root / "validator-3")
        net.nodes[3] = again
        net.run(again.start())
        assert again.double_sign.holding
        assert _wait(lambda: not again.double_sign.holding, 90), (
            f"still holding after state sync (synced to {again.ops.synced_height}, head "
            f"{again.chain.head()[0] if again.chain else None}, fault {again.fault})"
        )
        assert again.fault is None and again.ops.synced_height is not None
        assert bk.read_restored_marker(data) is None
    finally:
        net.close()


class _AskingNode:
    """What CatchUp reads of a restored node at height 5 holding on a set of four (transport
    indices 0-3, itself 3); ``pruned`` names the peers that answer a request by height with
    the ``pruned`` error, the others answer with one block each time (progress, faked by
    moving the head)."""

    def __init__(self, pruned: set[int]) -> None:
        self.running = True
        self.fault: str | None = None
        self.name = "v3"
        self.genesis = GENESIS
        self.double_sign = types.SimpleNamespace(holding=True, start_vouched=True)
        self.ops = types.SimpleNamespace(holds_catch_up=False, syncing=False)
        self.worker = types.SimpleNamespace(barrier=self._noop)
        self.height = 5
        self.chain = types.SimpleNamespace(head=lambda: (self.height, b"h"))
        view = types.SimpleNamespace(
            keys=tuple(bytes([t]) * 48 for t in range(4)),
            me=3,
            to_transport=[0, 1, 2, 3],
            from_transport={t: t for t in range(4)},
        )
        self.driver = types.SimpleNamespace(step=lambda event: None, view=view, following=False)
        counter = types.SimpleNamespace(inc=lambda *a, **k: None, set=lambda *a, **k: None)
        self.meters = types.SimpleNamespace(
            sync=counter, bad_msgs=counter, stranded=counter, healthy=counter
        )
        self.pruned = pruned
        self.asked: list[int] = []

        async def request(peer: int, body: Any, timeout: float) -> Any:
            self.asked.append(peer)
            if peer in self.pruned:
                raise NetError(f"validator {peer}: pruned", reason="remote_error", remote="pruned")
            return []

        self.transport = types.SimpleNamespace(request=request)

    async def _noop(self) -> None:
        return None


def test_f_peers_saying_pruned_cannot_strand_a_node_an_honest_peer_can_serve() -> None:
    """Being stranded is an order statistic too: f liars answering "pruned" (or one honest
    peer that did prune) are not f+1, and while a member not known to have pruned is left to
    ask, the node is not stranded; the peers that said it are not asked for those heights
    again. Only when f+1 said so and no other member is left is it stranded, and a block
    that lands after all clears that."""
    node = _AskingNode(pruned={0})
    cu = CatchUp(node)  # type: ignore[arg-type]
    cu._heads.update({0: 10**6, 1: 40, 2: 40})

    async def ask(peer: int) -> None:
        await cu.fetch(peer, ["height", node.height + 1, 16], sync=True)

    asyncio.run(ask(0))  # a liar (f = 1) says "pruned"
    assert cu.stranded is None
    assert cu.pruned == {0: 6}
    node.asked.clear()
    asyncio.run(_maybe_sync_once(cu))
    assert node.asked and 0 not in node.asked, "a peer that said pruned is asked again"
    node.pruned.add(1)  # one honest peer pruned too; 2 has not said so
    asyncio.run(ask(1))
    assert cu.stranded is None, "f+1 said pruned but honest 2 is left to ask"
    node.pruned.add(2)
    asyncio.run(ask(2))
    assert cu.stranded is not None and "older than every peer's retained blocks" in cu.stranded
    # no spinning: nobody is left to ask for those heights
    node.asked.clear()
    asyncio.run(_maybe_sync_once(cu))
    assert node.asked == []
    # not a halt: a block that lands after all (a member that has it) clears it
    node.height = 6
    asyncio.run(_maybe_sync_once(cu))
    assert cu.stranded is None
    # a validator outside the set the node runs counts for nothing: with 1 and 2 silent,
    # member 0 and outsider 5 saying "pruned" are one member, not f+1
    other = _AskingNode(pruned={0, 5})
    cu2 = CatchUp(other)  # type: ignore[arg-type]
    cu2._heads.update({0: 40, 5: 40})
    for p in (0, 5):
        asyncio.run(cu2.fetch(p, ["height", 6, 16], sync=True))
    assert cu2.stranded is None


async def _maybe_sync_once(cu: CatchUp) -> None:
    cu._inflight.clear()
    cu.maybe_sync()
    for _ in range(5):
        await asyncio.sleep(0)


# --- gap 4: the release and a commit asked for meanwhile -----------------------------------


class _Ledger:
    """The part of the Application protocol a commit uses, one height at a time."""

    def __init__(self, height: int) -> None:
        self.height = height

    def head(self) -> tuple[int, bytes]:
        return self.height, bytes([self.height % 256]) * 32

    def validate(self, block: Any, verified: frozenset[bytes]) -> None:
        return None

    def commit(self, block: Any, cert: Any) -> list[Any]:
        assert block.height == self.height + 1
        self.height = block.height
        return []


def _held_worker(ledger: _Ledger, now: int) -> ChainWorker:
    """A real chain worker on ``ledger`` (on the running loop) for a held node's commits."""
    worker = ChainWorker(
        "v3",
        ConsensusParams(round_ms=ROUND_MS, stage2_ms=ROUND_MS // 2),
        Registry(),
        status=lambda: None,
        deliver=lambda event: None,
        now_ms=lambda: now,
        known_good=lambda tx: False,
        note_verified=lambda txs: None,
        remember=lambda block: None,
    )
    worker.open(ledger, None, asyncio.get_running_loop())  # type: ignore[arg-type]
    return worker


def _held_node(
    guard: DoubleSignGuard,
    store: Store,
    ledger: _Ledger,
    worker: ChainWorker,
    clocks: dict[int, int],
    head: int,
) -> Any:
    """The parts of a restored node a commit touches; three peers report ``head``."""
    return types.SimpleNamespace(
        double_sign=guard,
        store=store,
        chain=ledger,
        worker=worker,
        fault=None,
        running=True,
        transport=types.SimpleNamespace(),  # nothing is sent: the core is not driven
        catchup=types.SimpleNamespace(
            peer_clocks=lambda: clocks, set_size=lambda: 4, peer_heads=dict.fromkeys(range(3), head)
        ),
    )


def _block(height: int, rnd: int, now: int) -> Any:
    header = types.SimpleNamespace(round=rnd, time_ms=now)
    return types.SimpleNamespace(height=height, header=header, txs=[], hash=bytes([height]) * 32)


@pytest.mark.parametrize("meanwhile", ["next", "again"])
def test_the_release_waits_for_a_commit_asked_for_while_the_last_one_returns(
    tmp_path: Path, meanwhile: str
) -> None:
    """The hold ended once the worker had no commit waiting, but the worker counts a commit
    only once its task runs: a commit the held core asked for while the releasing one
    returned (on a chain with validator sets, ``_after_executed`` feeds held blocks to the
    core right there; a catch-up answer read in the same loop turn does the same) was not
    counted yet. The release rebuilt the core at height h and the commit of h+1 landed
    after it, below the store's head. Forced here with the real driver and chain worker:
    the settling of block h asks for the commit of h+1 (``next``).

    The safety record cannot end below a vote this way (block h+1 is proposed after h, in a
    round at or past the boundary: no vote of the original's is in it), but the core must be
    rebuilt at the head every asked-for commit leads to; now the release waits for it. When
    the commit asked for meanwhile finds its block committed already (``again``: h once
    more), the release the executed commit deferred to it happens there, at h, not never."""
    now = int(time.time() * 1000)
    bk.write_restored_marker(tmp_path, {})
    guard = DoubleSignGuard(GENESIS, 3, enabled=True)  # type: ignore[arg-type]
    guard.open(tmp_path, now)
    clocks = {0: now, 1: now, 2: now}
    assert guard.vouch_start(clocks, now) and guard.boundary is not None
    h = 20
    ledger = _Ledger(h - 1)
    blocks = {
        b.height: b
        for b in (_block(h, guard.boundary + 5, now), _block(h + 1, guard.boundary + 6, now))
    }
    then = blocks[h + 1] if meanwhile == "next" else blocks[h]
    final = then.height
    restarts: list[int] = []

    async def run() -> None:
        worker = _held_worker(ledger, now)
        with Store(tmp_path / "s", sync=False) as store:
            node = _held_node(guard, store, ledger, worker, clocks, h)
            driver = CoreDriver(node, b"", 100)  # type: ignore[arg-type]
            driver.restart = lambda: restarts.append(ledger.head()[0])  # type: ignore[method-assign]
            asked = []

            def committed(block: Any, receipts: list[Any]) -> None:
                if block.height == h and not asked:  # the held core asks for another meanwhile
                    asked.append(then)
                    driver._perform(Commit(then, object()))  # type: ignore[arg-type]

            node.committed = committed
            driver._perform(Commit(blocks[h], object()))  # type: ignore[arg-type]
            for _ in range(200):
                await asyncio.sleep(0.01)
                if ledger.head()[0] == final and restarts:
                    break
            await worker.close()

    asyncio.run(run())
    assert ledger.head()[0] == final
    assert restarts == [final], (
        f"the core was rebuilt at height {restarts} (expected once, at {final}): a commit "
        "asked for before the release had not landed, or the release was dropped"
    )
    assert not guard.holding
