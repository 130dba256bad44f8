"""The chain worker: one validator's builds, validations and commits, on one thread.

The core asks its driver for slow work (``BuildBlock``, ``ValidateBlock``) and for commits;
the node hands them to a :class:`ChainWorker`, which runs them against the
:class:`~accord.ledger.application.Application` and answers the core with ``BlockBuilt`` and
``BlockValidated`` events. Which job runs next is decided by the scheduling policy the simulator
runs too (:class:`accord.consensus.jobs.ChainJobs`); how big a block is cut is decided by
:class:`accord.ledger.sizing.GasModel`, a small sans-I/O cost model with a property test of its
own, which the simulator cuts its blocks with too.

Rules this module keeps:

* **One chain thread, FIFO.** Every operation on the application (build, validate, commit,
  and the node's state sync and pruning through :meth:`ChainWorker.run`) runs on one worker
  thread, one at a time, in the order requested: a build requested right after a commit
  always sees that commit, and the event loop stays free to move votes while a 5,000-tx block
  executes.
* **Stale work is skipped, never done late.** A build whose round the core has left is dropped
  before it takes transactions from the mempool; a build whose round gets a better proposal
  while it executes is stopped part-way (``CancelBuild``); validations of committed heights
  are dropped (all three by :mod:`accord.consensus.jobs`, or here for the stop).
* **The vote's clock is local, the commit's is not.** A proposal's time is judged against this
  validator's clock when it is validated for a vote (a block stamped years ahead is refused;
  one a little ahead is judged again when the clock catches up); a certified block is committed
  whatever its time, so execution of an agreed block never depends on a local clock.
* **Blocks are cut by measured cost.** Execution time per unit of gas is measured here, under
  this machine's load, and a block is cut so that executing it takes ``build_budget`` of a
  round (see :meth:`GasModel.block_gas`).
* The worker touches the mempool and the core's callbacks only on the event loop's thread; the
  chain thread sees only the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from accord.base.genesis import ConsensusParams
from accord.base.metrics import Registry
from accord.base.types import Block, Certificate, Receipt
from accord.consensus import BlockBuilt, BlockValidated, BuildBlock, Status
from accord.consensus.jobs import ChainJobs
from accord.ledger.application import (
    Application,
    ExecutionInterrupted,
    InvalidProposal,
    MissingContractCode,
)
from accord.ledger.blocktime import ahead_of_clock_ms
from accord.ledger.mempool import Mempool
from accord.ledger.sizing import GasModel

log = logging.getLogger("accord.node")

T = TypeVar("T")

RETRY_AHEAD_MS_ROUNDS = 2
"""A proposal stamped ahead of this validator's clock by at most this many rounds (past the
drift tolerance) is judged again once the clock has caught up, instead of refused for the
height; further ahead, it is refused."""


class NotNext(Exception):
    """A commit for a height above the application's next one (an earlier commit failed)."""


