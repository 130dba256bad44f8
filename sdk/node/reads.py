"""What a running node answers its host and its API: calls onto its loop, status, queries.

The mempool and the core belong to the node's event loop (they are not thread-safe), and a
host may call from any thread (a Flask handler, a node on a background thread), so every such
call is carried onto the loop (:func:`call_on_loop`). A query reads committed state through the
application, which checks every value against the state root; a damaged value halts the node
(it must not go on serving or signing from that store) and the caller gets the error, never a
wrong answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from accord.base.encoding import Value
from accord.base.errors import AccordError

if TYPE_CHECKING:
    from accord.node.node import Node

T = TypeVar("T")


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], T]) -> T:
    """``fn()`` run on ``loop``'s thread, from any thread (at once when already on it); an
    ``AccordError`` when the node has no loop (not running)."""
    if loop is None:
        raise AccordError("node is not running")
    try:
        if asyncio.get_running_loop() is loop:
            return fn()
    except RuntimeError:
        pass  # no loop on this thread: carry it over

    async def run() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(run(), loop).result()


def query(node: Node, contract: str, method: str, args: dict[str, Value]) -> Value:
    """A read-only contract call on committed state; a damaged value halts the node."""
    from accord.storage.verify import StorageDamaged

    if node.chain is None:
        raise AccordError("node is not running")
    try:
        return node.chain.query(contract, method, args)
    except StorageDamaged as e:
        node.fail(f"storage damaged: {e.message}")
        raise


def status(node: Node) -> dict[str, Any]:
    """The API's ``/v1/status`` (:data:`accord.node.api.STATUS_KEYS`), JSON-able."""
    head = node.store.head() if node.store is not None else None
    core = node.core
    return {
        "name": node.name,
        "index": node.index,
        "chain_id": node.genesis.chain_id,
        "height": head[0] if head else 0,
        "head_hash": head[1].hex() if head else "",
        "round": core.status().round if core is not None else -1,
        "peers": node.transport.peers() if node.transport is not None else [],
        "mempool": len(node.mempool) if node.mempool is not None else 0,
        "running": node.running and node.fault is None,
        "healthy": node.healthy,
        "fault": node.fault or node.catchup.stranded,
        "holding": node.double_sign.holding,
    }
