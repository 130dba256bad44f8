"""Transaction admission: one path for client submissions and peers' gossip.

Every transaction a validator holds entered here. Rules this module keeps:

* **One FIFO.** Client batches and gossip batches are admitted strictly in arrival order: an
  account's nonces must reach the mempool in sequence, and a gossip batch is never retried.
  Large batches have their Ed25519 signatures checked first on a verify thread (a pure
  function of the bytes); every batch is then admitted on the loop, in order, with all the
  mempool's rules. The check (ed25519-zebra) holds the GIL while it runs, so the thread buys
  no parallelism, only a loop that stays responsive between checks; inline checking measured
  the same within noise (docs/benchmarks.md, issue 21's levers).
* **Load shedding for clients only.** Past ``backlog_rounds`` blocks of backlog a client's
  transaction is refused (``mempool_full``, HTTP 503) before it costs a signature check or a
  gossip; a peer's gossip is never shed (its submitter was admitted by a validator already).
* **Known-good signatures are remembered** (bounded): a hash fixes the whole signed
  transaction, so neither admission nor validation checks such a signature twice.
* Runs on the node's loop thread only, like the mempool it fills.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from accord.base.encoding import Value
from accord.base.errors import AccordError, DecodeError, MempoolFull, TooLarge
from accord.base.types import Tx
from accord.ledger.mempool import verify_signatures
from accord.node.driver import spawn

if TYPE_CHECKING:
    from accord.node.node import Node

log = logging.getLogger("accord.node")

SIG_CACHE_TXS = 100_000
"""Hashes of transactions with known-good signatures kept (see ``Admission.verified``)."""

MIN_BLOCK_TXS = 50
"""The admission limit never falls below four blocks of this many transactions."""


class Admission:
    """The admission queue of one node (see the module rules)."""

    def __init__(self, node: Node, *, backlog_rounds: int, verify_off_loop: int) -> None:
        self.node = node
        self.backlog_rounds = backlog_rounds
        """Client submissions are refused (503, ``mempool_full``) past this many blocks of
        backlog. Three rounds bound a transaction's wait to a few seconds under overload;
        with six, the consensus benchmark at 5,000 tx/s offered committed fewer transactions
        (the longer queues cost CPU) with a median latency of 4.5 s instead of 2.7 s."""
        self.verify_off_loop = verify_off_loop
        """Batches of at least this many new transactions have their signatures checked on a
        worker thread (0: always on the loop). Smaller ones are not worth the hand-off."""
        self.pool: ThreadPoolExecutor | None = None
        self._queue: collections.deque[_Batch] = collections.deque()
        self._admitting = False
        self.verified: OrderedDict[bytes, None] = OrderedDict()
        """Hashes of transactions whose signature is known good (bounded, oldest dropped):
        checked on the verify thread, or part of a block that validated (execution checks
        every signature it is not told about)."""
        self.submitted_at: dict[bytes, float] = {}
        """When each transaction submitted here was admitted (for the latency metric)."""

    def open(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"verify-{self.node.name}")

    def close(self) -> None:
        """Answer every waiting client with an error, drop waiting gossip, stop the thread."""
        for job in self._queue:
            if job.done.done():
                continue
            if job.source is None:  # a client waits for it: answer with an error
                job.done.set_exception(AccordError("node stopped"))
            else:  # nobody awaits a gossip batch
                job.done.cancel()
        self._queue.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def known_good(self, tx_hash: bytes) -> bool:
        """Whether this transaction's signature needs no check (pooled or verified before)."""
        mempool = self.node.mempool
        return tx_hash in self.verified or (mempool is not None and mempool.contains(tx_hash))

    def submit(self, tx: Tx | bytes) -> bytes:
        node = self.node
        assert node.mempool is not None and node.transport is not None
        if isinstance(tx, bytes | bytearray):
            tx = Tx.decode(bytes(tx))
        backlog, limit = len(node.mempool), self.limit()
        if backlog >= limit:
            # Load shedding: past a few rounds of backlog, every extra transaction only adds
            # latency, and admitting it (decode, signature, gossip to every peer) takes the CPU
            # that consensus and execution need. Measured without it on 2 cores: offered 2,000
            # tx/s, commits fell from ~700 to ~250 tx/s. Refusing early keeps the plateau.
            node.meters.shed.inc()
            raise MempoolFull(
                f"{backlog} transactions are waiting (limit {limit}); try again later"
            )
        h = node.mempool.add(tx)
        node.driver.sync_pending()
        self.submitted_at[h] = time.monotonic()
        if len(self.submitted_at) > 4 * node.config.mempool_size:
            self.submitted_at.clear()  # bounded: only latency accounting is lost
        node.transport.gossip_tx(tx.encode())
        return h

    def submit_batch(self, items: list[Tx | bytes]) -> Awaitable[list[bytes | AccordError]]:
        """Admit many transactions, in order; per item its hash or the AccordError refusing it.

        Same checks, errors and load shedding as :meth:`submit` applied to each item in turn;
        the signatures of a large batch are checked on a worker thread first (see
        ``verify_off_loop``). Call it on the node's loop (the API does) and await the result.
        """
        node = self.node
        assert node.mempool is not None and node.transport is not None
        entries: list[Tx | AccordError] = []
        for item in items:
            if isinstance(item, Tx):
                entries.append(item)
                continue
            try:
                entries.append(Tx.decode(bytes(item)))
            except AccordError as e:
                entries.append(e)
        return self._enqueue(entries, source=None)

    def _admit_submitted(
        self, entries: list[Tx | AccordError], verdicts: dict[bytes, bool]
    ) -> list[bytes | AccordError]:
        """Admission of client transactions on the loop (load shedding, mempool, gossip)."""
        node = self.node
        assert node.mempool is not None and node.transport is not None
        mempool, limit = node.mempool, self.limit()
        verdict = self._signature_verdict(verdicts)
        out: list[bytes | AccordError] = []
        now = time.monotonic()
        full: MempoolFull | None = None  # one refusal for the rest: the pool only grows here
        shed = 0
        for e in entries:
            if isinstance(e, AccordError):
                out.append(e)
                continue
            if full is not None or len(mempool) >= limit:  # load shedding, as in _submit
                if full is None:
                    full = MempoolFull(
                        f"{len(mempool)} transactions are waiting (limit {limit}); try again later"
                    )
                shed += 1
                out.append(full)
                continue
            r = mempool.add_many((e,), verdict)[0]
            out.append(r)
            if isinstance(r, bytes):
                self.submitted_at[r] = now
                node.transport.gossip_tx(e.encode())
        if shed:
            node.meters.shed.inc(shed)
        if len(self.submitted_at) > 4 * node.config.mempool_size:
            self.submitted_at.clear()  # bounded: only latency accounting is lost
        return out

    def _enqueue(
        self, entries: list[Tx | AccordError], source: int | None
    ) -> asyncio.Future[list[bytes | AccordError]]:
        """Queue a batch for admission; batches are admitted strictly in arrival order.

        Order matters: an account's nonces must reach the mempool in sequence, and a gossip
        batch is never retried. Each batch's signature checks start at once on the verify
        thread (one thread: FIFO), and one task admits the batches on the loop in order."""
        node = self.node
        assert node._loop is not None and node.mempool is not None
        mempool = node.mempool
        known = self.verified
        fresh = [
            e
            for e in entries
            if isinstance(e, Tx) and not mempool.contains(e.hash) and e.hash not in known
        ]
        verdicts: asyncio.Future[dict[bytes, bool]] | None = None
        if (
            self.verify_off_loop > 0
            and len(fresh) >= self.verify_off_loop
            and self.pool is not None
        ):
            verdicts = node._loop.run_in_executor(self.pool, verify_signatures, fresh)
        job = _Batch(entries, source, verdicts, node._loop.create_future())
        if not self._queue and not self._admitting and verdicts is None:
            self._admitting = True  # nothing queued ahead of it: admit now, on the loop
            try:
                self._finish(job, {})
            finally:
                self._admitting = False
            return job.done
        self._queue.append(job)
        if not self._admitting:
            self._admitting = True
            spawn(self._worker())
        return job.done

    async def _worker(self) -> None:
        node = self.node
        try:
            while self._queue and node.running:
                job = self._queue[0]
                verdicts: dict[bytes, bool] = {}
                if job.verdicts is not None:
                    try:
                        verdicts = await job.verdicts
                    except Exception:  # the checks are then done inline by the mempool
                        log.exception("%s: signature batch failed", node.name)
                self._queue.popleft()
                self.note_verified(h for h, ok in verdicts.items() if ok)
                self._finish(job, verdicts)
        finally:
            self._admitting = False

    def note_verified(self, hashes: Iterable[bytes]) -> None:
        known = self.verified
        for h in hashes:
            known[h] = None
        excess = len(known) - SIG_CACHE_TXS
        for _ in range(max(0, excess)):
            known.popitem(last=False)

    def _signature_verdict(self, verdicts: dict[bytes, bool]) -> Callable[[bytes], bool | None]:
        known = self.verified

        def verdict(h: bytes) -> bool | None:
            v = verdicts.get(h)
            if v is None and h in known:
                return True
            return v

        return verdict

    def _finish(self, job: _Batch, verdicts: dict[bytes, bool]) -> None:
        node = self.node
        if job.done.done():
            return
        try:
            if job.source is None:
                result = self._admit_submitted(job.entries, verdicts)
            else:
                result = self._admit_gossiped(job.entries, verdicts)
        except Exception as e:
            if job.source is None:
                job.done.set_exception(e)
            else:  # nobody awaits a gossip batch: say what went wrong here
                log.exception("%s: admitting a gossip batch failed", node.name)
                job.done.set_result([])
            return
        job.done.set_result(result)
        node.driver.sync_pending()

    def limit(self) -> int:
        """Client submissions are refused beyond ``backlog_rounds`` blocks of backlog."""
        node = self.node
        limit = self.backlog_rounds * min(
            node.worker.params.max_block_txs, node.worker.gas.block_cap()
        )
        return min(node.config.mempool_size, max(limit, 4 * MIN_BLOCK_TXS))

    def on_txs(self, payload: Value) -> None:
        node = self.node
        assert node.mempool is not None
        if type(payload) is not list:
            raise DecodeError("a tx batch is a list")
        # With more peers than the gossip fanout, newly admitted transactions travel on; the
        # mempool's duplicate check ends the flood. Otherwise the submitter reached everyone.
        if any(type(raw) is not bytes for raw in payload):
            raise DecodeError("a tx batch holds encoded transactions")
        entries: list[Tx | AccordError] = []
        max_bytes = node.mempool.max_tx_bytes
        for raw in payload:
            if len(raw) > max_bytes:  # counted by the mempool with its own error
                entries.append(TooLarge(f"transaction of {len(raw)} bytes exceeds {max_bytes}"))
                continue
            try:
                entries.append(Tx.decode(raw))
            except AccordError as e:
                entries.append(e)
        self._enqueue(entries, source=0)

    def _admit_gossiped(
        self, entries: list[Tx | AccordError], verdicts: dict[bytes, bool]
    ) -> list[bytes | AccordError]:
        node = self.node
        assert node.mempool is not None and node.transport is not None
        # With more peers than the gossip fanout, newly admitted transactions travel on; the
        # mempool's duplicate check ends the flood. Otherwise the submitter reached everyone.
        relay = node.genesis.n - 1 > node.worker.params.gossip_fanout  # the fanout in force
        mempool = node.mempool
        verdict = self._signature_verdict(verdicts)
        out: list[bytes | AccordError] = []
        for e in entries:
            if isinstance(e, AccordError):
                mempool.rejected[e.code] = mempool.rejected.get(e.code, 0) + 1
                out.append(e)
                continue
            r = mempool.add_many((e,), verdict)[0]
            out.append(r)  # duplicates and stale nonces are normal under gossip; counted above
            if relay and isinstance(r, bytes):
                node.transport.gossip_tx(e.encode())
        return out


class _Batch:
    """One batch waiting for admission: decoded transactions (or their decoding errors), where
    it came from (None: a client; else gossip), its pending signature verdicts, its result."""

    __slots__ = ("entries", "source", "verdicts", "done")

    def __init__(
        self,
        entries: list[Tx | AccordError],
        source: int | None,
        verdicts: asyncio.Future[dict[bytes, bool]] | None,
        done: asyncio.Future[list[bytes | AccordError]],
    ) -> None:
        self.entries = entries
        self.source = source
        self.verdicts = verdicts
        self.done = done
