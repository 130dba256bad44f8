"""A real single-validator ledger serving the client API, for the API and client tests.

``LocalNode`` implements :class:`accord.node.api.NodeView` with the real parts: an LMDB
``Store``, the contract ``Runtime``, the ``Chain`` and the ``Mempool``. It commits blocks
itself (one validator, so its own BLS signature is a full certificate). ``ServedNode`` runs it
with the API on a background event loop, so tests can use the blocking ``accord.Client`` as
well as raw HTTP and the ``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.encoding import Value
from accord.base.errors import AccordError
from accord.base.genesis import Genesis
from accord.base.metrics import Registry
from accord.base.types import Block, Certificate, Receipt, Tx, bitmap_from, vote_message
from accord.contracts.runtime import Runtime
from accord.ledger.chain import Chain
from accord.ledger.mempool import Mempool
from accord.node.api import ApiConfig, ApiServer
from accord.node.config import builtin_contract_entries
from accord.node.sets import SetSizes
from accord.storage import Store

from .genesis import make_genesis

T = TypeVar("T")

ALICE = AccountKey.from_name("api-alice")
BOB = AccountKey.from_name("api-bob")
START_BALANCE = 1_000_000


def api_genesis() -> Genesis:
    return make_genesis(
        1,
        chain_id="accord-api-test",
        balances={ALICE.address.hex(): START_BALANCE, BOB.address.hex(): START_BALANCE},
        contracts=builtin_contract_entries(),
    )


class _Subscription:
    """Registered on creation (so nothing committed after ``subscribe()`` is missed)."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.queue: asyncio.Queue[tuple[Block, list[Receipt]]] = asyncio.Queue(maxsize=1000)
        node._subs.append(self)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> tuple[Block, list[Receipt]]:
        return await self.queue.get()

    async def aclose(self) -> None:
        if self in self.node._subs:
            self.node._subs.remove(self)


class LocalNode:
    """One validator that is its own quorum. Call its methods on its event loop only."""

    def __init__(self, path: Path, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or api_genesis()
        self.secret = bls.demo_secret("v0")
        self.store = Store(path, sync=False)
        self.runtime = Runtime(self.genesis)
        self.chain = Chain(self.genesis, self.store, self.runtime)
        self._set_sizes = SetSizes(self.genesis, lambda: self.chain)  # as the node reads it
        self.mempool = Mempool(self.genesis.chain_id, self.chain.nonce_of)
        self.metrics = Registry()
        self._subs: list[_Subscription] = []
        self._time_ms = 1_000

    # --- NodeView ------------------------------------------------------------------------

    def submit(self, tx: Tx) -> bytes:
        return self.mempool.add(tx)

    def submit_batch(self, items: list[Tx | bytes]) -> list[bytes | AccordError]:
        return self.mempool.add_many(items)

    def has_pending(self, tx_hash: bytes) -> bool:
        return self.mempool.contains(tx_hash)

    def status(self) -> dict[str, Any]:
        height, head = self.chain.head()
        return {
            "name": "v0",
            "index": 0,
            "chain_id": self.genesis.chain_id,
            "height": height,
            "head_hash": head.hex(),
            "round": -1,
            "peers": [],
            "mempool": len(self.mempool),
            "running": True,
            "healthy": True,
            "fault": None,
            "holding": False,
        }

    def subscribe(self) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        return _Subscription(self)

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        # As the real node asks: at the head's height and time (governance's "expired" and
        # "in force" depend on the height).
        return self.chain.query(contract, method, args)

    def set_size(self, height: int) -> int:
        sizes = self.__dict__.get("_set_sizes")  # subclasses that build their own chain too
        if sizes is None:
            sizes = self._set_sizes = SetSizes(self.genesis, lambda: self.chain)
        return int(sizes(height))

    # --- committing --------------------------------------------------------------------

    def commit_pending(self) -> Block:
        """Build a block of the pending transactions, certify it and commit it."""
        txs = self.mempool.take(5000, 8 * 1024 * 1024)
        self._time_ms += 1000
        block = self.chain.build(txs, time_ms=self._time_ms, verified=self.mempool.verified)
        cert = Certificate(
            height=block.height,
            round=0,
            phase=2,
            block_hash=block.hash,
            signers=bitmap_from([0], 1),
            signature=bls.sign(
                self.secret, vote_message(self.genesis.chain_id, block.height, 0, 2, block.hash)
            ),
        )
        receipts = self.chain.commit(block, cert)
        self.mempool.on_commit(block.txs)
        for sub in list(self._subs):
            sub.queue.put_nowait((block, receipts))
        return block

    def close(self) -> None:
        self.store.close()


class ServedNode:
    """A LocalNode and its API server on a private event loop thread."""

    def __init__(
        self, path: Path, config: ApiConfig | None = None, genesis: Genesis | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="api-test-loop", daemon=True
        )
        self._thread.start()
        self.node: LocalNode = self.call(lambda: LocalNode(path, genesis))
        self.server = ApiServer(self.node, config=config)
        self.run(self.server.start())
        self.url = self.server.url

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return self.run(wrap())

    def commit(self) -> Block:
        return self.call(self.node.commit_pending)

    def submit_direct(self, tx: Tx) -> bytes:
        return self.call(lambda: self.node.submit(tx))

    def head(self) -> tuple[int, bytes]:
        head = self.node.store.head()
        assert head is not None
        return head

    def mempool_size(self) -> int:
        return self.call(lambda: len(self.node.mempool))

    def close(self) -> None:
        self.run(self.server.stop())
        self.call(self.node.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def transfer(
    key: AccountKey, nonce: int, to: bytes, amount: int, chain_id: str = "accord-api-test"
) -> Tx:
    return Tx.create(
        key,
        chain_id=chain_id,
        contract="token",
        method="transfer",
        args={"to": to, "amount": amount},
        nonce=nonce,
    )


def http(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange (no client-side checks), for malformed-request tests."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
    try:
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def http_json(url: str, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
    import json

    body = None if doc is None else json.dumps(doc).encode()
    status, _, data = http(
        url, method, path, body, "application/json" if body is not None else None
    )
    return status, json.loads(data)
