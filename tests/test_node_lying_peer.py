"""A lying peer cannot wedge a validator that catches up.

A peer can serve a genuine header and certificate with other transactions in the body. In
the old format a block's hash covered its header only, so the core accepted such a block on
its certificate and moved on, the body then failed to apply, and the node only logged that
while its core ignored every later copy of the height: the validator never committed again.
Now the header commits to its transactions (``body_hash``), the swapped body is refused as it
is decoded, the peer that sent it is asked last, and the block comes from another peer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from accord.base.encoding import Value
from accord.base.types import Block, Tx
from accord.node import Node
from accord.node.config import demo_account

from .support.inproc import ThreadedNetwork


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _lie(node: Node, chain_id: str) -> list[int]:
    """Make ``node`` answer block requests (by height or by hash) with a tampered body under
    each genuine header and certificate; return a list that counts the lies told."""
    transport = node.transport
    assert transport is not None
    honest = transport.on_request
    assert honest is not None
    other = Tx.create(
        demo_account(2),
        chain_id=chain_id,
        contract="token",
        method="transfer",
        args={"to": demo_account(3).address, "amount": 7},
        nonce=0,
    )
    told: list[int] = []

    async def lying(frm: int, body: Value) -> Value:
        out = await honest(frm, body)
        if type(body) is list and body and body[0] in ("height", "hash") and type(out) is list:
            for item in out:
                assert type(item) is list
                block = Block.from_obj(item[0])
                if block.txs:  # same count, one transaction swapped (the tx root cannot tell)
                    item[0] = Block(block.header, (*block.txs[:-1], other)).to_obj()
                    told.append(block.height)
        return out

    transport.on_request = lying
    return told


def test_a_catching_up_validator_gets_past_peers_that_serve_bad_bodies(tmp_path: Path) -> None:
    net = ThreadedNetwork(tmp_path / "net", round_ms=300, stage2_ms=150, name="lying-peer")
    try:
        heights = lambda: [  # noqa: E731
            n.chain.head()[0] if n.running and n.chain is not None else 0 for n in net.nodes
        ]
        _wait(lambda: min(heights()) >= 2, 60, "height 2 everywhere")
        stopped_at = heights()[3]
        net.run(net.nodes[3].stop())
        alice, bob = demo_account(0), demo_account(1)
        for nonce in range(4):  # blocks with transactions while validator 3 is away
            net.nodes[0].submit(
                Tx.create(
                    alice,
                    chain_id=net.genesis.chain_id,
                    contract="token",
                    method="transfer",
                    args={"to": bob.address, "amount": 1},
                    nonce=nonce,
                )
            )
            time.sleep(0.4)
        _wait(lambda: min(heights()[:3]) >= stopped_at + 5, 60, "the others to move on")
        # Two of the three peers lie; catch-up asks the most advanced peer first, and the
        # liars are first among equals.
        told = [_lie(net.nodes[i], net.genesis.chain_id) for i in (0, 1)]
        late = Node.from_dir(net.root / "validator-3")
        net.nodes[3] = late
        net.run(late.start())
        _wait(lambda: heights()[3] >= min(heights()[:3]), 90, "validator 3 to catch up")
        if sum(len(t) for t in told) == 0:
            # validator 3 fetched every block with transactions from the honest peer (it was
            # ahead of the liars at each ask): this run tested nothing, say so instead of passing
            pytest.skip(
                "inconclusive run: the liars were never asked for a block with transactions"
            )
        top = heights()[3]
        for h in range(1, top + 1):
            hashes = {n.store.get_block(h).hash for n in net.nodes}  # type: ignore[union-attr]
            assert len(hashes) == 1, f"validators disagree at height {h}"
        # And it keeps committing with the others afterwards.
        _wait(lambda: heights()[3] >= top + 2, 30, "validator 3 to commit new blocks")
        assert 'accord_bad_messages_total{kind="block_response"}' in late.metrics.render()
    finally:
        net.close()
