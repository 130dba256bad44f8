"""A 4-validator network of in-process Nodes in one folder, and checks of what they stored."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import Tx
from accord.consensus import verify_certificate
from accord.devnet import free_ports
from accord.node import Node
from accord.node.config import demo_account, init_network
from accord.storage import Store


def make_net(root: Path, n: int = 4) -> Genesis:
    ports = free_ports(2 * n)
    return init_network(
        root,
        validators=n,
        deterministic=True,
        demo_accounts=4,
        consensus=ConsensusParams(round_ms=500, stage2_ms=250),
        ports=ports[:n],
        api_ports=ports[n:],
    )


def transfer(g: Genesis, sender: int, nonce: int, to: int = 1, amount: int = 7) -> Tx:
    return Tx.create(
        demo_account(sender),
        chain_id=g.chain_id,
        contract="token",
        method="transfer",
        args={"to": demo_account(to).address, "amount": amount},
        nonce=nonce,
        gas_limit=100_000,
    )


def nodes_of(root: Path, g: Genesis) -> list[Node]:
    return [Node.from_dir(root / v.name) for v in g.validators]


async def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def check_store(path: Path, g: Genesis) -> tuple[int, bytes]:
    """Reopen a stopped validator's LMDB: head block, its certificate and the state root agree."""
    with Store(path, sync=False) as store:
        head = store.head()
        assert head is not None
        height, head_hash = head
        assert height >= 1, "the validator committed nothing"
        block = store.get_block(height)
        assert block is not None and block.hash == head_hash
        cert = store.get_certificate(height)
        assert cert is not None and cert.block_hash == head_hash and cert.height == height
        verify_certificate(g, g.chain_id, cert, g.quorum)
        assert block.header.state_root == store.state_root()
        return height, head_hash
