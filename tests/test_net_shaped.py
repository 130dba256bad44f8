"""Four validators over shaped links (~40 ms +- 10 ms each way, 2% of chunks stalled for a
retransmission timeout) under a small load of token transfers: blocks keep committing, every
accepted transfer commits on all four, no height diverges.

Without netem in the kernel, this is what the validators' links see on a WAN, made by relays
(accord.net.linkshaper) between every pair of validators."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from accord.base.errors import AccordError
from accord.base.types import Tx
from accord.net.linkshaper import LinkProfile
from accord.node import Node
from accord.node.config import demo_account

from .support.shaped import ShapedNodes

pytestmark = pytest.mark.timeout(120)


def _height(n: Node) -> int:
    return n.call(lambda: n.chain.head()[0] if n.chain is not None else 0)


def _located(n: Node, hashes: list[bytes]) -> list[tuple[int, int] | None]:
    return n.call(lambda: [n.store.get_tx_location(h) for h in hashes])


def _block_hashes(n: Node, top: int) -> list[bytes]:
    return n.call(lambda: [n.store.get_block(h).hash for h in range(1, top + 1)])


def test_four_validators_over_delayed_lossy_links_commit_everything_accepted(
    tmp_path: Path,
) -> None:
    profile = LinkProfile(delay_s=0.04, jitter_s=0.01, loss=0.02, rto_s=0.2)
    net = ShapedNodes(tmp_path / "net", profile)
    try:
        nodes, g = net.nodes, net.genesis
        rng = random.Random(7)
        nonces = {s: 0 for s in range(4)}
        accepted: list[bytes] = []
        refused = 0
        start_height = max(_height(n) for n in nodes)
        heights_seen: list[int] = []
        end = time.monotonic() + 12
        while time.monotonic() < end:
            sender = rng.randrange(4)
            tx = Tx.create(
                demo_account(sender),
                chain_id=g.chain_id,
                contract="token",
                method="transfer",
                args={"to": demo_account(4 + sender).address, "amount": 1},
                nonce=nonces[sender],
                gas_limit=100_000,
            )
            try:
                # one sender per validator: its nonces are counted where they are admitted
                accepted.append(nodes[sender].submit(tx))
                nonces[sender] += 1
            except AccordError:
                refused += 1
            heights_seen.append(min(_height(n) for n in nodes))
            time.sleep(0.05)
        assert len(accepted) > 100, (len(accepted), refused)
        # blocks kept committing on every validator through the load
        assert heights_seen[-1] >= start_height + 5, heights_seen[::20]
        assert net.shaper.stalls() > 0  # the links really stalled

        deadline = time.monotonic() + 40
        while True:
            missing = [sum(loc is None for loc in _located(n, accepted)) for n in nodes]
            if not any(missing):
                break
            assert time.monotonic() < deadline, f"accepted transfers not committed: {missing}"
            time.sleep(0.5)
        # committed at the same height everywhere, and no height diverges
        locations = [_located(n, accepted) for n in nodes]
        assert all(loc == locations[0] for loc in locations)
        top = min(_height(n) for n in nodes)
        chains = [_block_hashes(n, top) for n in nodes]
        assert all(c == chains[0] for c in chains)
        relayed = sum(
            r.stats.forward.bytes + r.stats.backward.bytes for r in net.shaper.relays.values()
        )
        assert relayed > 0
    finally:
        net.close()


def test_node_json_peers_name_genesis_validators_and_real_addresses(tmp_path: Path) -> None:
    from accord.base.errors import ValidationError
    from accord.base.genesis import Genesis
    from accord.node.config import NodeConfig, init_network

    g: Genesis = init_network(tmp_path / "n", validators=4, deterministic=True, demo_accounts=1)
    cfg = NodeConfig.load(tmp_path / "n" / "validator-0")
    cfg.peers = {"validator-2": "10.0.0.9:4000", "validator-3": "[::1]:4001"}
    assert cfg.peer_addresses(g) == {2: ("10.0.0.9", 4000), 3: ("::1", 4001)}
    for bad in ({"validator-9": "h:1"}, {"validator-1": "nohost"}, {"validator-1": "h:99999"}):
        cfg.peers = bad
        with pytest.raises(ValidationError):
            cfg.peer_addresses(g)


def test_an_embedded_node_reaches_the_peers_its_node_json_names(tmp_path: Path) -> None:
    """``Node.from_dir`` (what a host application calls) applies node.json's ``peers``, as
    ``accord node`` does; an explicit ``addresses=`` still wins."""
    from accord.node import Node
    from accord.node.config import NodeConfig, init_network

    init_network(tmp_path / "n", validators=4, deterministic=True, demo_accounts=1)
    folder = tmp_path / "n" / "validator-0"
    cfg = NodeConfig.load(folder)
    cfg.peers = {"validator-2": "10.0.0.9:4000"}
    cfg.save(folder)
    node = Node.from_dir(folder)
    assert node._addresses == {2: ("10.0.0.9", 4000)}
    assert Node.from_dir(folder, addresses={1: ("h", 1)})._addresses == {1: ("h", 1)}
