"""Opening a validator's ledger at start: its store, its application and its mempool, checked.

The node drives its ledger only as an :class:`~accord.ledger.application.Application`; this is
where the node layer builds one, on the store of its data folder: by default the
:class:`~accord.ledger.chain.Chain` on the contracts runtime with the node's hooks, or another
application the host passes (``Node(application=...)``).

Rules kept, in the order they are applied:

* **A snapshot import a crash cut off is dropped** before any application sees the store
  (it would have no head); the application then starts over from genesis.
* **A restored folder's marker is read before anything can vote** (the double-sign guard
  holds until its boundary passes; see :mod:`accord.node.doublesign`).
* **Nothing is served or signed from a damaged folder**: the head header, its certificate, the
  block and the state root must agree before the ledger is handed to the node; a damaged
  folder stops the start here, saying what is wrong and how to repair it.
* **What is opened here is closed here if the opening fails**: the node gets all of it or
  nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.ledger.application import Application
from accord.ledger.mempool import Mempool
from accord.node.driver import now_ms
from accord.node.hooks import runtime_hooks
from accord.node.sets import certificate_check

if TYPE_CHECKING:
    from accord.node.node import Node
    from accord.storage import Store

log = logging.getLogger("accord.node")

OpenApplication = Callable[["Node", "Store"], Application]
"""Builds a node's application on its open store (``Node(application=...)``)."""


@dataclass(frozen=True)
class Ledger:
    store: Any  # accord.storage.Store
    chain: Application
    mempool: Mempool


def open_chain(node: Node, store: Store) -> Application:
    """The default application: the :class:`Chain` on the contracts runtime, with the hooks
    (proof verifier, MPC oracle) node.json configures."""
    from accord.contracts.runtime import Runtime
    from accord.ledger.chain import Chain

    hooks = runtime_hooks(
        node.genesis,
        node.config,
        node.home,
        name=node.name,
        allow_insecure_zk=node.allow_insecure_zk,
    )
    return Chain(node.genesis, store, Runtime(node.genesis, node.contracts, **hooks))


def open_ledger(node: Node, data: Path, application: OpenApplication | None = None) -> Ledger:
    """Open ``data``'s store and the node's application on it (see the module's rules)."""
    from accord.storage import Store
    from accord.storage.verify import StorageDamaged, check_head

    store = Store(data, sync=node.config.sync)
    try:
        height = store.installing()
        if height is not None:
            log.warning(
                "%s: dropping a state snapshot install of height %d that did not finish",
                node.name,
                height,
            )
            store.abort_install()
        node.double_sign.open(data, now_ms())  # a restored folder holds: no votes yet
        chain = (application or open_chain)(node, store)
        try:
            check_head(store, certificate_check(chain, node.genesis))  # the set of its height
        except StorageDamaged as e:
            raise StorageDamaged(
                f"{data}: {e.message}; run `accord node {node.home} --verify`, then restore "
                f"the folder from a backup or start from an empty data folder to catch up"
            ) from None
        mempool = Mempool(
            node.genesis.chain_id,
            chain.nonce_of,
            max_txs=node.config.mempool_size,
            max_gas=node.genesis.consensus.max_block_gas,
        )
    except BaseException:
        store.close()
        raise
    return Ledger(store, chain, mempool)
