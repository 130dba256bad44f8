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
* **One core per validator set** (rule 8 of :mod:`accord.consensus.state`). The core is built
  for the set of the height after the head (:mod:`accord.node.sets`) and told after each
  executed block how far that set is known to decide (``SetKnown``); when the set hands over,
  the next set's core is built at the head with the same persisted safety state. Peers are
  numbered by the set in the core and by genesis in the transport: messages from a validator
  outside the set are dropped. Outside the set, the node follows by certificates, each
  checked against the set of its height, and joins again at a height of a set it is in.
  Certified blocks beyond what the core may judge yet wait here (bounded), not in the core.
* **A commit is counted from the moment it is asked for** (``commits_pending``), not from when
  its task first runs: what waits for the last commit (a restored folder's release, the next
  set's core) must not run while one asked for has not started yet.
* The core is touched only on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from accord.base.errors import AccordError, StorageError
from accord.base.types import Block, Certificate, Receipt
from accord.consensus import (
    SAFETY_KEY,
    BlockFetched,
    BlsCrypto,
    BlsSigner,
    Broadcast,
    BuildBlock,
    CancelBuild,
    Commit,
    Core,
    FetchBlock,
    MessageReceived,
    Params,
    Persist,
    SafetyState,
    Send,
    SetKnown,
    Status,
    Tick,
    TxsPending,
    ValidateBlock,
    verify_certificate,
)
from accord.ledger.application import StateRootMismatch
from accord.net.frames import Kind
from accord.node.sets import SetView, governed, keys_at, known_through, quorum_of
from accord.node.worker import NotNext

if TYPE_CHECKING:
    from accord.node.node import Node

log = logging.getLogger("accord.node")

MIN_TICK_MS = 1
"""Ticks are at least this far apart (the core ignores a tick that does not advance its clock)."""
MAX_TICK_MS = 1_000
"""The core is ticked at least this often, whatever it says it waits for."""
LATER_WINDOW = 64
"""Certified blocks are held for heights the core's set is not known to decide yet only up to
this far above the head (catch-up asks for 16 at a time)."""
LATER_CANDIDATES = 3
"""Blocks held per height (a liar's cannot crowd out the genuine one for long)."""
MAX_LATER_BYTES = 64 * 1024 * 1024


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
        self.view: SetView | None = None
        """The set the core runs (None before start); ``view.me`` None: following."""
        self._later: dict[int, list[tuple[Block, Certificate]]] = {}
        self._later_bytes = 0
        self._governed = False  # the chain can change its set (it runs the governance contract)
        self.commits_pending = 0
        """Commits asked for (a ``Commit`` spawned) whose execution has not returned yet,
        started or not: the worker counts a commit only once its task runs, and a commit
        asked for while the last one returns starts after it (see _commit)."""

    def rekey(self, secret: bytes) -> None:
        """Cores built from now on sign with ``secret`` (see :meth:`Node.rekey`)."""
        self._secret = secret

    @property
    def following(self) -> bool:
        """Outside the validator set of the next height: following by certificates."""
        return self.view is not None and self.view.me is None

    # --- the core's life ------------------------------------------------------------------

    def restart(self) -> None:
        """A core at the store's head with the persisted safety state, ticked at once: at
        start, after a state-sync install, after a restored folder's hold ends, and after a
        certified body failed to apply (what a restart does, without the process)."""
        node = self.node
        assert node.chain is not None and node.mempool is not None and node.store is not None
        height, head_hash = node.chain.head()
        self._governed = governed(node.genesis)
        schedule = node.chain.scheduled(height + 1) if self._governed else None
        validators = tuple(node.genesis.validators) if schedule is None else schedule.validators
        node.rekey(validators)  # a rotation by vote in force from the next height
        view = SetView.of(validators, node.public_key, node.roster.index)
        node.roster.retire_rotated(validators)
        keys = view.keys
        if self.view is not None and view.keys != self.view.keys:
            log.warning(
                "%s: validator set of %d from height %d%s",
                node.name,
                len(keys),
                height + 1,
                "" if view.me is not None else ": not a member, following by certificates",
            )
        if (
            self.view is not None
            and view.keys != self.view.keys
            and node.double_sign.holding
            and node.double_sign.start_vouched
        ):
            # Caught up into another set while holding: its members vouch for the start
            # again (with its own f); the boundary only rises (ninth review).
            node.double_sign.start_vouched = False
        self.view = view
        if self._governed:
            node.double_sign.signer_at = self._signer_at
            node.follow_consensus()
        alone = node.double_sign.alone(len(keys), view.me is not None)
        if alone is not None:
            self.core = None
            node.fail(alone)
            return
        for h in [h for h in self._later if h <= height]:
            self._take_later(h)
        raw = node.store.get_safety(SAFETY_KEY)
        safety = (
            None
            if raw is None
            else SafetyState.decode(raw, lambda h: self._signer_at(h)[0])
            if self._governed
            else SafetyState.decode(raw, node.genesis.n)
        )
        if safety is not None and safety.lock is not None and safety.lock.height <= height:
            safety.lock, safety.lock_block = None, None  # of a decided height, maybe another set
        if view.me is None:
            self.core = None
            node.meters.height.set(height)
            return
        # The parameters of the height the core works on (rule 8: a change hands over to a
        # new core, as a change of the set does), its rounds counted from that height's anchor.
        params = (
            Params.from_genesis(node.genesis, n=len(keys))
            if schedule is None
            else Params.of(
                node.genesis,
                schedule.consensus,
                n=len(keys),
                genesis_time_ms=schedule.round_anchor_ms,
            )
        )
        through, final = (
            known_through(node.chain, node.genesis, height, (keys, params), after=height + 1)
            if self._governed
            else (None, False)
        )
        crypto = BlsCrypto(keys, checked=True)  # genesis and governance checked every PoP
        self.core = Core(
            params,
            BlsSigner(view.me, self._secret),
            crypto,
            head=(height, head_hash),
            head_cert=node.store.get_certificate(height),
            head_sortition=self._head_sortition(height),
            safety=safety,
            tx_cache=node.mempool.get,
            through=through,
        )
        if final and through is not None:
            self.core.handle(SetKnown(through, final=True))
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
        if not node.running or node.fault is not None:
            return
        if isinstance(event, MessageReceived):
            frm = None if self.view is None else self.view.from_transport.get(event.from_index)
            if frm is None:
                return  # not a validator of this set: nothing it says counts here
            event = MessageReceived(frm, event.payload)
        if isinstance(event, BlockFetched) and event.certificate is not None:
            through = None if core is None else core.status().through
            if core is None or (through is not None and event.block.height > through):
                self._hold_or_follow(event.block, event.certificate)
                return
        if core is None:
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
            node.transport.send(self._peer(action.to_index), Kind.CONSENSUS, action.payload)
        elif isinstance(action, BuildBlock):
            node.worker.build(action)
        elif isinstance(action, ValidateBlock):
            node.catchup.remember(action.block)
            node.worker.validate(action.block)
        elif isinstance(action, CancelBuild):
            node.worker.cancel(action.height, action.round)
        elif isinstance(action, Commit):
            self._spawn_commit(action.block, action.certificate)
        elif isinstance(action, FetchBlock):
            spawn(node.catchup.fetch(self._peer(action.from_index), ["hash", action.block_hash]))
        else:  # pragma: no cover - the core's action set is closed
            log.error("unknown action %r", action)

    def _spawn_commit(self, block: Block, cert: Certificate) -> None:
        """Commit ``block`` in a task of its own, counted from now (``commits_pending``)."""
        self.commits_pending += 1
        spawn(self._commit(block, cert))

    async def _commit(self, block: Block, cert: Certificate) -> None:
        """Judge, execute and settle one certified block; counted in ``commits_pending``
        from the moment it was asked for until its execution returned."""
        try:
            receipts = await self._execute(block, cert)
        finally:
            self.commits_pending -= 1
        node, guard = self.node, self.node.double_sign
        if receipts is not None:
            node.committed(block, receipts)
        elif (
            self.commits_pending
            or node.fault is not None
            or node.chain is None
            or node.chain.head()[0] < block.height
        ):
            return  # not committed (a halt, a bad body, an earlier failure), or more to come
        # else: committed already, and the last commit asked for: what an executed one
        # deferred to the last (the set handoff, the release) is done here, not dropped.
        self._after_executed()
        # A restored folder's hold ends with the network's newest block, proposed after the
        # original stopped, and peers' clocks that vouch for this one (accord.node.doublesign);
        # not while another commit is asked for, started or not: the core restarts at the
        # head, and a commit still to land would leave it below the store's head (the
        # release raced a commit the held core had asked for while this one returned).
        if guard.holding and not self.commits_pending and node.fault is None:
            self._end_hold(block)

    def _end_hold(self, last: Block) -> None:
        """Release a restored folder's hold if the head block ends it (see _commit); ``last``
        is the block whose commit returned last (the head, unless it was a duplicate)."""
        node, guard = self.node, self.node.double_sign
        assert node.chain is not None
        height = node.chain.head()[0]
        header = last.header if last.height == height else node.store.get_header(height)
        if header is None:
            return
        clocks, now = node.catchup.peer_clocks(), now_ms()
        if guard.ends_hold(header.round, height, node.catchup.peer_heads, clocks, now):
            try:
                guard.release(node.store, now, clocks, node.catchup.set_size())
            except AccordError as e:  # the record to close rounds in is damaged: see _execute
                node.fail(f"the safety record cannot be closed at the end of the hold: {e}")
                return
            self.restart()

    async def _execute(self, block: Block, cert: Certificate) -> list[Receipt] | None:
        """The double-sign and clock checks, then the execution on the chain thread: the
        receipts, or None if nothing was committed (a halt, a duplicate, a bad body)."""
        node, core = self.node, self.core
        guard = node.double_sign
        try:
            # Following (no core): the block's set does not hold our key, so no certificate
            # of it can carry a vote of ours (the check judges by the set of the height).
            fault = None if core is None else guard.check(cert, core.status(), node.store)
        except AccordError as e:
            # Adopting a vote reads and raises the safety record: one that fails its
            # checksum or does not decode must halt the node, not end this task with a
            # traceback while the core has moved past a block that never committed (the
            # node then stalled for good and still said it was healthy).
            fault = f"the safety record cannot be raised to block {block.height}: {e}"
        if fault is None and guard.holding:
            fault = guard.check_clock(
                block.header.time_ms, now_ms(), node.catchup.peer_clocks(), node.catchup.set_size()
            )
        if fault is not None:
            node.fail(fault)
            return None
        try:
            return await node.worker.commit(block, cert)
        except NotNext:
            return None  # an earlier commit failed and the core was reset: it commits this again
        except StateRootMismatch as e:
            # The transactions and receipts match the certified header (the tx root checks
            # out), so the body is the genuine one; executing it gave another state: this
            # node's state is damaged (or it runs other code). Asking peers again cannot help.
            node.fail(
                f"block {block.height} carries a valid certificate but does not apply here: {e}"
            )
            return None
        except StorageError as e:
            node.fail(f"storage error while committing block {block.height}: {e}")
            return None
        except AccordError as e:
            self._bad_body(block, e)
            return None

    # --- validator sets -----------------------------------------------------------------

    def _signer_at(self, height: int) -> tuple[int, int | None]:
        node = self.node
        assert node.chain is not None
        keys = keys_at(node.chain, node.genesis, height)
        own = node.public_key
        return len(keys), keys.index(own) if own in keys else None

    def _peer(self, index: int) -> int:
        """A core's index of a peer, as the transport's."""
        view = self.view
        return index if view is None else view.to_transport[index]

    def _after_executed(self) -> None:
        """A block was executed: tell the core how far its set is known now, build the next
        set's core once it handed over, and give the core the held blocks it may judge."""
        node, core = self.node, self.core
        if not self._governed or node.chain is None or node.fault is not None:
            return
        head, _ = node.chain.head()
        node.follow_consensus()  # what the next block may hold, what frames must carry
        if core is None:
            if keys_at(node.chain, node.genesis, head + 1) != (self.view.keys if self.view else ()):
                self.restart()  # the set changes: a member again, maybe
            self._release_later()
            return
        st = core.status()
        if st.through is not None and not st.done:
            # After every executed block, commits waiting or not: the sets through head + 2
            # are final, and each of those heights is looked at (sets.known_through).
            assert self.view is not None
            through, final = known_through(
                node.chain, node.genesis, head, (self.view.keys, core.p), after=st.through
            )
            if through > st.through or final:
                for action in core.handle(SetKnown(through, final)):
                    self._perform(action)
                self.arm()
        if self.commits_pending:
            return  # the next set's core is built at the head once the last commit landed
        st = core.status()
        if st.done and head == st.height - 1:
            self.restart()
        self._release_later()

    def _hold_or_follow(self, block: Block, cert: Certificate) -> None:
        """A certified block the core may not judge yet (beyond its set's known heights), or
        one for a node outside the set: held until its set is known, then checked against it.

        Whatever a peer sends is bounded and never crowds out a genuine block (review
        findings: forged blocks held first made a follower drop the genuine ones; 512 blocks
        at any height could be held, 4 GiB at 8 MiB each): a block whose set is final already
        (up to head + 2) is checked on arrival; later ones are held only within the heights a
        catch-up request could bring, several candidates a height, in a byte budget."""
        node = self.node
        assert node.chain is not None
        head, _ = node.chain.head()
        if not head < block.height <= head + LATER_WINDOW:
            return
        if block.height <= head + 2 and not self._certified(block, cert):
            return
        held = self._later.setdefault(block.height, [])
        size = len(block.encode())
        if (
            any(b.hash == block.hash and c == cert for b, c in held)  # a bad certificate
            # may come with the genuine block: its good one must still be held
            or len(held) >= LATER_CANDIDATES
            or self._later_bytes + size > MAX_LATER_BYTES
        ):
            if not held:
                del self._later[block.height]
            return
        held.append((block, cert))
        self._later_bytes += size
        self._release_later()

    def _certified(self, block: Block, cert: Certificate) -> bool:
        """``cert`` certifies ``block`` with a quorum of the set of its height (final there)."""
        node = self.node
        assert node.chain is not None
        keys = keys_at(node.chain, node.genesis, block.height)
        try:
            if cert.block_hash != block.hash or cert.height != block.height:
                raise AccordError("the certificate is not this block's")
            verify_certificate(list(keys), node.genesis.chain_id, cert, quorum_of(len(keys)))
            return True
        except AccordError as e:
            node.meters.bad_msgs.inc(kind="certificate")
            log.info("%s: a certified block %d is refused: %s", node.name, block.height, e)
            return False

    def _take_later(self, height: int) -> list[tuple[Block, Certificate]]:
        held = self._later.pop(height, [])
        self._later_bytes -= sum(len(b.encode()) for b, _ in held)
        return held

    def _release_later(self) -> None:
        node, core = self.node, self.core
        if node.chain is None or not self._later:
            return
        head, _ = node.chain.head()
        for h in sorted(self._later):
            if h <= head:
                self._take_later(h)
                continue
            if core is not None:
                through = core.status().through
                if through is not None and h > through:
                    return
                for block, cert in self._take_later(h):
                    self.step(BlockFetched(block, cert))  # the core checks each certificate
                continue
            if h != head + 1 or self.commits_pending:
                return  # a follower applies in order, once the last one landed
            for block, cert in self._take_later(h):
                if self._certified(block, cert):
                    self._spawn_commit(block, cert)
                    break
            return

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
