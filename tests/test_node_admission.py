"""Batch admission in the Node: signatures checked on the verify thread, transactions
admitted on the loop strictly in arrival order, every rejection kept (client batches through
the HTTP API and gossip batches from peers). One validator of four: nothing commits."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from accord.base.errors import AccordError, InvalidSignature
from accord.base.genesis import Genesis
from accord.base.types import Tx
from accord.client import AsyncClient
from accord.node import Node

from .support.network import make_net, transfer, wait_for

pytestmark = pytest.mark.timeout(120)


def forged(t: Tx) -> Tx:
    return dataclasses.replace(t, signature=bytes([t.signature[0] ^ 1]) + t.signature[1:])


def codes(results: list[bytes | AccordError]) -> list[str]:
    return ["ok" if isinstance(r, bytes) else r.code for r in results]


def on_one_node(tmp_path: Path, scenario: Callable[[Node, Genesis], Awaitable[None]]) -> None:
    """Run ``scenario`` on validator 0 of a fresh four-validator network (nothing commits)."""
    root = tmp_path / "net"
    g = make_net(root)

    async def main() -> None:
        node = Node.from_dir(root / "validator-0", verify_off_loop=4)
        await node.start()
        try:
            await scenario(node, g)
        finally:
            await node.stop()

    asyncio.run(main())


def test_batches_keep_order_and_every_rejection(tmp_path: Path) -> None:
    async def scenario(node: Node, g: Genesis) -> None:
        txs: list[Tx | bytes] = [transfer(g, 0, k) for k in range(10)]
        txs[5] = forged(txs[5])  # type: ignore[arg-type]
        items = [*txs, b"\x01garbage", transfer(g, 0, 0)]
        res = await node.submit_batch(items)
        assert codes(res)[:10] == ["ok"] * 5 + ["invalid_signature"] + ["bad_nonce"] * 4
        assert codes(res)[10] not in ("ok", "duplicate_tx")  # undecodable bytes
        assert isinstance(res[5], InvalidSignature) and isinstance(res[10], AccordError)
        assert res[11].code == "duplicate_tx"  # type: ignore[union-attr]
        assert len(node.mempool) == 5  # type: ignore[arg-type]
        # Three gossip batches in a row, each verified off the loop: admitted in order.
        for start in (0, 4, 8):
            node.admission.on_txs([transfer(g, 1, k).encode() for k in range(start, start + 4)])
        await wait_for(lambda: len(node.mempool) == 17, 10, "gossip admitted")  # type: ignore[arg-type]
        assert node.mempool.next_nonce(transfer(g, 1, 0).sender) == 12  # type: ignore[union-attr]
        assert node.mempool.rejected.get("bad_nonce", 0) == 4  # type: ignore[union-attr]
        # verdicts of the verify thread:
        assert transfer(g, 1, 11).hash in node.admission.verified
        # Through the HTTP API: the same per-item answers, in order.
        async with AsyncClient(node.api.url) as c:  # type: ignore[union-attr]
            got = await c.submit_many(
                [transfer(g, 2, 0), forged(transfer(g, 2, 1)), transfer(g, 2, 1)]
            )
        assert codes(got) == ["ok", "invalid_signature", "ok"]
        assert got[0] == transfer(g, 2, 0).hash

    on_one_node(tmp_path, scenario)


def test_a_batch_past_the_backlog_limit_is_shed_from_that_point(tmp_path: Path) -> None:
    """A batch that fills the pool: the transactions that fit are admitted, every one after
    them is refused as mempool_full (nothing leaves the pool during a batch), and each
    refusal is counted once."""

    async def scenario(node: Node, g: Genesis) -> None:
        node.admission.limit = lambda: 3  # type: ignore[method-assign]
        shed = node.meters.shed
        res = await node.submit_batch([transfer(g, 0, k) for k in range(8)])
        assert codes(res) == ["ok"] * 3 + ["mempool_full"] * 5
        assert shed.total() == 5
        res = await node.submit_batch([transfer(g, 0, 3)])
        assert codes(res) == ["mempool_full"] and shed.total() == 6

    on_one_node(tmp_path, scenario)
