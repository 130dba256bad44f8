"""The core's driver: feeds one validator's Gosig core its events and carries out the actions
it returns, as etcd's ``node.go`` runs a ``RawNode`` for its server.

The core (:mod:`accord.consensus.state`) is a sans-I/O state machine; everything it cannot do
itself happens here, by handing each action to the part of the node whose job it is: votes to
the transport, ``Persist`` to the store, builds and validations to the chain worker, commits to
the worker and then to the node's bookkeeping, fetches to catch-up.

Rules this module keeps:

* **In order, persist first.** Actions run in the order the core returns them, and a
  ``Persist`` is durably written (synchronously) before the next action of its batch runs: a
  vote never leaves the node before it is on disk, so a restart cannot vote twice.
* **Time when the core needs it.** Ticks reach the core when it next needs them
  (``Core.next_wakeup_ms``: stage II, the next round, a ticket wait, a gossip or resend timer)
  rather than on a fixed beat, and lazily before any other event once ``tick_ms`` has passed
  (the core judges lateness by its clock). An idle validator wakes about ten times a second.
* **Nothing reaches the core while it must not act**: the node stopped or halted, a snapshot
  may be installed (:mod:`accord.node.statesync`), or a restored folder holds (certified blocks
  only, :mod:`accord.node.doublesign`).
* **A certified block that does not apply is a fault or a lie, never a retry loop.** Damaged
  state halts the node; a body that does not match its certified header rebuilds the core from
  the store and fetches the block again from another peer.
* The core is touched only on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from accord.base.errors import AccordError, StorageError
from accord.base.types import Block, Certificate
from accord.consensus import (
    SAFETY_KEY,
    BlockFetched,
    BlsSigner,
    Broadcast,
    BuildBlock,
    CancelBuild,
    Commit,
    Core,
    FetchBlock,
    MessageReceived,
    Persist,
    SafetyState,
    Send,
    Status,
    Tick,
    TxsPending,
    ValidateBlock,
)
from accord.ledger.application import StateRootMismatch
from accord.net.frames import Kind
from accord.node.worker import NotNext

if TYPE_CHECKING:
    from accord.node.node import Node

log = logging.getLogger("accord.node")

MIN_TICK_MS = 1
"""Ticks are at least this far apart (the core ignores a tick that does not advance its clock)."""
MAX_TICK_MS = 1_000
"""The core is ticked at least this often, whatever it says it waits for."""


def now_ms() -> int:
    return int(time.time() * 1000)


class CoreDriver:
    """Runs ``node``'s core (see the module docstring for the rules)."""

    def __init__(self, node: Node, secret: bytes, tick_ms: int) -> None:
        self.node = node
        self._secret = secret
        self.tick_ms = tick_ms
        """At most this stale is the core's clock when a message reaches it."""
        self.core: Core | None = None
        self._last_tick_ms = 0
        self._tick_handle: asyncio.TimerHandle | None = None

    # --- the core's life ------------------------------------------------------------------

    def restart(self) -> None:
        """A core at the store's head with the persisted safety state, ticked at once: at
        start, after a state-sync install, after a restored folder's hold ends, and after a
        certified body failed to apply (what a restart does, without the process)."""
        node = self.node
        assert node.chain is not None and node.mempool is not None and node.store is not None
        height, head_hash = node.chain.head()
        raw = node.store.get_safety(SAFETY_KEY)
        safety = SafetyState.decode(raw, node.genesis.n) if raw is not None else None
        self.core = Core.from_genesis(
            node.genesis,
            BlsSigner(node.index, self._secret),
            head=(height, head_hash),
            head_cert=node.store.get_certificate(height),
            head_sortition=self._head_sortition(height),
            safety=safety,
            tx_cache=node.mempool.get,
        )
        node.meters.height.set(height)
        if node.running:
            self.tick()

    def _head_sortition(self, height: int) -> bytes:
        """The sortition ticket of the block at ``height`` (empty at genesis): the next
        height's lottery seed comes from it (see :mod:`accord.consensus.sortition`)."""
        if height == 0:
            return b""
        header = self.node.store.get_header(height)
        if header is None:
            raise StorageError(f"the head header at height {height} is missing")
        return bytes(header.sortition)

    def stop(self) -> None:
        """No more ticks (a stop or a halt)."""
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def forget(self) -> None:
        """Drop the core (a start that failed part-way)."""
        self.stop()
        self.core = None

    def status(self) -> Status | None:
        """The core's snapshot while the node takes part (running, healthy), else None."""
        node = self.node
        if not node.running or self.core is None or node.fault is not None:
            return None
        return self.core.status()

    # --- events in ------------------------------------------------------------------------

    def step(self, event: Any) -> None:
        """Feed one event to the core and perform its actions in order."""
        node, core = self.node, self.core
        if not node.running or core is None or node.fault is not None:
            return
        if node.ops.syncing or (node.ops.deciding and isinstance(event, MessageReceived)):
            return  # see accord.node.statesync: the core waits while a snapshot may be installed
        if node.double_sign.holding and not isinstance(event, BlockFetched):
            return  # restored, not caught up: certified blocks only (accord.node.doublesign)
        if not isinstance(event, Tick) and now_ms() - self._last_tick_ms >= self.tick_ms:
            self.tick()
        self.sync_pending()  # commits empty the mempool; the core must know before it leads
        for action in core.handle(event):
            self._perform(action)
        self.arm()

    def tick(self) -> None:
        self._last_tick_ms = now = now_ms()
        self.step(Tick(now))

    def _on_timer(self) -> None:
        self._tick_handle = None
        self.tick()

    def arm(self) -> None:
        """Set the timer for the core's next wakeup, unless one is set for no later."""
        core, loop = self.core, self.node._loop
        if core is None or loop is None or not self.node.running:
            return
        wait_ms = min(max(core.next_wakeup_ms() - now_ms(), MIN_TICK_MS), MAX_TICK_MS)
        when = loop.time() + wait_ms / 1000
        handle = self._tick_handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._tick_handle = loop.call_at(when, self._on_timer)

    def sync_pending(self) -> None:
        """With ``skip_empty_blocks``, tell the core whether the mempool holds transactions
        whenever that changes (a leader proposes only then): at once after admissions, so a
        transaction on an idle chain gets the current round's stage I if there is time."""
        node, core = self.node, self.core
        if (
            core is None
            or node.mempool is None
            or not core.p.skip_empty
            or not node.running
            or node.fault is not None
            or node.double_sign.holding
        ):
            return
        pending = len(node.mempool) > 0
        if pending != core.status().txs_pending:
            for action in core.handle(TxsPending(pending)):
                self._perform(action)
            self.arm()

    # --- actions out ----------------------------------------------------------------------

    def _perform(self, action: Any) -> None:
        node = self.node
        assert node.transport is not None
        if isinstance(action, Persist):
            node.store.put_safety(action.key, action.value)  # synced before the next action
        elif isinstance(action, Broadcast):
            node.transport.broadcast(Kind.CONSENSUS, action.payload)
        elif isinstance(action, Send):
            node.transport.send(action.to_index, Kind.CONSENSUS, action.payload)
        elif isinstance(action, BuildBlock):
            node.worker.build(action)
        elif isinstance(action, ValidateBlock):
            node.catchup.remember(action.block)
            node.worker.validate(action.block)
        elif isinstance(action, CancelBuild):
            node.worker.cancel(action.height, action.round)
        elif isinstance(action, Commit):
            spawn(self._commit(action.block, action.certificate))
        elif isinstance(action, FetchBlock):
            spawn(node.catchup.fetch(action.from_index, ["hash", action.block_hash]))
        else:  # pragma: no cover - the core's action set is closed
            log.error("unknown action %r", action)

    async def _commit(self, block: Block, cert: Certificate) -> None:
        node, core = self.node, self.core
        assert core is not None
        guard = node.double_sign
        fault = guard.check(cert, core.status(), node.store)  # may adopt
        if fault is None and guard.holding:
            fault = guard.check_clock(block.header.time_ms, now_ms(), node.catchup.peer_clocks())
        if fault is not None:
            node.fail(fault)
            return
        try:
            receipts = await node.worker.commit(block, cert)
        except NotNext:
            return  # an earlier commit failed and the core was reset: it commits this again
        except StateRootMismatch as e:
            # The transactions and receipts match the certified header (the tx root checks
            # out), so the body is the genuine one; executing it gave another state: this
            # node's state is damaged (or it runs other code). Asking peers again cannot help.
            node.fail(
                f"block {block.height} carries a valid certificate but does not apply here: {e}"
            )
            return
        except StorageError as e:
            node.fail(f"storage error while committing block {block.height}: {e}")
            return
        except AccordError as e:
            self._bad_body(block, e)
            return
        if receipts is None:
            return
        node.committed(block, receipts)
        # A restored folder's hold ends with the network's newest block, proposed after the
        # original stopped, and peers' clocks that vouch for this one (accord.node.doublesign);
        # not while more commits wait: the core restarts at the head.
        if guard.holding and not node.worker.commits_waiting:
            clocks, now = node.catchup.peer_clocks(), now_ms()
            heads = node.catchup.peer_heads
            if guard.ends_hold(block.header.round, block.height, heads, clocks, now):
                guard.release(node.store, now, clocks)
                self.restart()

    def _bad_body(self, block: Block, error: AccordError) -> None:
        """A certified block did not apply: its header is genuine (the core checked the
        certificate) but the body is not the one the validators executed, since a block's
        hash covers only its header and whoever sent the body put other transactions under
        it. The core has moved past that height, so it is rebuilt from the store (same
        persisted safety state, head at the last block that applied), and catch-up fetches
        the block again, from another peer than the one that sent it."""
        node = self.node
        source = node.catchup.bad_body(block)
        node.meters.bad_msgs.inc(kind="block_body")
        log.error(
            "%s: block %d (%s) has a certificate but its body does not apply (%s)%s; fetching it again",
            node.name,
            block.height,
            block.hash.hex()[:16],
            error,
            "" if source is None else f", sent by validator {source}",
        )
        self.restart()
        node.catchup.maybe_sync()


def spawn(coro: Awaitable[None]) -> None:
    """Run ``coro`` as a task whose failure is logged, never lost."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_task_done)


def _task_done(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("node task failed", exc_info=task.exception())
