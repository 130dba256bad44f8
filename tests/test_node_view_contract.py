"""One contract, two implementations: the API's test node (``tests/support/api.LocalNode``) and
the real ``accord.node.Node`` answer the ``NodeView`` calls the same way.

The API tests run against the light test node; if it drifted from the real one (it once had no
``submit_batch`` and other status field names, so batch tests took a path production never
uses), these tests would fail before the API tests could mislead anyone.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError
from accord.base.types import Tx
from accord.node import Node
from accord.node.api import STATUS_KEYS, NodeView
from accord.node.config import demo_account

from .support.api import ALICE, BOB, LocalNode
from .support.network import make_net

Maker = Callable[[Path], Any]


async def _resolve(x: Any) -> Any:
    return await x if inspect.isawaitable(x) else x


@asynccontextmanager
async def local_node(root: Path) -> AsyncIterator[tuple[Any, AccountKey, bytes]]:
    node = LocalNode(root / "local")
    try:
        yield node, ALICE, BOB.address
    finally:
        node.close()


@asynccontextmanager
async def real_node(root: Path) -> AsyncIterator[tuple[Any, AccountKey, bytes]]:
    g = make_net(root, n=1)
    node = Node.from_dir(root / g.validators[0].name)
    await node.start()
    try:
        yield node, demo_account(0), demo_account(1).address
    finally:
        await node.stop()


@pytest.mark.parametrize("make", [local_node, real_node], ids=["LocalNode", "Node"])
def test_the_node_view_contract(tmp_path: Path, make: Maker) -> None:
    async def main() -> dict[str, Any]:
        async with make(tmp_path) as (node, key, to):
            for name in ("submit", "submit_batch", "has_pending", "status", "subscribe", "query"):
                assert callable(getattr(node, name)), name
            for attr in ("genesis", "store", "metrics"):
                assert hasattr(node, attr), attr
            _: NodeView = node  # the protocol's shape, checked by mypy where typed

            status = await _resolve(node.status())
            assert set(status) == STATUS_KEYS
            assert type(status["height"]) is int and type(status["healthy"]) is bool
            assert status["chain_id"] == node.genesis.chain_id

            def tx(nonce: int, amount: int = 5) -> Tx:
                return Tx.create(
                    key,
                    chain_id=node.genesis.chain_id,
                    contract="token",
                    method="transfer",
                    args={"to": to, "amount": amount},
                    nonce=nonce,
                    gas_limit=100_000,
                )

            first = tx(0)
            assert await _resolve(node.submit(first)) == first.hash
            with pytest.raises(AccordError) as dup:
                await _resolve(node.submit(first))
            forged = replace(tx(2), signature=bytes(64))
            wrong_chain = Tx.create(
                key,
                chain_id="another-chain",
                contract="token",
                method="transfer",
                args={"to": to, "amount": 1},
                nonce=1,
                gas_limit=100_000,
            )
            good = tx(1)
            results = await _resolve(
                node.submit_batch([good.encode(), good, forged, wrong_chain, b"\x00garbage"])
            )
            assert len(results) == 5
            assert results[0] == good.hash
            codes = [r.code if isinstance(r, AccordError) else "ok" for r in results]
            balance = node.query("token", "balance_of", {"account": key.address})
            return {"dup": dup.value.code, "codes": codes, "balance_type": type(balance).__name__}

    return_value = asyncio.run(main())
    # the same answers from both implementations
    assert return_value == {
        "dup": "duplicate_tx",
        "codes": ["ok", "duplicate_tx", "invalid_signature", "wrong_chain", "trailing_bytes"],
        "balance_type": "int",
    }