def take_bytes(max_block_bytes: int) -> int:
    """Transaction bytes to take from the mempool for a block of at most ``max_block_bytes``:
    64 KiB less, kept for the header and framing, or half of a small limit (governance may
    set 1 KiB: a fixed 64 KiB margin would take nothing, and the chain would make only empty
    blocks). The chain cuts the block to the exact limit whatever is taken."""
    return max_block_bytes - min(64 * 1024, max_block_bytes // 2)


class ChainWorker:
    """Runs one validator's chain jobs (see the module docstring for the rules).

    The node supplies what the worker may know of the rest: ``status`` (the core's snapshot,
    None while the node does not take part: stopped, halted or installing a snapshot),
    ``deliver`` (feeds ``BlockBuilt``/``BlockValidated`` to the core), ``now_ms`` (the local
    clock), ``known_good`` / ``note_verified`` (the admission's cache of checked signatures,
    so no signature is checked twice) and ``remember`` (blocks kept to serve catch-up).
    """

    def __init__(
        self,
        name: str,
        params: ConsensusParams,
        metrics: Registry,
        *,
        status: Callable[[], Status | None],
        deliver: Callable[[BlockBuilt | BlockValidated], None],
        now_ms: Callable[[], int],
        known_good: Callable[[bytes], bool],
        note_verified: Callable[[Iterable[bytes]], None],
        remember: Callable[[Block], None],
        build_budget: float = 0.25,
    ) -> None:
        self.name = name
        self.params = params
        self.gas = GasModel(
            params.round_ms, params.max_block_gas, params.max_block_txs, build_budget
        )
        self.jobs = ChainJobs(params.round_ms / 1000)
        """Builds and validations waiting for the chain thread, in the shared policy's order."""
        self._status, self._deliver, self._now_ms = status, deliver, now_ms
        self._known_good, self._note_verified, self._remember = known_good, note_verified, remember
        self.app: Application | None = None
        self.mempool: Mempool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock: asyncio.Lock | None = None
        self._wake = asyncio.Event()
        self._working = False
        self._task: asyncio.Future[None] | None = None
        # The build in progress: (height, round, stop flag), and the last (height, round) the
        # core sent CancelBuild for; cancel() sets the flag, or _build sets it at once if the
        # cancel came first (while the build waited for the thread).
        self.commits_waiting = 0
        """Commits asked for and not finished (the one returning is no longer counted)."""
        self._building: tuple[int, int, threading.Event] | None = None
        self._cancelled: tuple[int, int] | None = None
        self._define_metrics(metrics)

    def follow(self, params: ConsensusParams) -> None:
        """The consensus parameters of the next height (governance changed them): blocks are
        cut to their limits and rounds from then on. What the learnt costs say is kept."""
        self.params = params
        gas = self.gas
        gas.round_ms, gas.max_block_gas, gas.max_block_txs = (
            params.round_ms,
            params.max_block_gas,
            params.max_block_txs,
        )
        self.jobs.round_s = params.round_ms / 1000

    def _define_metrics(self, m: Registry) -> None:
        self.m_invalid = m.counter(
            "accord_invalid_proposals_total", "proposed blocks that failed validation"
        )
        self.m_time_retry = m.counter(
            "accord_proposals_time_retried_total",
            "proposals a little ahead of this clock, judged again once it caught up",
        )
        self.m_commit_s = m.histogram("accord_commit_seconds", "time to commit one block")
        self.m_chain_op = m.histogram(
            "accord_chain_op_seconds",
            "chain thread work per operation (build, validate, commit)",
            ["op"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.m_chain_wait = m.histogram(
            "accord_chain_wait_seconds",
            "time a chain operation waited for earlier ones",
            ["op"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.m_stale_builds = m.counter(
            "accord_stale_builds_total", "builds skipped: the round had moved on"
        )
        self.m_stopped_builds = m.counter(
            "accord_stopped_builds_total",
            "builds abandoned part-way: a better proposal of the round arrived",
        )
        self.m_tx_cost = m.gauge(
            "accord_tx_exec_seconds", "measured execution cost per transaction (moving average)"
        )
        self.m_gas_cost = m.gauge(
            "accord_gas_exec_seconds", "measured execution cost per unit of gas (moving average)"
        )

    # --- lifecycle ----------------------------------------------------------------------

    def open(self, app: Application, mempool: Mempool, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.mempool, self._loop = app, mempool, loop
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chain-{self.name}")

    async def close(self) -> None:
        """Drop waiting jobs, let the operation in flight finish (LMDB stays consistent),
        stop the thread."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.jobs.clear()
        if self._lock is not None:
            async with self._lock:
                pass
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the thread after its current operation (for a start that failed part-way)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def clear(self) -> None:
        """Forget the waiting jobs (a halt: nothing learned survives it)."""
        self.jobs.clear()

    # --- requests from the core -----------------------------------------------------------

    def build(self, action: BuildBlock) -> None:
        self.jobs.build(action)
        self._wake_up()

    def validate(self, block: Block) -> None:
        assert self._loop is not None
        self.jobs.validate(block, self._loop.time())
        self._wake_up()

    def cancel(self, height: int, round: int) -> None:
        """A better proposal of (height, round) is here: our block could not win; stop it."""
        self._cancelled = (height, round)
        building = self._building
        if building is not None and building[:2] == self._cancelled:
            building[2].set()

    async def run(self, fn: Callable[[], T], op: str = "other") -> T:
        """Run ``fn`` on the chain thread, after every earlier operation (FIFO)."""
        assert self._lock is not None and self._loop is not None
        t0 = time.monotonic()
        async with self._lock:
            t1 = time.monotonic()
            try:
                return await self._loop.run_in_executor(self._executor, fn)
            finally:
                self._observe_op(op, t0, t1)

    @property
    def busy(self) -> bool:
        """Whether an operation runs on (or holds) the chain thread right now."""
        return self._lock is not None and self._lock.locked()

    async def barrier(self) -> None:
        """Return once every operation requested before this call has finished."""
        assert self._lock is not None
        async with self._lock:
            pass

    async def commit(self, block: Block, cert: Certificate) -> list[Receipt] | None:
        """Apply a decided block, after earlier operations; None if it is committed already.

        A committed block this node never validated (validation is lazy: the quorum may form
        on a proposal it did not need) is executed here; signatures it already knows need no
        second check. Raises ``NotNext`` for a height above the next one, and what the
        application raises (``StateRootMismatch``, ``StorageError``, ``InvalidProposal``) for
        the node to judge."""
        app = self.app
        assert app is not None
        known = self._known_good
        verified = frozenset(t.hash for t in block.txs if known(t.hash))
        t0 = time.monotonic()
        self.commits_waiting += 1

        def commit() -> list[Receipt] | None:
            height, _ = app.head()
            if block.height <= height:
                return None  # already committed (e.g. through catch-up)
            if block.height > height + 1:
                raise NotNext(f"block {block.height} is not next after {height}")
            with contextlib.suppress(InvalidProposal):  # commit() below raises it again
                app.validate(block, verified=verified)  # a cached result if validated before
            return app.commit(block, cert)

        try:
            receipts = await self.run(commit, "commit")
        finally:
            self.commits_waiting -= 1
        if receipts is not None:
            self.m_commit_s.observe(time.monotonic() - t0)
        return receipts

    # --- the job loop -------------------------------------------------------------------

    def _wake_up(self) -> None:
        self._wake.set()
        if not self._working:
            self._working = True
            self._task = asyncio.ensure_future(self._loop_jobs())
            self._task.add_done_callback(_log_failure)

    async def _loop_jobs(self) -> None:
        """Run the jobs one at a time, each the one the shared policy picks when the thread
        is free (builds first if still current, then the newest round's best ticket)."""
        jobs = self.jobs
        try:
            while self.app is not None and self._loop is not None:
                st = self._status()
                if st is None:
                    return
                stale = jobs.stale_builds
                job, wait = jobs.next(
                    committed=self.app.head()[0],
                    height=st.height,
                    round=st.round,
                    now=self._loop.time(),
                )
                if jobs.stale_builds > stale:
                    self.m_stale_builds.inc(jobs.stale_builds - stale)
                if isinstance(job, BuildBlock):
                    await self._build(job)
                    continue
                if job is not None:
                    await self._validate(job)
                    continue
                if wait is None:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            self._working = False

    async def _build(self, a: BuildBlock) -> None:
        app, mempool = self.app, self.mempool
        assert app is not None and mempool is not None
        assert self._lock is not None and self._loop is not None
        t0 = time.monotonic()
        async with self._lock:  # take txs only after earlier commits have landed
            t1 = time.monotonic()
            if app.head() != (a.height - 1, a.parent_hash):
                return  # the head moved on: this build is stale
            st = self._status()
            if st is None or st.round != a.round:
                self.m_stale_builds.inc()
                return  # the round moved on: the core would drop the block; leave the txs pooled
            gas_budget = self.gas.block_gas()
            txs = mempool.take(self.gas.take_count(), take_bytes(self.params.max_block_bytes))
            verified = frozenset(t.hash for t in txs)
            # A leader that stood back for a better ticket builds after all when that
            # leader's proposal is late; if it lands while we build, our block cannot win and
            # the build only delays validating the better one: stop it (nothing is written).
            stop = threading.Event()
            if self._cancelled == (a.height, a.round):
                stop.set()  # cancelled while waiting for the chain lock
            self._building = (a.height, a.round, stop)
            try:
                block = await self._loop.run_in_executor(
                    self._executor,
                    lambda: app.build(
                        txs,
                        round=a.round,
                        proposer=a.proposer_index,
                        time_ms=self._now_ms(),
                        sortition=a.sortition,
                        verified=verified,
                        interrupt=stop.is_set,
                        gas_budget=gas_budget,
                    ),
                )
            except ExecutionInterrupted:
                self.m_stopped_builds.inc()
                return
            except MissingContractCode:
                # No block from this node at a height whose contract code it lacks (the
                # chain logged what to install); the certified block halts it at commit.
                return
            finally:
                self._building = None
            self._observe_op("build", t0, t1)
            gas = app.executed_gas(block.hash)
            if gas is not None:
                self._observe_cost(time.monotonic() - t1, block.header.tx_count, gas)
        self.jobs.found_valid(block)  # our own block is valid by construction
        self._remember(block)
        self._deliver(BlockBuilt(block))

    async def _validate(self, block: Block) -> None:
        app = self.app
        assert app is not None
        known = self._known_good
        verified = frozenset(t.hash for t in block.txs if known(t.hash))
        drift_ms = self.params.time_drift()

        def check() -> tuple[bool, float, int, int]:
            t = time.monotonic()
            # The block's time is judged against this validator's clock when it votes; a
            # certified block is committed whatever its time (see commit: no clock there).
            now_ms = self._now_ms()
            try:
                if app.executed_gas(block.hash) is not None:
                    app.check_time(block.header, now_ms)
                    return True, 0.0, 0, 0  # executed before: nothing to measure
                ex = app.validate(block, verified=verified, now_ms=now_ms)
                return True, time.monotonic() - t, ex.gas_used, 0
            except InvalidProposal as e:
                wait = ahead_of_clock_ms(
                    time_ms=block.header.time_ms, now_ms=now_ms, drift_ms=drift_ms
                )
                log.info("%s: proposal %s refused: %s", self.name, block.hash.hex()[:12], e)
                return False, 0.0, 0, wait

        ok, seconds, gas, wait_ms = await self.run(check, "validate")
        if not ok and 0 < wait_ms <= RETRY_AHEAD_MS_ROUNDS * self.params.round_ms:
            # Only a little ahead of this clock: the core is not told "invalid" (it would
            # not ask again at this height, even once locked on the block); the block is
            # judged again when this clock has caught up.
            self.m_time_retry.inc()
            assert self._loop is not None
            self._loop.call_later((wait_ms + 1) / 1000, self._revalidate, block)
            return
        if ok:
            self._observe_cost(seconds, len(block.txs), gas)
            self._note_verified(t.hash for t in block.txs)
            self.jobs.found_valid(block)
        else:
            self.m_invalid.inc()
            banned = app.take_banned()  # a transaction that made validators disagree
            if banned and self.mempool is not None:
                self.mempool.evict(banned)
        self._deliver(BlockValidated(block.hash, ok))

    def _revalidate(self, block: Block) -> None:
        """Judge ``block`` again (its time was a little ahead of this clock), unless the
        height has moved on or the node no longer takes part."""
        if self.app is None or self._executor is None or self._status() is None:
            return
        if block.height == self.app.head()[0] + 1:
            self.validate(block)

    # --- measurements ---------------------------------------------------------------------

    def _observe_cost(self, seconds: float, txs: int, gas: int) -> None:
        if self.gas.observe(seconds, txs, gas):
            self.m_gas_cost.set(self.gas.cost)
            self.m_tx_cost.set(self.gas.cost * self.gas.tx_gas)

    def _observe_op(self, op: str, t0: float, t1: float) -> None:
        t2 = time.monotonic()
        self.m_chain_wait.observe(t1 - t0, op=op)
        self.m_chain_op.observe(t2 - t1, op=op)
        if t2 - t0 > 0.5:
            log.info("%s: slow %s: waited %.3f s, ran %.3f s", self.name, op, t1 - t0, t2 - t1)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("chain worker failed", exc_info=task.exception())
