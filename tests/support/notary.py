"""A second ledger behind the same consensus: a notary that records when each transaction
was committed. It is not a :class:`~accord.ledger.chain.Chain` and runs no contracts: it
implements the :class:`~accord.ledger.application.Application` protocol on its own, so a node
driving it shows that the node (state sync included) relies on the protocol and nothing more.

Rules: a transaction is accepted when its chain id, signature and nonce (one per sender,
counting from 0) are right; it costs :data:`GAS` and writes its sender's next nonce and
``tx/<hash> -> height``. Genesis writes :data:`GENESIS_ENTRIES` entries so that a snapshot
of even a young chain has several chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.base import merkle
from accord.base.encoding import Value
from accord.base.errors import AccordError, Unavailable, ValidationError
from accord.base.genesis import Genesis
from accord.base.types import ZERO_HASH, Block, Certificate, Header, Receipt, Tx, body_hash
from accord.ledger.application import InvalidProposal, SnapshotImport, StateRootMismatch
from accord.ledger.blocktime import block_time_error
from accord.ledger.schedule import Schedule, genesis_only
from accord.storage import Store, snapshot
from accord.storage.snapshot import Manifest

GAS = 1000
GENESIS_ENTRIES = 48


@dataclass(frozen=True)
class _Run:
    txs: tuple[Tx, ...]
    receipts: list[Receipt]
    writes: dict[bytes, bytes | None]
    update: Any
    gas_used: int


def _nonce_key(address: bytes) -> bytes:
    return b"nonce/" + address


class Notary:
    """The notary ledger on one node's store (one chain thread drives it, as the protocol says)."""

    def __init__(self, genesis: Genesis, store: Store) -> None:
        self.genesis = genesis
        self.store = store
        self._lock = threading.RLock()
        self._runs: dict[bytes, _Run] = {}
        self.imports = 0
        """Snapshot imports finished (for tests: the state came by state sync)."""
        self.genesis_commits = 0
        if store.head() is None:
            self.recommit_genesis()

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def head(self) -> tuple[int, bytes]:
        head = self.store.head()
        if head is None:
            raise Unavailable("no head: a snapshot import is under way")
        return head

    def head_header(self) -> Header:
        header = self.store.get_header(self.head()[0])
        assert header is not None
        return header

    def nonce_of(self, address: bytes) -> int:
        raw = self.store.get_state(_nonce_key(address))
        return 0 if raw is None else int.from_bytes(raw, "big")

    def _run(self, txs: Sequence[Tx], height: int, verified: Container[bytes]) -> _Run:
        """Execute on the head; the transactions kept are those the rules accept, in order."""
        next_nonce: dict[bytes, int] = {}
        kept: list[Tx] = []
        writes: dict[bytes, bytes | None] = {}
        for tx in txs:
            sender = tx.sender
            want = next_nonce.get(sender, self.nonce_of(sender))
            if tx.chain_id != self.chain_id or tx.nonce != want or tx.gas_limit < GAS:
                continue
            if tx.hash not in verified:
                try:
                    tx.verify_signature()
                except AccordError:
                    continue
            next_nonce[sender] = want + 1
            writes[_nonce_key(sender)] = (want + 1).to_bytes(8, "big")
            writes[b"tx/" + tx.hash] = height.to_bytes(8, "big")
            kept.append(tx)
        receipts = [Receipt(tx.hash, True, GAS, result=height) for tx in kept]
        update = self.store.compute_state_update(writes)
        return _Run(tuple(kept), receipts, writes, update, GAS * len(kept))

    @staticmethod
    def _tx_root(run: _Run) -> bytes:
        return merkle.merkle_root(
            [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(run.txs, run.receipts, strict=True)]
        )

    def build(
        self,
        txs: Sequence[Tx],
        *,
        round: int = 0,
        proposer: int = 0,
        time_ms: int,
        sortition: bytes = b"",
        verified: Container[bytes] = (),
        interrupt: Callable[[], bool] | None = None,
        gas_budget: int | None = None,
    ) -> Block:
        with self._lock:
            height, parent = self.head()
            limit = self.genesis.consensus.max_block_gas
            budget = limit if gas_budget is None else min(gas_budget, limit)
            cap = min(max(budget // GAS, 1), self.genesis.consensus.max_block_txs)
            run = self._run(txs, height + 1, verified)
            if len(run.txs) > cap:
                run = self._run(run.txs[:cap], height + 1, verified)
            header = Header(
                chain_id=self.chain_id,
                height=height + 1,
                round=round,
                parent_hash=parent,
                tx_root=self._tx_root(run),
                state_root=run.update.root,
                tx_count=len(run.txs),
                proposer=proposer,
                time_ms=max(time_ms, self.head_header().time_ms),
                sortition=sortition,
                body_hash=body_hash(run.txs),
            )
            block = Block(header, run.txs)
            self._runs[block.hash] = run
            return block

    def executed_gas(self, block_hash: bytes) -> int | None:
        run = self._runs.get(block_hash)
        return None if run is None else run.gas_used

    def check_time(self, header: Header, now_ms: int) -> None:
        c = self.genesis.consensus
        with self._lock:
            height, parent = self.head()
            if header.height != height + 1 or header.parent_hash != parent:
                return
            error = block_time_error(
                time_ms=header.time_ms,
                round=header.round,
                parent_time_ms=self.head_header().time_ms,
                now_ms=now_ms,
                genesis_time_ms=self.genesis.genesis_time_ms,
                round_ms=c.round_ms,
                drift_ms=c.time_drift(),
            )
        if error is not None:
            raise InvalidProposal(error)

    def validate(
        self, block: Block, *, verified: Container[bytes] = (), now_ms: int | None = None
    ) -> _Run:
        with self._lock:
            if now_ms is not None:
                self.check_time(block.header, now_ms)
            cached = self._runs.get(block.hash)
            if cached is not None:
                return cached
            h = block.header
            height, parent = self.head()
            if h.chain_id != self.chain_id or h.height != height + 1 or h.parent_hash != parent:
                raise InvalidProposal("block does not extend the head")
            if h.time_ms < self.head_header().time_ms:
                raise InvalidProposal("block time is before its parent's")
            if h.tx_count != len(block.txs) or h.body_hash != body_hash(block.txs):
                raise InvalidProposal("the header does not match the transactions")
            run = self._run(block.txs, h.height, verified)
            if len(run.txs) != len(block.txs):
                raise InvalidProposal("the block holds a transaction the notary refuses")
            if self._tx_root(run) != h.tx_root:
                raise InvalidProposal("tx root does not match")
            if run.update.root != h.state_root:
                raise StateRootMismatch("state root does not match")
            self._runs[block.hash] = run
            return run

    def commit(self, block: Block, certificate: Certificate | None) -> list[Receipt]:
        with self._lock:
            run = self.validate(block)
            self.store.commit_block(block, certificate, run.receipts, run.writes, run.update)
            self._runs.clear()
            return run.receipts

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        tx_hash = args.get("tx")
        if contract != "notary" or method != "height_of" or type(tx_hash) is not bytes:
            raise ValidationError("the notary answers notary.height_of(tx=<hash>) only")
        raw = self.store.get_state(b"tx/" + tx_hash)
        return None if raw is None else int.from_bytes(raw, "big")

    def block_and_certificate(self, height: int) -> tuple[Block, Certificate | None]:
        block = self.store.get_block(height)
        if block is None:
            raise ValidationError(f"no block at height {height}")
        return block, self.store.get_certificate(height)

    def scheduled(self, height: int) -> Schedule:
        return genesis_only(self.genesis, height)

    def take_banned(self) -> list[tuple[bytes, str]]:
        return []

    def mismatch_counts(self) -> dict[str, int]:
        return {}

    # --- snapshots ------------------------------------------------------------------------

    def base(self) -> int:
        return self.store.base()

    def prune(self, keep: int) -> int:
        return self.store.prune(keep)

    def export_snapshot(
        self, out_dir: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> Manifest:
        return snapshot.build(self.store, out_dir, progress=progress)

    def import_snapshot(self, manifest: Manifest) -> SnapshotImport:
        notary = self
        installer = snapshot.Installer(self.store, manifest)

        class Import:
            def begin(self) -> None:
                with notary._lock:
                    notary._runs.clear()
                    installer.begin()

            def add(self, index: int, chunk: snapshot.Chunk) -> None:
                installer.add(index, chunk)

            def finish(self) -> None:
                with notary._lock:
                    installer.finish()
                    notary.imports += 1

            def abort(self) -> None:
                with notary._lock:
                    installer.abort()

        return Import()

    def recommit_genesis(self) -> None:
        with self._lock:
            if self.store.head() is not None:
                raise AccordError("the store holds blocks")
            self._runs.clear()
            writes: dict[bytes, bytes | None] = {
                b"genesis/%03d" % i: self.genesis.hash + bytes([i]) for i in range(GENESIS_ENTRIES)
            }
            update = self.store.compute_state_update(writes)
            header = Header(
                chain_id=self.chain_id,
                height=0,
                round=0,
                parent_hash=ZERO_HASH,
                tx_root=merkle.merkle_root([]),
                state_root=update.root,
                tx_count=0,
                proposer=0,
                time_ms=self.genesis.genesis_time_ms,
            )
            self.store.commit_block(Block(header, ()), None, [], writes, update)
            self.genesis_commits += 1


def open_notary(node: Any, store: Store) -> Notary:
    """``Node(application=open_notary)``: the node's ledger is a notary."""
    return Notary(node.genesis, store)
