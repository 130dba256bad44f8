"""A new member joins a running network by state sync, past lying peers, and then commits.

Three of four validators run (a quorum); the fourth starts from an empty folder. Its peers
build snapshots every few blocks; one serves a manifest whose cells do not recombine to the
certified root, another tampers the chunks it serves. The newcomer must refuse both, count
them, take the snapshot from the honest peer, never replay from genesis, and then take part:
with the honest peer stopped, blocks only commit with the newcomer's votes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.genesis import ConsensusParams
from accord.base.types import Tx
from accord.devnet import free_ports
from accord.node import Node
from accord.node.config import demo_account, init_network
from accord.storage import snapshot as snap

from .support.notary import Notary, open_notary
from .support.tamper import offer_the_same_snapshots, tamper_requests
from .support.wait import until


def _lie(node: Node, how: str) -> list[int]:
    """Make ``node`` serve bad snapshot parts; return a list counting the lies told."""

    def alter(body: Value, out: Value) -> Value | None:
        if type(body) is not list or body[:1] != ["snap"] or type(out) is not bytes:
            return None
        if how == "root" and body[1] == "manifest":
            m = snap.Manifest.decode(out)
            c = m.cells[0]
            cells = (snap.Cell(c.depth, c.prefix, c.count, bytes(32)), *m.cells[1:])
            return snap.Manifest(m.block, m.certificate, m.receipts, cells).encode()
        if how == "chunk" and body[1] == "chunk":
            items = encoding.decode(out)
            assert isinstance(items, list)
            first = items[0]
            assert isinstance(first, list)
            items[0] = [first[0], bytes(first[1]) + b"\x00"]
            return encoding.encode(items)
        return None

    return tamper_requests(node, alter)


def _network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **node_kw: Any) -> Any:
    """Three of four validators running (their nodes built with ``node_kw``), and ``run``."""
    monkeypatch.setattr(snap, "MAX_CHUNK_ENTRIES", 16)  # a handful of chunks from a small state
    root = tmp_path / "net"
    ports = free_ports(8)
    genesis = init_network(
        root,
        validators=4,
        genesis_time_ms=int(time.time() * 1000),
        deterministic=True,
        ports=ports[:4],
        api_ports=ports[4:],
        demo_accounts=60,
        consensus=ConsensusParams(round_ms=300, stage2_ms=150),
    )
    for i in range(4):
        cfg = root / f"validator-{i}" / "node.json"
        data = json.loads(cfg.read_text())
        data.update(snapshot_interval=4, sync=False)
        cfg.write_text(json.dumps(data))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="statesync-net", daemon=True)
    thread.start()

    def run(coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    nodes: list[Node] = [Node.from_dir(root / f"validator-{i}", **node_kw) for i in range(3)]
    for n in nodes:
        run(n.start())
    try:
        yield root, genesis, nodes, run
    finally:
        for n in nodes:
            run(n.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from _network(tmp_path, monkeypatch)


@pytest.fixture
def notary_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from _network(tmp_path, monkeypatch, application=open_notary)


def _height(n: Node) -> int:
    return n.chain.head()[0] if n.running and n.chain is not None and not n.ops.syncing else 0


def test_a_new_validator_joins_by_state_sync_past_lying_peers_and_commits(network: Any) -> None:
    root, genesis, nodes, run = network
    alice, bob = demo_account(0), demo_account(1)
    for nonce in range(3):
        nodes[0].submit(
            Tx.create(
                alice,
                chain_id=genesis.chain_id,
                contract="token",
                method="transfer",
                args={"to": bob.address, "amount": 5},
                nonce=nonce,
            )
        )
    until(
        lambda: all(
            len(snap.available(n.ops.dir)) >= 1 and snap.available(n.ops.dir)[0] >= 8 for n in nodes
        ),
        90,
        "snapshots at height 8 on the running validators",
    )
    offer_the_same_snapshots(nodes)
    bad_root = _lie(nodes[0], "root")
    bad_chunks = _lie(nodes[1], "chunk")
    late = Node.from_dir(root / "validator-3")
    nodes.append(late)
    run(late.start())
    until(
        lambda: (
            late.ops.synced_height is not None
            and _height(late) >= min(_height(n) for n in nodes[:3]) - 1
        ),
        90,
        "validator 3 to sync and catch up",
        lambda: (
            late.ops.synced_height,
            late.ops.deciding,
            late.ops.syncing,
            late.ops.refused,
            [_height(n) for n in nodes],
            late.catchup.peer_heads,
        ),
    )
    synced = late.ops.synced_height
    assert synced is not None and synced >= 8
    # It took the snapshot, not the chain from genesis.
    assert late.store.base() == synced and late.store.get_block(1) is None
    assert late.store.get_header(synced).state_root == nodes[2].store.get_header(synced).state_root
    # Both liars were caught, counted, and nothing they sent was installed.
    assert bad_root and bad_chunks
    refused = {(peer, what) for peer, what, _ in late.ops.refused}
    assert (0, "manifest") in refused and (1, "chunk") in refused
    assert (
        late.ops.m_refused.get(what="manifest") >= 1 and late.ops.m_refused.get(what="chunk") >= 1
    )
    assert late.chain.nonce_of(alice.address) == 3
    assert late.healthy
    # Now it takes part: with the honest peer stopped, nothing commits without validator 3.
    run(nodes[2].stop())
    start = _height(late)
    until(
        lambda: min(_height(late), _height(nodes[0]), _height(nodes[1])) >= start + 3,
        60,
        "three blocks committed by validators 0, 1 and 3",
    )
    cert = late.store.get_certificate(start + 3)
    assert cert is not None and cert.signers[0] & 0b1000, "validator 3 signed the certificate"


def test_when_every_peer_lies_nothing_is_installed_and_the_node_replays(network: Any) -> None:
    root, genesis, nodes, run = network
    until(
        lambda: all(snap.available(n.ops.dir) and snap.available(n.ops.dir)[0] >= 4 for n in nodes),
        90,
        "snapshots on the running validators",
    )
    told = [_lie(n, "chunk") for n in nodes]
    late = Node.from_dir(root / "validator-3")
    nodes.append(late)
    run(late.start())
    until(
        lambda: (
            not late.ops.holds_catch_up and _height(late) >= min(_height(n) for n in nodes[:3]) - 1
        ),
        120,
        "validator 3 to give up on the snapshot and replay",
        lambda: (late.ops.synced_height, late.ops.refused, [_height(n) for n in nodes]),
    )
    assert late.ops.synced_height is None and any(told)
    assert {what for _, what, _ in late.ops.refused} == {"chunk"}
    # The tampered state never became the store's: it replayed from genesis instead.
    assert late.store.base() == 0 and late.store.get_block(1) is not None
    head = late.chain.head()[0]
    assert late.store.get_header(head).state_root == nodes[2].store.get_header(head).state_root


def _notarise(node: Node, genesis: Any, count: int) -> list[bytes]:
    alice = demo_account(0)
    return [
        node.submit(
            Tx.create(
                alice,
                chain_id=genesis.chain_id,
                contract="notary",
                method="record",
                args={},
                nonce=nonce,
            )
        )
        for nonce in range(count)
    ]


def test_a_ledger_that_is_not_a_chain_gives_up_on_lying_peers_and_replays(
    notary_network: Any,
) -> None:
    """State sync's abandoned import through the protocol alone: every chunk is tampered, so
    the newcomer's own application empties its state, starts over at genesis and replays.
    (Fails on the old code, whose state sync asserted the ledger was a Chain there and left
    the node with no head; it could not be given another application at all.)"""
    root, genesis, nodes, run = notary_network
    assert all(isinstance(n.chain, Notary) for n in nodes)
    tx_hashes = _notarise(nodes[0], genesis, 3)
    until(
        lambda: all(snap.available(n.ops.dir) and snap.available(n.ops.dir)[0] >= 4 for n in nodes),
        90,
        "snapshots of the notary on the running validators",
    )
    told = [_lie(n, "chunk") for n in nodes]
    late = Node.from_dir(root / "validator-3", application=open_notary)
    nodes.append(late)
    run(late.start())
    until(
        lambda: (
            not late.ops.holds_catch_up and _height(late) >= min(_height(n) for n in nodes[:3]) - 1
        ),
        120,
        "validator 3 to give up on the snapshot and replay",
        lambda: (late.ops.synced_height, late.ops.refused, [_height(n) for n in nodes]),
    )
    app = late.chain
    assert isinstance(app, Notary)
    assert late.ops.synced_height is None and any(told) and app.imports == 0
    assert {what for _, what, _ in late.ops.refused} == {"chunk"}
    # Genesis at the first start, and again after each abandoned import (one per height tried).
    assert app.genesis_commits >= 2
    assert late.store.base() == 0 and late.store.get_block(1) is not None
    head = late.chain.head()[0]
    assert late.store.get_header(head).state_root == nodes[2].store.get_header(head).state_root
    heights = [late.query("notary", "height_of", {"tx": h}) for h in tx_hashes]
    assert all(type(h) is int and h >= 1 for h in heights), heights
    assert late.healthy


def test_a_ledger_that_is_not_a_chain_joins_by_state_sync(notary_network: Any) -> None:
    """The newcomer's notary exports nothing and replays nothing: it imports the honest peer's
    snapshot past a lying one, through the Application protocol's snapshot calls, and then
    answers queries about transactions committed before it joined."""
    root, genesis, nodes, run = notary_network
    tx_hashes = _notarise(nodes[0], genesis, 3)
    until(
        lambda: all(snap.available(n.ops.dir) and snap.available(n.ops.dir)[0] >= 8 for n in nodes),
        90,
        "snapshots of the notary at height 8",
    )
    offer_the_same_snapshots(nodes)
    bad_chunks = _lie(nodes[1], "chunk")
    late = Node.from_dir(root / "validator-3", application=open_notary)
    nodes.append(late)
    run(late.start())
    until(
        lambda: (
            late.ops.synced_height is not None
            and _height(late) >= min(_height(n) for n in nodes[:3]) - 1
        ),
        90,
        "validator 3 to sync and catch up",
        lambda: (late.ops.synced_height, late.ops.refused, [_height(n) for n in nodes]),
    )
    app = late.chain
    assert isinstance(app, Notary) and app.imports == 1 and app.genesis_commits == 1
    synced = late.ops.synced_height
    assert synced is not None and synced >= 8
    assert late.store.base() == synced and late.store.get_block(1) is None
    assert late.store.get_header(synced).state_root == nodes[2].store.get_header(synced).state_root
    assert bad_chunks and (1, "chunk") in {(p, w) for p, w, _ in late.ops.refused}
    assert late.chain.nonce_of(demo_account(0).address) == 3
    heights = [late.query("notary", "height_of", {"tx": h}) for h in tx_hashes]
    assert all(type(h) is int and 1 <= h <= synced for h in heights), heights
    assert late.healthy
