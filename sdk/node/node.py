"""The embeddable validator: the one place that wires core, transport, storage and runtime.

A :class:`Node` runs inside its host application's asyncio loop (``await node.start()`` /
``await node.stop()``), or on a background thread of its own for synchronous hosts
(:meth:`Node.start_background`). It owns:

* the **chain** (store + runtime): builds, validates and commits blocks;
* the **mempool**: admitted transactions waiting for a block;
* the **Gosig core**: a sans-I/O state machine; the node feeds it events (ticks, messages,
  answers to its requests) and performs the actions it returns, in order;
* the **transport**: authenticated WebSockets to the other validators;
* the **client API** (HTTP + WebSocket) and the metrics registry.

Rules this module keeps:

* Actions run in the order the core returns them, and a ``Persist`` is durably written
  (synchronously) before the next action of its batch runs: a vote never leaves the node
  before it is on disk, so a restart cannot vote twice.
* Chain operations (build, validate, commit) run one at a time, in the order they were
  requested, on one worker thread (``_chain_op``): a build requested right after a commit
  always sees that commit, and the event loop stays free to move votes while a 5,000-tx block
  executes.
* The mempool and the core are touched only on the event loop's thread.
* The node wires; each part with a job of its own lives beside it: transaction admission
  (:mod:`accord.node.admission`: one FIFO for client batches and gossip, load shedding, the
  verify thread), catch-up (:mod:`accord.node.catchup`), state sync, snapshots and pruning
  (:mod:`accord.node.statesync`), and the order chain jobs run in
  (:mod:`accord.consensus.jobs`, the same code the simulator runs).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from accord.base.crypto import bls
from accord.base.encoding import Value
from accord.base.errors import (
    AccordError,
    DecodeError,
    StorageError,
    ValidationError,
)
from accord.base.genesis import Genesis
from accord.base.keys import load_validator_key
from accord.base.metrics import Registry
from accord.base.types import Block, Certificate, Event, Receipt, Tx
from accord.consensus import (
    SAFETY_KEY,
    BlockBuilt,
    BlockFetched,
    BlockValidated,
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
    Tick,
    TxsPending,
    ValidateBlock,
    verify_certificate,
)
from accord.consensus.jobs import ChainJobs
from accord.contracts.runtime import ExecutionInterrupted
from accord.ledger.blocktime import ahead_of_clock_ms
from accord.ledger.chain import Chain, InvalidProposal, StateRootMismatch
from accord.ledger.mempool import Mempool
from accord.net.frames import Kind
from accord.net.transport import NetConfig, Transport
from accord.node.admission import Admission
from accord.node.api import ApiConfig, ApiServer
from accord.node.catchup import CatchUp
from accord.node.config import NodeConfig
from accord.node.doublesign import DoubleSignGuard
from accord.node.statesync import NodeOps
from accord.storage.lock import FolderLock

log = logging.getLogger("accord.node")

T = TypeVar("T")

MIN_BLOCK_GAS = 250_000
"""Blocks are never cut below this much gas by the build budget (about 50 token transfers, or
one proof check): a cost estimate inflated by one pause must not shrink blocks to nothing."""

COST_SAMPLE_GAS = 250_000
"""Executions lighter than this are too short to measure the cost of gas by."""

MIN_TICK_MS = 1
"""Ticks are at least this far apart (the core ignores a tick that does not advance its clock)."""
RETRY_AHEAD_MS_ROUNDS = 2
"""A proposal stamped ahead of this validator's clock by at most this many rounds (past the
drift tolerance) is judged again once the clock has caught up, instead of refused for the
height; further ahead, it is refused."""

MAX_TICK_MS = 1_000
"""The core is ticked at least this often, whatever it says it waits for."""

TRANSFER_GAS = 5_000
"""About what a token transfer uses: the starting guess of gas per transaction."""


class Subscription:
    """Committed blocks with receipts, in order, for one subscriber.

    Registered when created (so nothing committed after ``subscribe()`` returns is missed).
    The queue is bounded: a subscriber that falls ``maxsize`` blocks behind loses the oldest
    ones (it can read them back from the store; the API's stream does exactly that).
    """

    def __init__(self, node: Node, maxsize: int = 256) -> None:
        self._node = node
        self._q: asyncio.Queue[tuple[Block, list[Receipt]] | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        node._subscribers.add(self)

    def _put(self, item: tuple[Block, list[Receipt]] | None) -> None:
        while True:
            try:
                self._q.put_nowait(item)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._q.get_nowait()
                    self.dropped += 1

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[Block, list[Receipt]]:
        item = await self._q.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._node._subscribers.discard(self)
        self._put(None)


class Node:
    """One validator. See the module docstring for what it wires and the rules it keeps."""

    def __init__(
        self,
        config: NodeConfig,
        genesis: Genesis,
        secret: bytes,
        home: str | Path = ".",
        *,
        api_config: ApiConfig | None = None,
        net_config: NetConfig | None = None,
        contracts: dict[str, Any] | None = None,
        addresses: dict[int, tuple[str, int]] | None = None,
        tick_ms: int = 20,
        status_interval: float = 1.0,
        build_budget: float = 0.25,
        backlog_rounds: int = 3,
        verify_off_loop: int = 32,
        allow_insecure_zk: bool | None = None,
    ) -> None:
        genesis.check()
        pk = bls.public_key(secret)
        keys = genesis.validator_keys()
        if pk not in keys:
            raise ValidationError("this validator key is not in genesis")
        self.index = keys.index(pk)
        self.name = genesis.validators[self.index].name
        self.config = config
        self.genesis = genesis
        self.home = Path(home)
        self.allow_insecure_zk = (
            config.allow_insecure_zk if allow_insecure_zk is None else allow_insecure_zk
        )
        """Start on one-machine ("insecure-dev") ZK keys: test and demo chains only."""
        self._secret = secret
        self._api_config = api_config
        self._net_config = net_config
        self._contracts = contracts
        self._addresses = addresses
        self.tick_ms = tick_ms
        """At most this stale is the core's clock when a message reaches it (see _tick)."""
        self._last_tick_ms = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self.status_interval = status_interval
        self.build_budget = build_budget
        self.admission = Admission(
            self, backlog_rounds=backlog_rounds, verify_off_loop=verify_off_loop
        )
        """Client submissions and gossip enter here (see :mod:`accord.node.admission`)."""
        # What execution costs here, measured as blocks run (see _block_gas): seconds per unit
        # of gas, and gas per transaction (to know how many to take from the mempool).
        self._gas_cost = 100e-6 / TRANSFER_GAS
        self._tx_gas = float(TRANSFER_GAS)
        self.metrics = Registry()
        self._define_metrics()
        self.store: Any = None
        self.chain: Chain | None = None
        self.mempool: Mempool | None = None
        self.core: Core | None = None
        self.transport: Transport | None = None
        self.api: ApiServer | None = None
        self._subscribers: set[Subscription] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._chain_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.catchup = CatchUp(self)
        """Peers' heads and fetching missed blocks (see :mod:`accord.node.catchup`)."""
        self.double_sign = DoubleSignGuard(genesis, self.index, enabled=config.double_sign_check)
        self._jobs = ChainJobs(genesis.consensus.round_ms / 1000)
        """Builds and validations waiting for the chain thread, in the order the shared
        policy (:mod:`accord.consensus.jobs`) runs them."""
        # The build in progress: (height, round, stop flag), and the last (height, round) the
        # core sent CancelBuild for (a better proposal is here: the block could not win);
        # _perform sets the flag, or _build sets it at once if the cancel came first.
        self._building: tuple[int, int, threading.Event] | None = None
        self._cancelled_build: tuple[int, int] | None = None
        self._jobs_wake = asyncio.Event()
        self._working = False
        self._job_task: asyncio.Future[None] | None = None
        self.running = False
        self.fault: str | None = None
        """Why this node halted (see _fail), None while healthy."""
        self._folder_lock: FolderLock | None = None
        self.ops = NodeOps(self)
        """State sync, snapshots and pruning (see :mod:`accord.node.statesync`)."""

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | Path, **kw: Any) -> Node:
        """A node from its folder (``node.json``, ``validator.key``, the genesis it names).

        node.json's ``peers`` (validator name -> host:port) override genesis addresses, so an
        embedded validator and ``accord node`` reach their peers the same way; an explicit
        ``addresses=`` wins over both."""
        path = Path(path)
        config = NodeConfig.load(path)
        genesis = Genesis.load(path / config.genesis)
        secret = load_validator_key(path / config.validator_key)
        if kw.get("addresses") is None:
            kw["addresses"] = config.peer_addresses(genesis) or None
        return cls(config, genesis, secret, path, **kw)

    def _define_metrics(self) -> None:
        m = self.metrics
        self.m_height = m.gauge("accord_height", "height of the last committed block")
        self.m_healthy = m.gauge(
            "accord_healthy",
            "1 while the node takes part; 0 once it halted on a fault "
            "(damaged storage, a certified block that does not apply)",
        )
        self.m_healthy.set(1)
        self.m_txs = m.counter("accord_txs_committed_total", "transactions committed")
        self.m_blocks = m.counter("accord_blocks_committed_total", "blocks committed")
        self.m_mempool = m.gauge("accord_mempool_txs", "transactions waiting in the mempool")
        self.m_rejected = m.gauge(
            "accord_mempool_rejected", "transactions the mempool refused, by reason", ["code"]
        )
        self.m_invalid = m.counter(
            "accord_invalid_proposals_total", "proposed blocks that failed validation"
        )
        self.m_time_retry = m.counter(
            "accord_proposals_time_retried_total",
            "proposals a little ahead of this clock, judged again once it caught up",
        )
        self.m_commit_s = m.histogram("accord_commit_seconds", "time to commit one block")
        self.m_latency = m.histogram(
            "accord_tx_latency_seconds",
            "submit-to-commit latency of transactions submitted here",
            buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30),
        )
        self.m_consensus = m.gauge("accord_consensus_events", "consensus core counters", ["kind"])
        self.m_sync = m.counter(
            "accord_sync_blocks_total", "blocks fetched from peers while catching up"
        )
        self.m_bad_msgs = m.counter(
            "accord_bad_messages_total", "malformed messages from peers", ["kind"]
        )
        self.m_chain_op = m.histogram(
            "accord_chain_op_seconds",
            "chain thread work per operation (build, validate, commit)",
            ["op"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.m_shed = m.counter(
            "accord_submissions_shed_total", "client submissions refused: backlog too long"
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
        self.m_chain_wait = m.histogram(
            "accord_chain_wait_seconds",
            "time a chain operation waited for earlier ones",
            ["op"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )

    def _collect(self) -> None:
        if self.mempool is not None:
            self.m_mempool.set(len(self.mempool))
            for code, count in self.mempool.rejected.items():
                self.m_rejected.set(count, code=code)
        if self.core is not None:
            for kind, v in self.core.status().stats.items():
                self.m_consensus.set(v, kind=kind)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Lock the folder, open storage, restore safety state, connect to peers, serve the
        API, start rounds. A start that fails part-way closes what it opened."""
        if self.running:
            return
        data = self.home / self.config.data_dir
        # One process per validator folder, taken before anything else is opened: a second
        # start is refused here (FolderInUse, naming the holder) and touches nothing.
        folder_lock = FolderLock(data)
        folder_lock.acquire()
        self._folder_lock = folder_lock
        try:
            await self._start(data)
        except BaseException:
            await self._abort_start()
            raise

    async def _start(self, data: Path) -> None:
        from accord.contracts.runtime import Runtime
        from accord.storage import Store
        from accord.storage.verify import StorageDamaged, check_head

        self._loop = asyncio.get_running_loop()
        self._chain_lock = asyncio.Lock()
        self._jobs_wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chain-{self.name}")
        self.admission.open()
        self.store = Store(data, sync=self.config.sync)
        self.ops.recover(self.store)
        self.double_sign.open(data, self._now_ms())  # a restored folder holds: no votes yet
        runtime = Runtime(self.genesis, self._contracts, **self._runtime_hooks())
        self.chain = Chain(self.genesis, self.store, runtime)
        # Before anything is served or signed: the head header, its certificate, the block
        # and the state root must agree (a damaged folder stops here, with what is wrong).
        try:
            check_head(self.store, self._verify_cert)
        except StorageDamaged as e:
            raise StorageDamaged(
                f"{data}: {e.message}; run `accord node {self.home} --verify`, then restore "
                f"the folder from a backup or start from an empty data folder to catch up"
            ) from None
        self.mempool = Mempool(
            self.genesis.chain_id,
            self.chain.nonce_of,
            max_txs=self.config.mempool_size,
            max_gas=self.genesis.consensus.max_block_gas,
        )
        height, _ = self.chain.head()
        self.core = self._new_core()
        self.m_height.set(height)
        self.metrics.add_collector(self._collect)
        self.transport = Transport(
            self.genesis,
            self.index,
            self._secret,
            host=self.config.host,
            port=self.config.port,
            addresses=self._addresses,
            config=self._link_config(),
            metrics=self.metrics,
            on_message=self._on_message,
            on_peer=self.catchup.on_peer,
            on_request=self.catchup.serve,
        )
        await _listen(
            "validator transport", self.config.host, self.config.port, self.transport.start()
        )
        api_tls = self.config.api_tls
        self.api = ApiServer(
            self,
            self.config.api_host,
            self.config.api_port,
            self._api_config,
            tls=None if api_tls is None else (self.home / api_tls.cert, self.home / api_tls.key),
        )
        await _listen("client API", self.config.api_host, self.config.api_port, self.api.start())
        self.running = True
        self._tasks = [
            asyncio.create_task(self.catchup.status_loop(), name=f"{self.name}-status"),
        ]
        self._tick()
        self.ops.start()
        log.info("%s started at height %d (api %s)", self.name, height, self.api.url)

    def _link_config(self) -> NetConfig:
        """The transport's settings with node.json's link certificate (paths from the folder)."""
        cfg = self._net_config or NetConfig()
        tls = self.config.p2p_tls
        if tls is not None and cfg.tls_cert is None:
            cfg = dataclasses.replace(
                cfg, tls_cert=str(self.home / tls.cert), tls_key=str(self.home / tls.key)
            )
        if cfg.tls_cert is None:
            log.warning(
                "%s: validator links are NOT encrypted (no p2p_tls in node.json); see docs/operations.md",
                self.name,
            )
        return cfg

    async def _abort_start(self) -> None:
        """Undo a start that failed part-way: close what was opened, release the folder."""
        with contextlib.suppress(Exception):
            if self.api is not None:
                await self.api.stop()
        with contextlib.suppress(Exception):
            if self.transport is not None:
                await self.transport.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.admission.close()
        self.metrics.remove_collector(self._collect)
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
        self.store = self.chain = self.mempool = self.core = self.transport = self.api = None
        self._executor = None
        if self._folder_lock is not None:
            self._folder_lock.release()
            self._folder_lock = None

    def _verify_cert(self, cert: Certificate) -> None:
        verify_certificate(
            self.genesis.validator_keys(), self.genesis.chain_id, cert, self.genesis.quorum
        )

    @property
    def healthy(self) -> bool:
        return self.fault is None

    def _fail(self, reason: str) -> None:
        """Stop taking part (no votes, no proposals, no catch-up) and say why, once.

        For faults that retrying cannot fix: the store's bytes do not match their hashes,
        or a block that a quorum certified does not execute to its header here. Before, such
        a node looped on catch-up (hundreds of thousands of block requests in seconds) while
        reporting itself running; now it halts and reports unhealthy (``/v1/status``,
        ``accord_healthy`` in ``/metrics``) until the operator repairs it.
        """
        if self.fault is not None:
            return
        self.fault = reason
        self.m_healthy.set(0)
        log.error("%s: halted: %s", self.name, reason)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        for t in self._tasks:
            t.cancel()
        self._jobs.clear()

    def _ceremony_transcript(self) -> Any:
        """The ZK ceremony transcript the node config names, else ``transcript.json`` next to
        genesis; None when there is none (check_genesis then says what is missing)."""
        from accord.zk.transcript import TRANSCRIPT, Transcript

        if self.genesis.zk_params.get("ceremony") in (None, "insecure-dev"):
            return None
        if self.config.ceremony_transcript:  # named: it must be there
            return Transcript.from_file(self.home / self.config.ceremony_transcript)
        path = (self.home / self.config.genesis).parent / TRANSCRIPT
        return Transcript.from_file(path) if path.exists() else None

    def _runtime_hooks(self) -> dict[str, Any]:
        """Proof verifier and MPC oracle hooks for contracts, when genesis configures them."""
        hooks: dict[str, Any] = {}
        if self.genesis.zk_circuits:
            from accord.zk.transcript import check_genesis
            from accord.zk.verifier import FastProofVerifier, verifier_from_genesis

            # Refuse keys that no verified ceremony produced (see accord.zk.transcript).
            check_genesis(
                dict(self.genesis.zk_circuits),
                dict(self.genesis.zk_params),
                self._ceremony_transcript(),
                allow_insecure=self.allow_insecure_zk,
            )
            if self.genesis.zk_params.get("ceremony") == "insecure-dev":
                log.warning(
                    "%s: genesis marks its proving keys insecure-dev (a one-machine "
                    "ceremony): never hold real value on this chain",
                    self.name,
                )
            hooks["proof_verifier"] = verifier_from_genesis(self.genesis)
            if not isinstance(hooks["proof_verifier"], FastProofVerifier):
                # Leaders size blocks by their own verification speed: a proof-heavy block a
                # leader with the worker made in one round can take this node ~13x longer.
                log.warning(
                    "%s: Node.js or the pinned snarkjs is missing: proofs are verified in "
                    "pure Python (~13x slower); this validator may not keep up with "
                    "proof-heavy blocks. Validators should run the fast verifier "
                    "(npm ci in the project root)",
                    self.name,
                )
        if self.genesis.mpc:
            from accord.mpc.oracle import oracle_from_genesis

            hooks["oracle"] = oracle_from_genesis(self.genesis)
        return hooks

    async def stop(self) -> None:
        """Stop rounds, close connections and the API, finish the chain's work, close LMDB."""
        if not self.running:
            return
        self.running = False
        await self.ops.stop()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        tasks = [
            *self._tasks,
            *([self._job_task] if self._job_task is not None else []),
        ]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        self._job_task = None
        self._jobs.clear()
        if self.api is not None:
            await self.api.stop()
        if self.transport is not None:
            await self.transport.stop()
        if self._chain_lock is not None:
            async with self._chain_lock:  # wait for a commit in flight: LMDB stays consistent
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.admission.close()
        for sub in list(self._subscribers):
            await sub.aclose()
        self.metrics.remove_collector(self._collect)
        if self.store is not None:
            self.store.close()
        if self._folder_lock is not None:  # only once LMDB is closed: then another may start
            self._folder_lock.release()
            self._folder_lock = None
        log.info("%s stopped", self.name)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- background-thread mode (synchronous hosts: Flask, Django) ------------------------

    def start_background(self, timeout: float = 30.0, *, handle_sigterm: bool = True) -> None:
        """Run the node on its own event loop in a daemon thread; return once it started.

        The node is stopped cleanly (last commit finished, LMDB closed, folder unlocked) when
        the interpreter exits, and, with ``handle_sigterm`` and no SIGTERM handler installed
        yet, on SIGTERM (what systemd, Docker and process managers send): the handler stops
        the node, then lets SIGTERM end the process as it would have. A daemon thread alone
        dies with the process without any of that (before: the Flask host died mid-write)."""
        started = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # reported to the caller below
                errors.append(e)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"accord-{self.name}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("node did not start in time")
        if errors:
            raise errors[0]
        atexit.register(self.stop_background)
        if (
            handle_sigterm
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
        ):
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        """Stop cleanly, then end the process the way SIGTERM would have (see start_background)."""
        log.info("%s: SIGTERM: stopping", self.name)
        self.stop_background()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def stop_background(self, timeout: float = 30.0) -> None:
        """Stop a node started with :meth:`start_background` and wait for it (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop_background)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the node's loop thread and return its result (from any thread)."""
        loop = self._loop
        if loop is None or not self.running:
            raise AccordError("node is not running")
        try:
            if asyncio.get_running_loop() is loop:
                return fn()
        except RuntimeError:
            pass

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    # --- the application interface (NodeView for the API) -------------------------------

    def submit(self, tx: Tx | bytes) -> bytes:
        """Admit a transaction (checks: decoding, size, chain, signature, nonce, capacity) and
        gossip it to the other validators. Returns its hash or raises an AccordError."""
        return self.call(lambda: self.admission.submit(tx))

    def submit_batch(self, items: list[Tx | bytes]) -> Awaitable[list[bytes | AccordError]]:
        """Admit many transactions, in order; per item its hash or the AccordError refusing
        it (see :meth:`accord.node.admission.Admission.submit_batch`). On the node's loop."""
        return self.admission.submit_batch(items)

    def _sync_pending(self) -> None:
        """With ``skip_empty_blocks``, tell the core whether the mempool holds transactions
        whenever that changes (a leader proposes only then): at once after admissions, so a
        transaction on an idle chain gets the current round's stage I if there is time."""
        core, mempool = self.core, self.mempool
        if (
            core is None
            or mempool is None
            or not core.p.skip_empty
            or not self.running
            or self.fault is not None
        ):
            return
        pending = len(mempool) > 0
        if pending != core.status().txs_pending:
            for action in core.handle(TxsPending(pending)):
                self._perform(action)
            self._arm_tick()

    def has_pending(self, tx_hash: bytes) -> bool:
        return self.mempool is not None and self.mempool.contains(tx_hash)

    def status(self) -> dict[str, Any]:
        head = self.store.head() if self.store is not None else None
        return {
            "name": self.name,
            "index": self.index,
            "chain_id": self.genesis.chain_id,
            "height": head[0] if head else 0,
            "head_hash": head[1].hex() if head else "",
            "round": self.core.status().round if self.core is not None else -1,
            "peers": self.transport.peers() if self.transport is not None else [],
            "mempool": len(self.mempool) if self.mempool is not None else 0,
            "running": self.running and self.fault is None,
            "healthy": self.fault is None,
            "fault": self.fault,
        }

    def subscribe(self) -> Subscription:
        return Subscription(self)

    async def blocks(
        self, from_height: int | None = None
    ) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        """Committed blocks with their receipts, in height order, as they commit.

        With ``from_height``, first the blocks already committed from that height on (read
        from the store), then the new ones: an embedded application that was down resumes
        at the height after the last one it processed and misses nothing. Blocks a slow
        consumer dropped from its subscription queue are read back from the store too, so
        the sequence has no gaps and no repeats.
        """
        sub = self.subscribe()  # registered first: nothing committed from here on is missed
        try:
            nxt = from_height
            if nxt is not None:
                async for item in self._stored_blocks(nxt, None):
                    yield item
                    nxt += 1
            async for block, receipts in sub:
                if nxt is None:
                    nxt = block.height
                if block.height < nxt:
                    continue  # read from the store already
                async for item in self._stored_blocks(nxt, block.height):  # ones the queue dropped
                    yield item
                    nxt += 1
                if block.height == nxt:
                    yield block, receipts
                    nxt += 1
        finally:
            await sub.aclose()

    async def _stored_blocks(
        self, start: int, stop: int | None
    ) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        """Committed blocks ``start <= height < stop`` (None: up to the head) from the store;
        :class:`~accord.storage.store.Pruned` for a start below what the store keeps (a
        silent gap would lose blocks for the application)."""
        if self.store is not None:
            self.store.require_height(start)
        height = start
        while stop is None or height < stop:
            block = self.store.get_block(height) if self.store is not None else None
            if block is None:
                return
            yield block, self.store.get_receipts(height)
            height += 1

    async def events(self, contract: str | None = None) -> AsyncIterator[tuple[int, bytes, Event]]:
        """Contract events of successful transactions as they commit: (height, tx hash, event)."""
        async for block, receipts in self.blocks():
            for tx, r in zip(block.txs, receipts, strict=True):
                if not r.ok:
                    continue
                for ev in r.events:
                    if contract is None or ev.contract == contract:
                        yield block.height, tx.hash, ev

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        """A read-only contract call on committed state; every state value it reads is checked
        by a Merkle proof against the state root (a damaged value is an error, not an answer)."""
        from accord.storage.verify import StorageDamaged

        assert self.chain is not None
        try:
            return self.chain.query(contract, method, args)
        except StorageDamaged as e:
            self._fail(f"storage damaged: {e.message}")
            raise

    def next_nonce(self, address: bytes) -> int:
        """The nonce the account's next transaction must carry here (pending ones counted)."""
        assert self.mempool is not None
        mempool = self.mempool
        return self.call(lambda: mempool.next_nonce(address))

    # --- the core's driver --------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _step(self, event: Any) -> None:
        """Feed one event to the core and perform its actions in order (see module rules)."""
        if not self.running or self.core is None or self.fault is not None:
            return
        if self.ops.syncing or (self.ops.deciding and isinstance(event, MessageReceived)):
            return  # see accord.node.statesync: the core waits while a snapshot may be installed
        if self.double_sign.holding and not isinstance(event, BlockFetched):
            return  # restored, not caught up: certified blocks only (accord.node.doublesign)
        if not isinstance(event, Tick) and self._now_ms() - self._last_tick_ms >= self.tick_ms:
            self._tick()  # the core judges lateness by its clock: keep it within tick_ms
        self._sync_pending()  # commits empty the mempool; the core must know before it leads
        for action in self.core.handle(event):
            self._perform(action)
        self._arm_tick()

    # Time reaches the core as Tick events, when the core next needs it
    # (``Core.next_wakeup_ms``: stage II, the next round, a ticket wait, a gossip or resend
    # timer) rather than on a fixed beat, and lazily before any other event once ``tick_ms``
    # has passed. An idle validator then wakes about ten times a second instead of fifty.

    def _tick(self) -> None:
        self._last_tick_ms = now = self._now_ms()
        self._step(Tick(now))

    def _on_tick_timer(self) -> None:
        self._tick_handle = None
        self._tick()

    def _arm_tick(self) -> None:
        """Set the timer for the core's next wakeup, unless one is set for no later."""
        core, loop = self.core, self._loop
        if core is None or loop is None or not self.running:
            return
        now = self._now_ms()
        wait_ms = min(max(core.next_wakeup_ms() - now, MIN_TICK_MS), MAX_TICK_MS)
        when = loop.time() + wait_ms / 1000
        handle = self._tick_handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._tick_handle = loop.call_at(when, self._on_tick_timer)

    def _perform(self, action: Any) -> None:
        assert self.transport is not None
        if isinstance(action, Persist):
            self.store.put_safety(action.key, action.value)  # synced before the next action
        elif isinstance(action, Broadcast):
            self.transport.broadcast(Kind.CONSENSUS, action.payload)
        elif isinstance(action, Send):
            self.transport.send(action.to_index, Kind.CONSENSUS, action.payload)
        elif isinstance(action, BuildBlock):
            self._jobs.build(action)
            self._wake_jobs()
        elif isinstance(action, ValidateBlock):
            self.catchup.remember(action.block)
            self._queue_validation(action.block)
        elif isinstance(action, CancelBuild):
            self._cancelled_build = (action.height, action.round)
            building = self._building
            if building is not None and building[:2] == self._cancelled_build:
                building[2].set()
        elif isinstance(action, Commit):
            self._spawn(self._commit(action.block, action.certificate))
        elif isinstance(action, FetchBlock):
            self._spawn(self.catchup.fetch(action.from_index, ["hash", action.block_hash]))
        else:  # pragma: no cover - the core's action set is closed
            log.error("unknown action %r", action)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._task_done)

    @staticmethod
    def _task_done(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("node task failed", exc_info=task.exception())

    async def _chain_op(self, fn: Callable[[], T], op: str = "other") -> T:
        """Run a chain operation on the chain thread, after every earlier one (FIFO)."""
        assert self._chain_lock is not None and self._loop is not None
        t0 = time.monotonic()
        async with self._chain_lock:
            t1 = time.monotonic()
            try:
                return await self._loop.run_in_executor(self._executor, fn)
            finally:
                self._observe_op(op, t0, t1)

    def _observe_cost(self, seconds: float, txs: int, gas: int) -> None:
        """Moving averages of what a unit of gas costs to execute here and of gas per
        transaction, from builds and validations (so they include CPU contention)."""
        if gas < COST_SAMPLE_GAS or txs <= 0:
            return
        self._gas_cost = 0.7 * self._gas_cost + 0.3 * seconds / gas
        self._tx_gas = 0.7 * self._tx_gas + 0.3 * gas / txs
        self.m_gas_cost.set(self._gas_cost)
        self.m_tx_cost.set(self._gas_cost * self._tx_gas)

    def _observe_op(self, op: str, t0: float, t1: float) -> None:
        t2 = time.monotonic()
        self.m_chain_wait.observe(t1 - t0, op=op)
        self.m_chain_op.observe(t2 - t1, op=op)
        if t2 - t0 > 0.5:
            log.info("%s: slow %s: waited %.3f s, ran %.3f s", self.name, op, t1 - t0, t2 - t1)

    async def _build(self, a: BuildBlock) -> None:
        assert self.chain is not None and self.mempool is not None and self._chain_lock is not None
        chain, params = self.chain, self.genesis.consensus
        t0 = time.monotonic()
        async with self._chain_lock:  # take txs only after earlier commits have landed
            t1 = time.monotonic()
            if chain.head() != (a.height - 1, a.parent_hash):
                return  # the head moved on: this build is stale
            if self.core is None or self.core.status().round != a.round:
                self.m_stale_builds.inc()
                return  # the round moved on: the core would drop the block; leave the txs pooled
            gas_budget = self._block_gas()
            # a fifth more than the budget should hold: the cut is made by gas, while executing
            txs = self.mempool.take(
                min(params.max_block_txs, int(1.2 * gas_budget / self._tx_gas) + 1),
                params.max_block_bytes - 64 * 1024,
            )
            verified = frozenset(t.hash for t in txs)
            assert self._loop is not None
            # A leader that stood back for a better ticket builds after all when that
            # leader's proposal is late; if it lands while we build, our block cannot win and
            # the build only delays validating the better one: stop it (nothing is written).
            stop = threading.Event()
            if self._cancelled_build == (a.height, a.round):
                stop.set()  # cancelled while waiting for the chain lock
            self._building = (a.height, a.round, stop)
            try:
                block = await self._loop.run_in_executor(
                    self._executor,
                    lambda: chain.build(
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
            finally:
                self._building = None
            self._observe_op("build", t0, t1)
            ex = chain.execution(block.hash)
            if ex is not None:
                self._observe_cost(time.monotonic() - t1, block.header.tx_count, ex.gas_used)
        self._jobs.found_valid(block)  # our own block is valid by construction
        self.catchup.remember(block)
        self._step(BlockBuilt(block))

    def _block_cap(self) -> int:
        """About how many transactions a block built now holds (see _block_gas)."""
        return min(
            self.genesis.consensus.max_block_txs, max(1, int(self._block_gas() / self._tx_gas))
        )

    def _block_gas(self) -> int:
        """How much gas this node can execute within its build budget: where it cuts blocks.

        A block must be built, sent, validated by the others and voted on within one round;
        a proposal that arrives late is dropped by every core, and if every block is too big
        for the round no block ever commits (a livelock, seen on 2 shared cores above ~1,500
        tx/s with fixed 5,000-tx blocks). What a unit of gas costs is measured on this node
        (builds and validations, so it includes CPU contention) and the block is cut so that
        executing it takes ``build_budget`` of a round. Gas, not a transaction count, because
        transactions differ: one proof check costs as much as ~40 transfers, and a block of
        proof checks cut by count would not fit its round. Never above the block gas limit."""
        budget_s = self.build_budget * self.genesis.consensus.round_ms / 1000
        gas = max(MIN_BLOCK_GAS, int(budget_s / self._gas_cost))
        return min(gas, self.genesis.consensus.max_block_gas)

    def _queue_validation(self, block: Block) -> None:
        """Validations wait with the builds for the chain thread (see accord.consensus.jobs)."""
        assert self._loop is not None
        self._jobs.validate(block, self._loop.time())
        self._wake_jobs()

    def _wake_jobs(self) -> None:
        self._jobs_wake.set()
        if not self._working:
            self._working = True
            self._job_task = asyncio.ensure_future(self._job_worker())
            self._job_task.add_done_callback(self._task_done)

    async def _job_worker(self) -> None:
        """Run the chain jobs one at a time, each the one the shared policy picks when the
        thread is free (builds first if still current, then the newest round's best ticket)."""
        jobs = self._jobs
        try:
            while self.running and self.core is not None and self.chain is not None:
                assert self._loop is not None
                st = self.core.status()
                stale = jobs.stale_builds
                job, wait = jobs.next(
                    committed=self.chain.head()[0],
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
                self._jobs_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._jobs_wake.wait(), wait)
        finally:
            self._working = False

    async def _validate(self, block: Block) -> None:
        assert self.chain is not None and self.mempool is not None
        chain = self.chain
        known = self.admission.known_good
        verified = frozenset(t.hash for t in block.txs if known(t.hash))

        def check() -> tuple[bool, float, int, int]:
            t = time.monotonic()
            # The block's time is judged against this validator's clock when it votes (a
            # proposal stamped years ahead is refused); a certified block is committed
            # whatever its time (see _commit: no clock there).
            now_ms = self._now_ms()
            try:
                if chain.execution(block.hash) is not None:
                    chain.check_time(block.header, now_ms)
                    return True, 0.0, 0, 0  # executed before: nothing to measure
                ex = chain.validate(block, verified=verified, now_ms=now_ms)
                return True, time.monotonic() - t, ex.gas_used, 0
            except InvalidProposal as e:
                wait = ahead_of_clock_ms(
                    time_ms=block.header.time_ms,
                    now_ms=now_ms,
                    drift_ms=self.genesis.consensus.time_drift(),
                )
                log.info("%s: proposal %s refused: %s", self.name, block.hash.hex()[:12], e)
                return False, 0.0, 0, wait

        ok, seconds, gas, wait_ms = await self._chain_op(check, "validate")
        if not ok and 0 < wait_ms <= RETRY_AHEAD_MS_ROUNDS * self.genesis.consensus.round_ms:
            # Only a little ahead of this clock: the core is not told "invalid" (it would
            # not ask again at this height, even once locked on the block); the block is
            # judged again when this clock has caught up.
            self.m_time_retry.inc()
            assert self._loop is not None
            self._loop.call_later((wait_ms + 1) / 1000, self._revalidate, block)
            return
        if ok:
            self._observe_cost(seconds, len(block.txs), gas)
            self.admission.note_verified(t.hash for t in block.txs)
            self._jobs.found_valid(block)
        else:
            self.m_invalid.inc()
        self._step(BlockValidated(block.hash, ok))

    def _revalidate(self, block: Block) -> None:
        """Judge ``block`` again (its time was a little ahead of this clock), unless the
        height has moved on or the node stopped."""
        if not self.running or self.chain is None or self.fault is not None:
            return
        if block.height == self.chain.head()[0] + 1:
            self._queue_validation(block)

    async def _commit(self, block: Block, cert: Certificate) -> None:
        assert self.chain is not None and self.mempool is not None
        assert self.core is not None
        fault = self.double_sign.check(cert, self.core.status(), self.store)  # may adopt
        if fault is not None:
            self._fail(fault)
            return
        chain, known = self.chain, self.admission.known_good
        t0 = time.monotonic()
        # A committed block this node never validated (validation is lazy: the quorum may
        # form on a proposal it did not need) is executed here; signatures it already knows
        # need no second check.
        verified = frozenset(t.hash for t in block.txs if known(t.hash))

        def commit() -> list[Receipt] | None:
            height, head = chain.head()
            if block.height <= height:
                return None  # already committed (e.g. through catch-up)
            if block.height > height + 1:
                raise _NotNext(f"block {block.height} is not next after {height}")
            with contextlib.suppress(InvalidProposal):  # commit() below raises it again
                chain.validate(block, verified=verified)  # a cached result if validated before
            return chain.commit(block, cert)

        try:
            receipts = await self._chain_op(commit, "commit")
        except _NotNext:
            return  # an earlier commit failed and the core was reset: it commits this again
        except StateRootMismatch as e:
            # The transactions and receipts match the certified header (the tx root checks
            # out), so the body is the genuine one; executing it gave another state: this
            # node's state is damaged (or it runs other code). Asking peers again cannot help.
            self._fail(
                f"block {block.height} carries a valid certificate but does not apply here: {e}"
            )
            return
        except StorageError as e:
            self._fail(f"storage error while committing block {block.height}: {e}")
            return
        except AccordError as e:
            self._on_bad_body(block, e)
            return
        if receipts is None:
            return
        now = time.monotonic()
        self.m_commit_s.observe(now - t0)
        self.mempool.on_commit(block.txs)
        self.m_height.set(block.height)
        self.m_blocks.inc()
        self.m_txs.inc(len(block.txs))
        for tx in block.txs:
            at = self.admission.submitted_at.pop(tx.hash, None)
            if at is not None:
                self.m_latency.observe(now - at)
        for sub in list(self._subscribers):
            sub._put((block, receipts))
        self.ops.after_commit(block.height)

    def _after_state_sync(self, height: int) -> None:
        """A snapshot of ``height`` is now the store's state: follow the chain from there."""
        self.core = self._new_core()
        self.m_height.set(height)
        self._tick()

    def _new_core(self) -> Core:
        """A Gosig core at the store's head with the persisted safety state: on start, and
        after a certified block's body failed to apply (see ``_commit``)."""
        assert self.chain is not None and self.mempool is not None
        height, head_hash = self.chain.head()
        raw = self.store.get_safety(SAFETY_KEY)
        safety = SafetyState.decode(raw, self.genesis.n) if raw is not None else None
        return Core.from_genesis(
            self.genesis,
            BlsSigner(self.index, self._secret),
            head=(height, head_hash),
            head_cert=self.store.get_certificate(height),
            head_sortition=self._head_sortition(height),
            safety=safety,
            known_txs=self.mempool.get,
        )

    def _head_sortition(self, height: int) -> bytes:
        """The sortition ticket of the block at ``height`` (empty at genesis): the next
        height's lottery seed comes from it (see :mod:`accord.consensus.sortition`)."""
        if height == 0:
            return b""
        header = self.store.get_header(height)
        if header is None:
            raise StorageError(f"the head header at height {height} is missing")
        return header.sortition

    def _on_bad_body(self, block: Block, error: AccordError) -> None:
        """A certified block did not apply: its header is genuine (the core checked the
        certificate) but the body is not the one the validators executed, since a block's
        hash covers only its header and whoever sent the body put other transactions under
        it. The core has moved past that height, so it is rebuilt from the store (what a
        restart does: same persisted safety state, head at the last block that applied), and
        catch-up fetches the block again, from another peer than the one that sent it."""
        source = self.catchup.bad_body(block)
        self.m_bad_msgs.inc(kind="block_body")
        log.error(
            "%s: block %d (%s) has a certificate but its body does not apply (%s)%s; fetching it again",
            self.name,
            block.height,
            block.hash.hex()[:16],
            error,
            "" if source is None else f", sent by validator {source}",
        )
        self.core = self._new_core()
        self.catchup.maybe_sync()
        self._tick()

    # --- messages from peers ------------------------------------------------------------

    async def _on_message(self, frm: int, kind: Kind, payload: Value) -> None:
        """Handle one frame from a peer. Never awaits: it runs in the peer's read loop."""
        try:
            if kind == Kind.CONSENSUS:
                if type(payload) is not bytes:
                    raise DecodeError("consensus payload must be bytes")
                self._step(MessageReceived(frm, payload))
            elif kind == Kind.TX_BATCH:
                self.admission.on_txs(payload)
            elif kind == Kind.STATUS:
                self.catchup.on_status(frm, payload)
            else:  # catch-up goes through request/on_request; anything else is unexpected here
                raise DecodeError(f"unexpected {kind.name} frame")
        except AccordError as e:
            self.m_bad_msgs.inc(kind=kind.name.lower())
            log.info("%s: bad %s from validator %d: %s", self.name, kind.name, frm, e)


class _NotNext(AccordError):
    """A commit for a height above the store's next one (an earlier commit failed)."""


class CannotListen(AccordError):
    """A port this validator must listen on is taken (or not available to it)."""

    code = "cannot_listen"


async def _listen(what: str, host: str, port: int, starting: Awaitable[None]) -> None:
    """Await a listener's start; a port already taken becomes one clear error, not a traceback."""
    try:
        await starting
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            reason = {
                errno.EADDRINUSE: "address already in use",
                errno.EACCES: "permission denied",
                errno.EADDRNOTAVAIL: "address not available on this machine",
            }[e.errno]
            raise CannotListen(
                f"cannot listen on {host}:{port} for the {what}: {reason} "
                f"(is another validator or program using it?)"
            ) from None
        raise
