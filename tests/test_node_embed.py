"""Embedding the Node: in the host's event loop, on a background thread, subscriptions,
clean shutdown (LMDB consistent on reopen), restart, and safety state persisted before votes.

Four in-process validators on loopback (deterministic demo keys, 500 ms rounds).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from accord.client import Client
from accord.consensus import SAFETY_KEY, Aggregate, SafetyState, decode_message
from accord.consensus.aggregate import PHASE_C, PHASE_P
from accord.node import Node
from accord.node.config import demo_account

from .support.network import check_store, make_net, nodes_of, transfer, wait_for

pytestmark = pytest.mark.timeout(180)


def test_nodes_in_the_host_loop_subscribe_stop_reopen_restart(tmp_path: Path) -> None:
    root = tmp_path / "net"
    g = make_net(root)

    async def main() -> tuple[int, bytes]:
        nodes = nodes_of(root, g)
        for n in nodes:
            await n.start()
        try:
            sub = nodes[0].subscribe()
            events: list[tuple[int, bytes, Any]] = []

            async def collect() -> None:
                async for item in nodes[1].events("token"):
                    events.append(item)

            collector = asyncio.create_task(collect())
            await asyncio.sleep(0)
            txs = [transfer(g, 0, 0), transfer(g, 0, 1), transfer(g, 2, 0, to=3, amount=11)]
            hashes = [
                nodes[2].submit(txs[0]),
                nodes[2].submit(txs[1].encode()),
                nodes[3].submit(txs[2]),
            ]
            assert hashes == [t.hash for t in txs]
            assert nodes[0].next_nonce(demo_account(0).address) in (
                0,
                2,
            )  # gossip may not have arrived
            seen: dict[bytes, bool] = {}
            committed_at = 0
            async with asyncio.timeout(30):
                async for block, receipts in sub:
                    for tx, r in zip(block.txs, receipts, strict=True):
                        seen[tx.hash] = r.ok
                    if all(h in seen for h in hashes):
                        committed_at = block.height
                        break
            assert all(seen[h] for h in hashes)
            await wait_for(lambda: len(events) >= 3, 10, "three Transfer events")
            assert {(ev.name, ev.data["amount"]) for _, _, ev in events} >= {
                ("Transfer", 7),
                ("Transfer", 11),
            }
            assert {h for _, h, _ in events} >= set(hashes)
            # every validator reaches the height that committed the transfers (node 0 saw it first;
            # the others may still be applying it), and then they all answer the same balance
            await wait_for(
                lambda: all(n.status()["height"] >= committed_at for n in nodes),
                10,
                "every node at the commit height",
            )
            balances = {
                n.query("token", "balance_of", {"account": demo_account(3).address}) for n in nodes
            }
            assert len(balances) == 1
            await sub.aclose()
            collector.cancel()
        finally:
            for n in nodes:
                await n.stop()
        heads = [check_store(root / v.name / "data", g) for v in g.validators]
        # restart every validator: they resume from their stored heads and commit more
        nodes = nodes_of(root, g)
        for n in nodes:
            await n.start()
        try:
            assert all(n.status()["height"] >= heads[i][0] for i, n in enumerate(nodes))
            top = max(h for h, _ in heads)
            h = nodes[1].submit(transfer(g, 1, 0))
            await wait_for(
                lambda: all(n.status()["height"] >= top + 2 for n in nodes), 30, "new commits"
            )
            await wait_for(lambda: not nodes[1].has_pending(h), 10, "tx committed")
        finally:
            for n in nodes:
                await n.stop()
        return check_store(root / "validator-0" / "data", g)

    asyncio.run(main())


def test_background_thread_mode_from_synchronous_code(tmp_path: Path) -> None:
    root = tmp_path / "net"
    g = make_net(root)
    nodes = nodes_of(root, g)
    try:
        for n in nodes:
            n.start_background()
        assert all(n.running for n in nodes)
        tx = transfer(g, 3, 0, to=0, amount=5)
        h = nodes[1].submit(tx)  # from this (non-loop) thread
        assert nodes[1].api is not None
        with Client(nodes[1].api.url) as c:
            receipt = c.wait(h, timeout=30)
            assert receipt.ok
            st = c.tx(h)
            assert st.committed and st.height is not None
        assert nodes[2].next_nonce(demo_account(3).address) == 1
        deadline = time.monotonic() + 20
        while len({n.status()["head_hash"] for n in nodes}) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for n in nodes:
            n.stop_background()
    assert not any(n.running for n in nodes)
    for v in g.validators:
        check_store(root / v.name / "data", g)


def test_safety_state_is_persisted_before_each_vote_and_a_restart_never_double_votes(
    tmp_path: Path,
) -> None:
    """Tap validator 0's LMDB safety writes and its outgoing consensus messages: every vote of
    its own that leaves the node was durably recorded first. Restart it mid-round (several
    times): across all runs it never signs two blocks for one (height, round, phase)."""
    root = tmp_path / "net"
    g = make_net(root)
    votes: dict[tuple[int, int, int], bytes] = {}
    checked = {"votes": 0, "restarts": 0}
    violations: list[str] = []  # collected, not raised: the tap runs inside transport handlers

    # Every vote any run of validator 0 persisted. Shared across its restarts: a restarted
    # validator legitimately forwards aggregates holding its own vote of an earlier run (peers
    # merged it), which that run persisted; a vote no run persisted is the violation.
    durable: dict[tuple[int, int, int], bytes] = {}

    def tap(node: Node) -> None:
        store, transport = node.store, node.transport
        assert transport is not None
        put_safety, broadcast, send = store.put_safety, transport.broadcast, transport.send

        def on_persist(key: bytes, value: bytes) -> None:
            put_safety(key, value)
            s = SafetyState.decode(value, g.n)
            durable[(s.p_height, s.p_round, PHASE_P)] = s.p_hash
            durable[(s.c_height, s.c_round, PHASE_C)] = s.c_hash

        def check(payload: Any) -> None:
            msg = decode_message(payload, g.n, 64 * 1024 * 1024)
            if isinstance(msg, Aggregate) and msg.counts[node.index] > 0:
                key = (msg.height, msg.round, msg.phase)
                if durable.get(key) != msg.block_hash:
                    violations.append(f"vote {key} sent before it was persisted")
                if votes.setdefault(key, msg.block_hash) != msg.block_hash:
                    violations.append(f"double vote at {key}")
                checked["votes"] += 1

        def on_broadcast(kind: Any, payload: Any, *a: Any, **kw: Any) -> Any:
            if isinstance(payload, bytes):
                check(payload)
            return broadcast(kind, payload, *a, **kw)

        def on_send(index: int, kind: Any, payload: Any, *a: Any, **kw: Any) -> Any:
            if isinstance(payload, bytes):
                check(payload)
            return send(index, kind, payload, *a, **kw)

        store.put_safety = on_persist
        transport.broadcast = on_broadcast  # type: ignore[method-assign]
        transport.send = on_send  # type: ignore[method-assign]
        # what is on disk already (restored from the last run, or persisted by this run's
        # start before the tap was in place) is durable
        raw = store.get_safety(SAFETY_KEY)
        if raw is not None:
            s = SafetyState.decode(raw, g.n)
            durable[(s.p_height, s.p_round, PHASE_P)] = s.p_hash
            durable[(s.c_height, s.c_round, PHASE_C)] = s.c_hash

    async def main() -> None:
        nodes = nodes_of(root, g)
        for n in nodes:
            await n.start()
        tap(nodes[0])  # before its first tick: start() returns before any round runs
        try:
            await wait_for(lambda: nodes[0].status()["height"] >= 2, 30, "first commits")
            for delay in (0.13, 0.31, 0.07):
                await asyncio.sleep(delay)  # somewhere inside a round
                await nodes[0].stop()
                nodes[0] = Node.from_dir(root / "validator-0")
                await nodes[0].start()
                tap(nodes[0])
                checked["restarts"] += 1
                h = nodes[1].status()["height"]
                await wait_for(
                    lambda h=h: nodes[0].status()["height"] >= h + 1, 30, "commits after restart"
                )
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(main())
    assert violations == []
    assert checked["restarts"] == 3
    assert checked["votes"] >= 8  # the check above really ran on this node's own votes


def test_client_submissions_are_shed_past_the_backlog_limit(tmp_path: Path) -> None:
    """Past ``backlog_rounds`` blocks of backlog, submissions get MempoolFull (503) and change
    nothing; gossip from peers is still admitted. One validator of four: nothing commits."""
    from accord.base.errors import MempoolFull
    from accord.node.admission import MIN_BLOCK_TXS

    root = tmp_path / "net"
    g = make_net(root)

    async def main() -> None:
        node = Node.from_dir(root / "validator-0", backlog_rounds=1)
        await node.start()
        try:
            node.worker.gas.cost = 1.0  # as if execution were very slow: the smallest blocks
            limit = node.admission.limit()
            assert limit == 4 * MIN_BLOCK_TXS
            for nonce in range(limit):
                node.submit(transfer(g, 0, nonce))
            with pytest.raises(MempoolFull):
                node.submit(transfer(g, 0, limit))
            assert node.status()["mempool"] == limit
            assert node.meters.shed.get() == 1
            node.admission.on_txs([transfer(g, 1, 0).encode()])  # a peer's gossip is not shed
            assert node.status()["mempool"] == limit + 1
            node.worker.gas.cost = 2e-8  # execution got fast again: the limit follows
            assert node.admission.limit() > limit
            node.submit(transfer(g, 0, limit))
        finally:
            await node.stop()

    asyncio.run(main())


def test_the_core_is_ticked_when_it_needs_time_not_on_a_fixed_beat(tmp_path: Path) -> None:
    """An idle validator wakes for its round's deadlines and timers (``Core.next_wakeup_ms``),
    not every ``tick_ms``; the core's clock only moves forward and is never left unticked past
    a wakeup it asked for by more than scheduling noise. One validator of four: no commits,
    so every tick comes from the timer."""
    from accord.consensus import Tick

    root = tmp_path / "net"
    make_net(root)

    async def main() -> None:
        node = Node.from_dir(root / "validator-0", tick_ms=20)
        await node.start()
        assert node.core is not None
        core = node.core
        ticks: list[tuple[int, int]] = []  # (tick time, the wakeup the core asked for before it)
        handle = core.handle

        def spy(event: Any) -> Any:
            if isinstance(event, Tick):
                ticks.append((event.now_ms, core.next_wakeup_ms()))
            return handle(event)

        core.handle = spy  # type: ignore[method-assign]
        try:
            await asyncio.sleep(2.0)
        finally:
            await node.stop()
        assert ticks
        times = [t for t, _ in ticks]
        assert times == sorted(times)
        # 500 ms rounds: stage II, round start and resends every 125 ms are ~12 wakeups a
        # second; a fixed 20 ms beat would be 50.
        assert len(ticks) < 2.0 * 30
        late = [t - want for t, want in ticks if t > want]
        assert max(late, default=0) < 500  # due wakeups are not skipped

    asyncio.run(main())
