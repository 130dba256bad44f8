"""The embeddable validator: the one place that wires core, transport, storage and runtime.

A :class:`Node` runs inside its host application's asyncio loop (``await node.start()`` /
``await node.stop()``), or on a background thread of its own for synchronous hosts
(:meth:`Node.start_background`). The node wires; each job of a validator is a part beside it:

* the **core's driver** (:mod:`accord.node.driver`): feeds the sans-I/O Gosig core its events
  and carries out its actions, in order, a ``Persist`` on disk before the next action;
* the **chain worker** (:mod:`accord.node.worker`): builds, validations and commits on one
  thread, blocks sized by measured cost, in the job order the simulator shares;
* **admission** (:mod:`accord.node.admission`): one FIFO for client batches and gossip, load
  shedding, the signature-check thread;
* **catch-up** (:mod:`accord.node.catchup`), **state sync, snapshots and pruning**
  (:mod:`accord.node.statesync`), the **double-sign guard** (:mod:`accord.node.doublesign`);
* opening the **ledger** (:mod:`accord.node.ledger`: store, application, mempool, checked),
  the **reads** its host and API make from any thread (:mod:`accord.node.reads`), the **block
  feed** (:mod:`accord.node.feed`), the contracts' **hooks** (:mod:`accord.node.hooks`),
  **background-thread mode** (:mod:`accord.node.background`), peers' frames to their part
  (:mod:`accord.node.inbox`), its **metrics**
  (:mod:`accord.node.metrics`) and **listeners** (:mod:`accord.node.listen`);
* the **transport** to the other validators (:mod:`accord.net`) and the **client API**.

Rules this module keeps:

* **One process per folder**: the data folder is locked before anything is opened, and a start
  that fails part-way closes what it opened and releases the lock.
* **Nothing is served or signed from a damaged folder**: checked as the ledger opens (see
  :mod:`accord.node.ledger`); a fault found later halts the node
  (:meth:`Node.fail`), which then reports unhealthy instead of looping.
* **A clean stop finishes the commit in flight** before LMDB is closed and the lock released.
* The node talks to the ledger only through the
  :class:`~accord.ledger.application.Application` protocol; the mempool and the core are
  touched only on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from accord.base.crypto import bls
from accord.base.encoding import Value
from accord.base.errors import AccordError
from accord.base.genesis import Genesis, ValidatorInfo
from accord.base.keys import load_validator_key
from accord.base.metrics import Registry
from accord.base.types import Block, Event, Receipt, Tx
from accord.consensus import Core
from accord.ledger.application import Application
from accord.ledger.mempool import Mempool
from accord.net.transport import NetConfig, Transport
from accord.node import inbox, reads
from accord.node.admission import Admission
from accord.node.api import ApiConfig, ApiServer
from accord.node.background import BackgroundThread
from accord.node.catchup import CatchUp
from accord.node.config import NodeConfig
from accord.node.doublesign import DoubleSignGuard
from accord.node.driver import CoreDriver, now_ms
from accord.node.feed import BlockFeed, Subscription
from accord.node.ledger import OpenApplication, open_ledger
from accord.node.listen import link_config, listen
from accord.node.metrics import NodeMetrics
from accord.node.sets import Roster, SetSizes, governed, largest_block_bytes
from accord.node.statesync import NodeOps
from accord.node.worker import ChainWorker
from accord.storage.lock import FolderLock

log = logging.getLogger("accord.node")

T = TypeVar("T")


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
        application: OpenApplication | None = None,
    ) -> None:
        genesis.check()
        config.check_genesis(genesis)  # node.json's pinned genesis hash, if any
        self.public_key = bls.public_key(secret)
        self._next_secret = (
            None
            if config.next_validator_key is None
            else load_validator_key(Path(home) / config.next_validator_key)
        )
        """The key a rotation by vote moves this validator to (taken by :meth:`rekey`)."""
        self.roster = Roster(genesis, self.public_key, config.name)
        """Every validator this node knows, in the transport's numbering (see sets.Roster)."""
        for name, key in config.expected_keys():
            # Known for catch-up before any set names them (they count for nothing in
            # consensus until one does): a node that was down while they were added can
            # fetch the blocks that add them from them alone.
            self.roster.index(name, key)
        self.index, self.name = self.roster.own, self.roster.names[self.roster.own]
        self.set_size = SetSizes(genesis, lambda: self.chain)
        """Validators in the set of a height (how its certificate's signers are read)."""
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
        self.contracts = contracts
        """Contract classes by name for the default Chain's runtime (None: the built-ins)."""
        self._application = application
        """Builds the ledger on the open store (None: a Chain; see :mod:`accord.node.ledger`)."""
        self._addresses = addresses
        self.driver = CoreDriver(self, secret, tick_ms)
        """Feeds the core and carries out its actions (see :mod:`accord.node.driver`)."""
        self.status_interval = status_interval
        self.build_budget = build_budget
        self.admission = Admission(
            self, backlog_rounds=backlog_rounds, verify_off_loop=verify_off_loop
        )
        """Client submissions and gossip enter here (see :mod:`accord.node.admission`)."""
        self.metrics = Registry()
        self.meters = NodeMetrics(self.metrics)
        """The node's own metrics (see :mod:`accord.node.metrics`)."""
        self._collect: Callable[[], None] = lambda: self.meters.collect(self)
        self.worker = ChainWorker(
            self.name,
            genesis.consensus,
            self.metrics,
            status=self.driver.status,
            deliver=self.driver.step,
            now_ms=now_ms,
            known_good=self.admission.known_good,
            note_verified=self.admission.note_verified,
            remember=lambda block: self.catchup.remember(block),
            build_budget=build_budget,
        )
        """Builds, validations and commits on the chain thread (see :mod:`accord.node.worker`)."""
        self.store: Any = None
        self.chain: Application | None = None
        """The ledger, seen only through the Application protocol (a :class:`Chain`)."""
        self.mempool: Mempool | None = None
        self.transport: Transport | None = None
        self.block_bytes = genesis.consensus.max_block_bytes
        """The largest block genesis or any change governance scheduled allows: what frames
        are sized for (:meth:`follow_consensus`)."""
        self.api: ApiServer | None = None
        self.feed = BlockFeed(lambda: self.store)
        """Committed blocks for the embedding application (see :mod:`accord.node.feed`)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: BackgroundThread | None = None
        self.catchup = CatchUp(self)
        """Peers' heads and fetching missed blocks (see :mod:`accord.node.catchup`)."""
        self.double_sign = DoubleSignGuard(genesis, self.index, enabled=config.double_sign_check)
        """Another instance with this key, and a restored folder's hold (:mod:`accord.node.doublesign`)."""
        self.running = False
        self.fault: str | None = None
        """Why this node halted (see _fail), None while healthy."""
        self._folder_lock: FolderLock | None = None
        self.ops = NodeOps(self)
        """State sync, snapshots and pruning (see :mod:`accord.node.statesync`)."""

    @property
    def core(self) -> Core | None:
        """The Gosig core (read it through ``core.status()``); None while stopped."""
        return self.driver.core

    # --- construction -------------------------------------------------------------------

    def rekey(self, validators: tuple[ValidatorInfo, ...]) -> bool:
        """Move to ``next_validator_key`` if the set ``validators`` (the next height's) names
        it and not the key this node signs with: a rotation by vote is in force from that
        height. The driver's cores sign with it from then on, the transport speaks as it
        (its links re-authenticate) and the old key is retired here too. Returns whether
        the key changed."""
        nxt = self._next_secret
        if nxt is None:
            return False
        keys = {v.public_key_bytes for v in validators}
        new = bls.public_key(nxt)
        if new not in keys or self.public_key in keys:
            return False
        old = self.public_key
        self._secret, self._next_secret, self.public_key = nxt, None, new
        self.driver.rekey(nxt)
        self.index = self.roster.index(self.name, new)
        self.roster.own = self.index
        if self.transport is not None:
            self.transport.become(self.index, nxt)
        self.roster.retire(old)
        log.warning(
            "%s: validator key rotated to %s (the set of the next height names it)",
            self.name,
            new.hex()[:16],
        )
        return True

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
        self._loop = asyncio.get_running_loop()
        self.admission.open()
        ledger = open_ledger(self, data, self._application)  # checked: a damaged folder stops
        self.store, self.chain, self.mempool = ledger.store, ledger.chain, ledger.mempool
        self.worker.open(self.chain, self.mempool, self._loop)
        height, _ = self.chain.head()
        self.driver.restart()
        self.metrics.add_collector(self._collect)
        self.transport = self.roster.attach(
            Transport(
                self.genesis,
                self.index,
                self._secret,
                host=self.config.host,
                port=self.config.port,
                addresses=self._addresses,
                roster=self.roster.added(),
                named_addresses=self.config.named_peers(self.genesis),
                config=link_config(self.name, self.config, self.home, self._net_config),
                metrics=self.metrics,
                on_message=functools.partial(inbox.on_message, self),
                on_peer=self.catchup.on_peer,
                on_request=self.catchup.serve,
                block_bytes=self.block_bytes,
            )
        )
        await listen(
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
        await listen("client API", self.config.api_host, self.config.api_port, self.api.start())
        self.running = True
        self._tasks = [
            asyncio.create_task(self.catchup.status_loop(), name=f"{self.name}-status"),
        ]
        self.driver.tick()
        self.ops.start()
        log.info("%s started at height %d (api %s)", self.name, height, self.api.url)

    async def _abort_start(self) -> None:
        """Undo a start that failed part-way: close what was opened, release the folder."""
        with contextlib.suppress(Exception):
            if self.api is not None:
                await self.api.stop()
        with contextlib.suppress(Exception):
            if self.transport is not None:
                await self.transport.stop()
        self.worker.shutdown()
        self.admission.close()
        self.metrics.remove_collector(self._collect)
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
        self.driver.forget()
        self.store = self.chain = self.mempool = self.transport = self.api = None
        if self._folder_lock is not None:
            self._folder_lock.release()
            self._folder_lock = None

    @property
    def healthy(self) -> bool:
        """Neither halted (``fault``) nor stranded (catch-up cannot get the next block:
        every peer pruned it; see :mod:`accord.node.catchup`)."""
        return self.fault is None and self.catchup.stranded is None

    def fail(self, reason: str) -> None:
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
        self.meters.healthy.set(0)
        log.error("%s: halted: %s", self.name, reason)
        self.driver.stop()
        for t in self._tasks:
            t.cancel()
        self.worker.clear()

    async def stop(self) -> None:
        """Stop rounds, close connections and the API, finish the chain's work, close LMDB."""
        if not self.running:
            return
        self.running = False
        await self.ops.stop()
        self.driver.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self.api is not None:
            await self.api.stop()
        if self.transport is not None:
            await self.transport.stop()
        await self.worker.close()  # a commit in flight finishes first: LMDB stays consistent
        self.admission.close()
        await self.feed.close()
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
        Stopped cleanly at interpreter exit and, with ``handle_sigterm``, on SIGTERM (see
        :mod:`accord.node.background`)."""
        self._background = BackgroundThread(self.name, self.start, self.stop)
        self._background.start(timeout, handle_sigterm=handle_sigterm)

    def stop_background(self, timeout: float = 30.0) -> None:
        """Stop a node started with :meth:`start_background` and wait for it (idempotent)."""
        if self._background is not None:
            self._background.stop(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the node's loop thread and return its result (from any thread)."""
        return reads.call_on_loop(self._loop if self.running else None, fn)

    # --- the application interface (NodeView for the API) -------------------------------

    def submit(self, tx: Tx | bytes) -> bytes:
        """Admit a transaction (checks: decoding, size, chain, signature, nonce, capacity) and
        gossip it to the other validators. Returns its hash or raises an AccordError."""
        return self.call(lambda: self.admission.submit(tx))

    def submit_batch(self, items: list[Tx | bytes]) -> Awaitable[list[bytes | AccordError]]:
        """Admit many transactions, in order; per item its hash or the AccordError refusing
        it (see :meth:`accord.node.admission.Admission.submit_batch`). On the node's loop."""
        return self.admission.submit_batch(items)

    def has_pending(self, tx_hash: bytes) -> bool:
        return self.mempool is not None and self.mempool.contains(tx_hash)

    def status(self) -> dict[str, Any]:
        return reads.status(self)

    def subscribe(self) -> Subscription:
        return self.feed.subscribe()

    def blocks(self, from_height: int | None = None) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        """Committed blocks with their receipts, in height order, as they commit; with
        ``from_height``, those already committed first (see :meth:`BlockFeed.blocks`)."""
        return self.feed.blocks(from_height)

    def events(self, contract: str | None = None) -> AsyncIterator[tuple[int, bytes, Event]]:
        """Contract events of successful transactions as they commit: (height, tx hash, event)."""
        return self.feed.events(contract)

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        """A read-only contract call on committed state, every value checked against the state
        root (a damaged value halts the node and is an error, not an answer)."""
        return reads.query(self, contract, method, args)

    def next_nonce(self, address: bytes) -> int:
        """The nonce the account's next transaction must carry here (pending ones counted)."""
        assert self.mempool is not None
        mempool = self.mempool
        return self.call(lambda: mempool.next_nonce(address))

    # --- what the driver hands back -------------------------------------------------------

    def follow_consensus(self) -> None:
        """Follow the consensus parameters governance put in force (at start and after every
        executed block; the driver builds the core for the timing). The worker cuts blocks
        to the limits of the next height, the restore hold counts rounds as that height
        does, the mempool admits by its gas limit and gossip uses its fanout (the chain
        judges every block by the limits of its height whatever these do); frames are
        sized for the largest block a scheduled change allows, in force or still to come (:func:`accord.node.sets.largest_block_bytes`), so the transport
        widens before the first larger block can come."""
        chain = self.chain
        if chain is None or not governed(self.genesis):
            return
        head = chain.head()[0]
        schedule = chain.scheduled(head + 1)
        params, timing = schedule.consensus, (schedule.round_anchor_ms, schedule.consensus)
        if timing != self.double_sign.timing():
            self.double_sign.follow_timing(lambda: timing)  # the restore hold's rounds
        if params != self.worker.params:
            self.worker.follow(params)
            if self.mempool is not None:
                self.mempool.max_gas = params.max_block_gas
        self.block_bytes = max(self.block_bytes, largest_block_bytes(chain, self.genesis, head))
        if self.transport is not None:
            self.transport.gossip_fanout = params.gossip_fanout
            self.transport.carry_blocks(self.block_bytes)

    def committed(self, block: Block, receipts: list[Receipt]) -> None:
        """A block is committed here: settle the mempool, metrics, subscribers, pruning."""
        assert self.mempool is not None
        self.mempool.on_commit(block.txs)
        self.meters.committed(block, self.admission.submitted_at)
        self.feed.publish(block, receipts)
        self.ops.after_commit(block.height)
