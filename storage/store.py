"""One LMDB environment per node: blocks, indexes, receipts, certificates and the state.

Named databases (keys are raw bytes; heights are 8-byte big-endian so they sort):

============  ===============================================================
``blocks``     height -> canonical block
``headers``    height -> canonical header (read without decoding transactions)
``hashes``     block hash -> height
``txs``        tx hash -> height (8 bytes) || index in the block (4 bytes)
``receipts``   height -> canonical list of the block's receipts
``certs``      height -> canonical certificate
``state``      state key -> latest value
``nodes``      tree node version || padded position || hash -> record (:mod:`accord.storage.tree`)
``roots``      state root -> the version (8 bytes) its record is stored at
``safety``     consensus safety state (votes, locks), synced before returning
``meta``       head, state root, schema version, and what callers put there
``explorer``   the web explorer's index (:mod:`accord.node.explorer.index`): derived from
               the blocks, rebuildable from them, pruned with them (:meth:`Store.add_prune_hook`)
============  ===============================================================

Invariants:

* :meth:`Store.commit_block` writes a block and everything that follows from it (hash and
  tx indexes, receipts, certificate, state writes, tree nodes, head, root) in ONE write
  transaction after checking it extends the head; a crash leaves either all or none of it.
* The ``state`` database always equals the entries of the tree at the stored root.
* Readers never block the writer: every read uses its own LMDB read transaction and takes no
  lock held across a write. The only exception is growing the map (rare): that needs no
  active transaction in the process, so it waits for running reads to finish and holds new
  ones back for its duration (:class:`_ResizeGate`).
* One writer at a time (a lock); a write transaction that runs out of map space is aborted,
  the map is doubled and the whole transaction is run again.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import lmdb

from accord.base import encoding, merkle
from accord.base.errors import StorageError
from accord.base.types import ZERO_HASH, Block, Certificate, Header, Receipt
from accord.storage import tree

# 1: binary state tree, nodes keyed by position; 2: binary tree keyed by version first;
# 3: 16-ary state tree (other roots, records and keys: older folders cannot be read).
SCHEMA_VERSION = 3

_HEAD = b"accord/head"  # height (8) || block hash (32)
_ROOT = b"accord/state_root"
_SCHEMA = b"accord/schema"
_BASE = b"accord/base"  # lowest height whose block and state tree are kept (8) || its root's version (8)
_INSTALL = b"accord/installing"  # a state snapshot install in progress, for this height (8)

_DBS = (
    "blocks",
    "headers",
    "hashes",
    "txs",
    "receipts",
    "certs",
    "state",
    "nodes",
    "roots",
    "safety",
    "meta",
    "explorer",
)
_SIDE = frozenset({"explorer"})
"""Databases derived from the chain that their owners read and write through :class:`SideTxn`
(nothing in the chain reads them; a snapshot install leaves them for their owner to notice)."""
_ITER_CHUNK = 1024
_NO_RECEIPTS = encoding.encode_encoded_list([])

T = TypeVar("T")
Txn = Any  # lmdb.Transaction opened with buffers=False: its get() returns bytes | None


def _h(height: int) -> bytes:
    return struct.pack(">Q", height)


@dataclass(frozen=True, eq=False)
class StateUpdate:
    """The tree update for one block's writes, computed without writing.

    ``root`` is the new state root. The rest is for :meth:`Store.commit_block`: the root it
    was computed on (a commit on any other root is refused), the writes it covers and the
    new tree node records.
    """

    root: bytes
    base_root: bytes
    writes: Mapping[bytes, bytes | None] = field(repr=False)
    nodes: Mapping[bytes, bytes] = field(repr=False)
    version: int = 0
    """Tree version of the new nodes: the height of the block the update is for."""


class SafetyRecordDamaged(StorageError):
    """The persisted safety state (votes, lock) fails its checksum: a validator must never vote
    from it (a lowered round could sign a second, conflicting vote), so it halts instead."""

    code = "safety_damaged"


# A safety record is ``_SAFETY_MAGIC || sha256(value) || value``. LMDB checks no content, and a
# single flipped bit in a vote round still decodes canonically; the hash catches it.
_SAFETY_MAGIC = b"ASF1"
_SAFETY_FRAME = len(_SAFETY_MAGIC) + 32


def seal_safety(value: bytes) -> bytes:
    import hashlib

    return _SAFETY_MAGIC + hashlib.sha256(value).digest() + value


def open_safety(key: bytes, record: bytes) -> bytes:
    """The value inside a sealed safety record, or :class:`SafetyRecordDamaged`. A record
    without the frame is one written before records were sealed: returned as it is (its own
    canonical decoding is its only check) and sealed on the next vote."""
    import hashlib

    if not record.startswith(_SAFETY_MAGIC):
        return record
    digest, value = record[len(_SAFETY_MAGIC) : _SAFETY_FRAME], record[_SAFETY_FRAME:]
    if len(digest) != 32 or hashlib.sha256(value).digest() != digest:
        raise SafetyRecordDamaged(
            f"the safety record {key!r} fails its checksum (damaged on disk): refusing to vote "
            f"from it; restore the node folder from a backup or re-create it (see docs/operations.md)"
        )
    return value


class Pruned(StorageError):
    """A height below what this store keeps (pruned, or before the snapshot it started from)."""

    code = "pruned"


class _ResizeGate:
    """Lets reads run concurrently with writes, but not with a map resize.

    Reads only take the condition's lock for a counter update, never across their work.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False
        self._local = threading.local()

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    def resize(self, fn: Callable[[], None]) -> None:
        if getattr(self._local, "depth", 0):
            raise StorageError(
                "the map is full and this thread holds a read snapshot; close it first"
            )
        with self._cond:
            self._resizing = True
            try:
                while self._readers:
                    self._cond.wait()
                fn()
            finally:
                self._resizing = False
                self._cond.notify_all()


class Snapshot:
    """One read transaction: a consistent view of the state at one root.

    Use as a context manager (or call :meth:`close`); while open it holds back map growth, so
    keep it short (one block's execution).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._gate_cm = store._gate.reading()
        self._gate_cm.__enter__()
        try:
            self._txn: Txn = store._env.begin(buffers=False)
        except BaseException:
            self._gate_cm.__exit__(None, None, None)
            raise
        self._closed = False

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._txn.abort()
            self._gate_cm.__exit__(None, None, None)

    def _check(self) -> None:
        if self._closed:
            raise StorageError("snapshot is closed")

    @property
    def state_root(self) -> bytes:
        self._check()
        return self._store._root_in(self._txn)

    def head(self) -> tuple[int, bytes] | None:
        self._check()
        return self._store._head_in(self._txn)

    def get_state(self, key: bytes) -> bytes | None:
        self._check()
        return self._txn.get(key, db=self._store._db["state"])

    def get_state_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        self._check()
        db = self._store._db["state"]
        get = self._txn.get
        return {k: get(k, db=db) for k in keys}

    def iter_state(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Entries with ``prefix`` in key order, all from this snapshot."""
        self._check()
        cur = self._txn.cursor(db=self._store._db["state"])
        if not cur.set_range(prefix):
            return
        for k, v in cur:
            if not k.startswith(prefix):
                return
            yield k, v

    def prove_state(self, key: bytes) -> tuple[bytes | None, merkle.StateProof]:
        self._check()
        nodes = self._store._db["nodes"]
        txn = self._txn
        root = self._store._root_in(txn)
        return tree.prove(
            lambda h: txn.get(h, db=nodes), root, key, self._store._root_version_in(txn, root)
        )


class SideTxn:
    """One transaction on a side database (see :data:`_SIDE`), with the chain's head, base and
    headers read in the same transaction, so what its owner writes agrees with the chain."""

    def __init__(self, store: Store, txn: Txn, name: str) -> None:
        self._store = store
        self.txn = txn
        self.db = store._db[name]

    def get(self, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self.db)

    def put(self, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.db)

    def delete(self, key: bytes) -> bool:
        return bool(self.txn.delete(key, db=self.db))

    def cursor(self) -> Any:
        return self.txn.cursor(db=self.db)

    def clear(self) -> None:
        self.txn.drop(self.db, delete=False)

    def head(self) -> tuple[int, bytes] | None:
        return self._store._head_in(self.txn)

    def base(self) -> int:
        return self._store._base_in(self.txn)[0]

    def header_hash(self, height: int) -> bytes | None:
        raw = self.txn.get(_h(height), db=self._store._db["headers"])
        return None if raw is None else Header.decode(raw).hash

    def block(self, height: int) -> tuple[Block, list[Receipt]] | None:
        """The stored block at ``height`` and its receipts, as this transaction sees them."""
        db = self._store._db
        raw = self.txn.get(_h(height), db=db["blocks"])
        if raw is None:
            return None
        raw_receipts = self.txn.get(_h(height), db=db["receipts"])
        receipts = [] if raw_receipts is None else encoding.decode(raw_receipts)
        return Block.decode(raw), [Receipt.from_obj(r) for r in receipts]


PruneHook = Callable[[SideTxn, int], None]
"""Called inside a prune's write transaction for each height whose block is being removed."""


class Store:
    """The LMDB environment of one node (see the module docstring for layout and invariants)."""

    def __init__(self, path: str | Path, *, map_size: int = 1 << 30, sync: bool = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.sync = sync
        self._env = lmdb.open(
            str(self.path),
            map_size=map_size,
            max_dbs=len(_DBS) + 2,
            sync=sync,
            metasync=sync,
            readahead=False,
            max_readers=256,
        )
        self._db = {name: self._env.open_db(name.encode()) for name in _DBS}
        self._wlock = threading.Lock()
        self._gate = _ResizeGate()
        self._closed = False
        self._prune_hooks: list[tuple[str, PruneHook]] = []

        def init(txn: Txn) -> None:
            meta = self._db["meta"]
            version = txn.get(_SCHEMA, db=meta)
            if version is None:
                txn.put(_SCHEMA, _h(SCHEMA_VERSION), db=meta)
            elif version != _h(SCHEMA_VERSION):
                found = struct.unpack(">Q", version)[0] if len(version) == 8 else version.hex()
                raise StorageError(
                    f"store at {self.path} has schema {found}, this version reads schema {SCHEMA_VERSION} "
                    "(the state tree format changed): start from an empty folder"
                )

        try:
            self._write(init)
        except BaseException:
            self._env.close()
            raise

    # --- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        with self._wlock:
            if not self._closed:
                self._closed = True
                self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    def _read(self, fn: Callable[[Txn], T]) -> T:
        with self._gate.reading(), self._env.begin(buffers=False) as txn:
            return fn(txn)

    def _write(self, fn: Callable[[Txn], T], *, durable: bool = False) -> T:
        """Run ``fn`` in one write transaction; on MapFullError grow the map and run it again."""
        with self._wlock:
            if self._closed:
                raise StorageError("store is closed")
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        result = fn(txn)
                except lmdb.MapFullError:
                    self._grow()
                    continue
                if durable and not self.sync:
                    self._env.sync(True)
                return result

    def _grow(self) -> None:
        new = self.map_size * 2
        self._gate.resize(lambda: self._env.set_mapsize(new))

    def _head_in(self, txn: Txn) -> tuple[int, bytes] | None:
        raw = txn.get(_HEAD, db=self._db["meta"])
        if raw is None:
            return None
        return struct.unpack(">Q", raw[:8])[0], raw[8:]

    def _root_in(self, txn: Txn) -> bytes:
        return txn.get(_ROOT, db=self._db["meta"]) or merkle.EMPTY

    def _root_version_in(self, txn: Txn, root: bytes) -> int:
        """The version a (committed) root's record is stored at; StorageError if unknown."""
        if root == merkle.EMPTY:
            return 0
        raw = txn.get(root, db=self._db["roots"])
        if raw is None:
            raise StorageError(
                f"unknown state root {root.hex()[:16]} (never committed here, or pruned: "
                f"this store keeps the state from height {self._base_in(txn)[0]} on)"
            )
        return int.from_bytes(raw, "big")

    def _base_in(self, txn: Txn) -> tuple[int, int]:
        raw = txn.get(_BASE, db=self._db["meta"])
        return (0, 0) if raw is None else struct.unpack(">QQ", raw)

    # --- reading ------------------------------------------------------------------------

    def base(self) -> int:
        """The lowest height whose block, certificate and state tree this store holds: 0
        unless pruned (:meth:`prune`) or started from a snapshot (:meth:`begin_install`)."""
        return self._read(self._base_in)[0]

    def require_height(self, height: int) -> None:
        """Raise :class:`Pruned` for a height below :meth:`base`, with what is kept."""
        base = self.base()
        if height < base:
            raise Pruned(
                f"height {height} is not kept here: this node keeps blocks and state from "
                f"height {base} on (pruned, or started from a state snapshot)"
            )

    def head(self) -> tuple[int, bytes] | None:
        """(height, block hash) of the last committed block, None before the first."""
        return self._read(self._head_in)

    def state_root(self) -> bytes:
        """Root of the state after the head block (the empty root before any)."""
        return self._read(self._root_in)

    def get_block(self, height: int) -> Block | None:
        raw = self._read(lambda t: t.get(_h(height), db=self._db["blocks"]))
        return None if raw is None else Block.decode(raw)

    def get_block_by_hash(self, h: bytes) -> Block | None:
        def read(txn: Txn) -> bytes | None:
            height = txn.get(h, db=self._db["hashes"])
            return None if height is None else txn.get(height, db=self._db["blocks"])

        raw = self._read(read)
        return None if raw is None else Block.decode(raw)

    def get_height_by_hash(self, h: bytes) -> int | None:
        raw = self._read(lambda t: t.get(h, db=self._db["hashes"]))
        return None if raw is None else struct.unpack(">Q", raw)[0]

    def get_header(self, height: int) -> Header | None:
        raw = self._read(lambda t: t.get(_h(height), db=self._db["headers"]))
        return None if raw is None else Header.decode(raw)

    def get_certificate(self, height: int) -> Certificate | None:
        raw = self._read(lambda t: t.get(_h(height), db=self._db["certs"]))
        return None if raw is None else Certificate.decode(raw)

    def get_receipts(self, height: int) -> list[Receipt]:
        raw = self._read(lambda t: t.get(_h(height), db=self._db["receipts"]))
        if raw is None:
            return []
        return [Receipt.from_obj(r) for r in encoding.decode(raw)]

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index in block) of a committed transaction."""
        raw = self._read(lambda t: t.get(tx_hash, db=self._db["txs"]))
        return None if raw is None else struct.unpack(">QI", raw)

    def get_state(self, key: bytes) -> bytes | None:
        return self._read(lambda t: t.get(key, db=self._db["state"]))

    def get_state_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        def read(txn: Txn) -> dict[bytes, bytes | None]:
            db = self._db["state"]
            return {k: txn.get(k, db=db) for k in keys}

        return self._read(read)

    def prove_state(
        self, key: bytes, root: bytes | None = None
    ) -> tuple[bytes | None, merkle.StateProof]:
        """The value of ``key`` under ``root`` (default: the current root) and its proof.

        Any root the store ever committed can be used: tree nodes are never deleted.
        """

        def read(txn: Txn) -> tuple[bytes | None, merkle.StateProof]:
            nodes = self._db["nodes"]
            at = self._root_in(txn) if root is None else root
            return tree.prove(
                lambda h: txn.get(h, db=nodes), at, key, self._root_version_in(txn, at)
            )

        return self._read(read)

    def snapshot(self) -> Snapshot:
        return Snapshot(self)

    def iter_state(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Entries with ``prefix`` in key order.

        Read in chunks, each in its own read transaction, so an unfinished iteration never
        pins a transaction; use :meth:`Snapshot.iter_state` for a single point-in-time view.
        """
        start = prefix
        skip_first = False
        while True:

            def chunk(
                txn: Txn, start: bytes = start, skip: bool = skip_first
            ) -> list[tuple[bytes, bytes]]:
                cur = txn.cursor(db=self._db["state"])
                out: list[tuple[bytes, bytes]] = []
                if not cur.set_range(start):
                    return out
                for k, v in cur:
                    if skip and k == start:
                        continue
                    if not k.startswith(prefix) or len(out) >= _ITER_CHUNK:
                        break
                    out.append((k, v))
                return out

            items = self._read(chunk)
            yield from items
            if len(items) < _ITER_CHUNK:
                return
            start, skip_first = items[-1][0], True

    # --- writing ------------------------------------------------------------------------

    def compute_state_update(self, writes: Mapping[bytes, bytes | None]) -> StateUpdate:
        """The state root after ``writes`` (None deletes) on the current state; writes nothing."""
        for k, v in writes.items():
            if (
                type(k) is not bytes
                or not 0 < len(k) <= 511
                or (v is not None and type(v) is not bytes)
            ):
                raise StorageError("state keys must be 1..511 bytes and values bytes or None")
        frozen = dict(writes)

        def read(txn: Txn) -> StateUpdate:
            nodes = self._db["nodes"]
            base = self._root_in(txn)
            head = self._head_in(txn)
            version = 0 if head is None else head[0] + 1
            # A cursor's get: positional, so cheaper per call than txn.get(k, db=...).
            root, new = tree.compute_update(
                txn.cursor(db=nodes).get,
                base,
                frozen,
                version=version,
                root_version=self._root_version_in(txn, base),
            )
            return StateUpdate(root, base, frozen, new, version)

        return self._read(read)

    def commit_block(
        self,
        block: Block,
        certificate: Certificate | None,
        receipts: Sequence[Receipt],
        writes: Mapping[bytes, bytes | None],
        update: StateUpdate,
    ) -> None:
        """Write ``block`` and everything that follows from it in one transaction.

        Refused with StorageError (and nothing written) unless: the height is head + 1 (0 with
        a zero parent hash for the first block), the parent hash is the head's hash, the
        header's state root is ``update.root``, ``update`` was computed on the current root,
        for this height, from exactly ``writes``, the receipts match the transactions and the
        header's tx root, the certificate (if any) is for this block, and no transaction was
        committed before.
        """
        header = block.header
        if header.state_root != update.root:
            raise StorageError("header state root differs from the computed state update")
        if update.version != header.height:
            raise StorageError("state update was computed for another height")
        if (writes if type(writes) is dict else dict(writes)) != update.writes:
            raise StorageError("state writes differ from those the state update was computed from")
        if len(receipts) != len(block.txs) or any(
            r.tx_hash != t.hash for r, t in zip(receipts, block.txs, strict=True)
        ):
            raise StorageError("receipts do not match the block's transactions")
        leaves = [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(block.txs, receipts, strict=True)]
        if merkle.merkle_root(leaves) != header.tx_root:
            raise StorageError(
                "header tx root does not cover the block's transactions and receipts"
            )
        block_hash = block.hash
        if certificate is not None and (
            certificate.height != header.height or certificate.block_hash != block_hash
        ):
            raise StorageError("certificate is for another block")
        block_bytes = block.encode()
        header_bytes = header.encode()
        receipts_bytes = encoding.encode_encoded_list([r.encode() for r in receipts])
        cert_bytes = None if certificate is None else certificate.encode()
        hk = _h(header.height)
        # In key order, for the B-tree's locality (sorting the keys alone: bytes compare
        # directly, twice as fast as sorting (key, value) pairs).
        checked = update.writes  # equal to ``writes`` (checked above), and a dict
        state_keys = sorted(checked)
        state_puts = [(k, v) for k in state_keys if (v := checked[k]) is not None]
        state_deletes = (
            [k for k in state_keys if checked[k] is None]
            if len(state_puts) < len(state_keys)
            else []
        )
        pack_loc = struct.Struct(">QI").pack
        tx_items = [(tx.hash, pack_loc(header.height, i)) for i, tx in enumerate(block.txs)]
        nodes = update.nodes

        def write(txn: Txn) -> None:
            db = self._db
            head = self._head_in(txn)
            if head is None:
                if header.height != 0 or header.parent_hash != ZERO_HASH:
                    raise StorageError("the first block must have height 0 and a zero parent hash")
            else:
                if header.height != head[0] + 1:
                    raise StorageError(
                        f"block height {header.height} does not follow head {head[0]}"
                    )
                if header.parent_hash != head[1]:
                    raise StorageError("block parent hash is not the head's hash")
            if self._root_in(txn) != update.base_root:
                raise StorageError("state update was computed on another state root")
            txn.put(hk, block_bytes, db=db["blocks"])
            txn.put(hk, header_bytes, db=db["headers"])
            if not txn.put(block_hash, hk, db=db["hashes"], overwrite=False):
                raise StorageError("block hash already stored")
            if tx_items:
                _, added = txn.cursor(db=db["txs"]).putmulti(tx_items, overwrite=False)
                if added != len(tx_items):
                    txs_db = db["txs"]
                    again = next(
                        (k.hex()[:16] for k, v in tx_items if txn.get(k, db=txs_db) != v), ""
                    )
                    raise StorageError(f"transaction {again} was committed before")
            txn.put(hk, receipts_bytes, db=db["receipts"])
            if cert_bytes is not None:
                txn.put(hk, cert_bytes, db=db["certs"])
            state = db["state"]
            for k in state_deletes:
                txn.delete(k, db=state)
            if state_puts:
                txn.cursor(db=state).putmulti(state_puts)
            if nodes:
                cur = txn.cursor(db=db["nodes"])
                # All keys share the new version, which follows every stored one, and the
                # tree emits them in key order (post-order, see tree.py): appended to the
                # B-tree (full pages, no searching). Append only when the first key follows
                # the last stored one (never otherwise for heights that only grow). A key
                # out of order (nodes deeper than 16 nibbles) is not appended (LMDB refuses
                # it as existing), and the plain insert after puts it in; a key stored
                # before keeps its record, as without append.
                append = not cur.last() or cur.key() < next(iter(nodes))
                _, added = cur.putmulti(nodes.items(), overwrite=False, append=append)
                if append and added < len(nodes):
                    cur.putmulti(nodes.items(), overwrite=False)
                txn.put(update.root, _h(update.version), db=db["roots"])
            meta = db["meta"]
            txn.put(_HEAD, hk + block_hash, db=meta)
            txn.put(_ROOT, update.root, db=meta)

        self._write(write)

    def set_certificate(self, height: int, cert: Certificate) -> None:
        """Attach (or replace) the certificate of a committed block."""

        def write(txn: Txn) -> None:
            raw = txn.get(_h(height), db=self._db["headers"])
            if raw is None:
                raise StorageError(f"no block at height {height}")
            if cert.height != height or cert.block_hash != Header.decode(raw).hash:
                raise StorageError("certificate is for another block")
            txn.put(_h(height), cert.encode(), db=self._db["certs"])

        self._write(write)

    def put_safety(self, key: bytes, value: bytes) -> None:
        """Store consensus safety state; it is on disk (synced) when this returns."""
        sealed = seal_safety(value)
        self._write(lambda t: t.put(key, sealed, db=self._db["safety"]), durable=True)

    def get_safety(self, key: bytes) -> bytes | None:
        """The stored safety value; :class:`SafetyRecordDamaged` if it fails its checksum."""
        record = self._read(lambda t: t.get(key, db=self._db["safety"]))
        return None if record is None else open_safety(key, bytes(record))

    def iter_safety(self) -> list[tuple[bytes, bytes]]:
        """Every raw (sealed) safety record, for ``--verify``."""
        return self._read(
            lambda t: [(bytes(k), bytes(v)) for k, v in t.cursor(db=self._db["safety"])]
        )

    def put_meta(self, key: bytes, value: bytes) -> None:
        if key.startswith(b"accord/"):
            raise StorageError("meta keys starting with accord/ belong to the store")
        self._write(lambda t: t.put(key, value, db=self._db["meta"]), durable=True)

    def get_meta(self, key: bytes) -> bytes | None:
        return self._read(lambda t: t.get(key, db=self._db["meta"]))

    # --- side databases (derived indexes their owners keep beside the chain) -----------

    def _side(self, name: str) -> str:
        if name not in _SIDE:
            raise StorageError(f"{name!r} is not a side database of the store")
        return name

    def read_side(self, name: str, fn: Callable[[SideTxn], T]) -> T:
        """Run ``fn`` in one read transaction on the side database ``name``."""
        self._side(name)
        return self._read(lambda txn: fn(SideTxn(self, txn, name)))

    def write_side(self, name: str, fn: Callable[[SideTxn], T]) -> T:
        """Run ``fn`` in one write transaction on the side database ``name`` (serialised with
        block commits: keep it short). Run again from the start if the map must grow."""
        self._side(name)
        return self._write(lambda txn: fn(SideTxn(self, txn, name)))

    def add_prune_hook(self, name: str, fn: PruneHook) -> None:
        """Have :meth:`prune` call ``fn`` for each height it removes, in the same transaction
        and before the block goes, so an index of that height goes with the block."""
        self._prune_hooks.append((self._side(name), fn))

    def remove_prune_hook(self, fn: PruneHook) -> None:
        self._prune_hooks = [(n, f) for n, f in self._prune_hooks if f != fn]  # bound methods: ==

    def get_blocks(
        self, start: int, count: int
    ) -> list[tuple[int, bytes, Block | None, list[Receipt]]]:
        """Up to ``count`` consecutive (height, hash, block, receipts) from ``start``, in one
        read transaction; stops at the first height not stored (above the head, or pruned).
        A block without transactions comes as None (its hash is that of the stored canonical
        header): indexers skip most blocks of a quiet chain without decoding them."""

        def read(txn: Txn) -> list[tuple[int, bytes, bytes | None, bytes | None]]:
            db = self._db
            out: list[tuple[int, bytes, bytes | None, bytes | None]] = []
            for h in range(start, start + count):
                header = txn.get(_h(h), db=db["headers"])
                if header is None:
                    break
                receipts = txn.get(_h(h), db=db["receipts"])
                if receipts == _NO_RECEIPTS:
                    out.append((h, header, None, None))
                else:
                    out.append((h, header, txn.get(_h(h), db=db["blocks"]), receipts))
            return out

        result: list[tuple[int, bytes, Block | None, list[Receipt]]] = []
        for h, header, raw, raw_receipts in self._read(read):
            if raw is None:
                result.append((h, encoding.sha256(header), None, []))
                continue
            block = Block.decode(raw)
            receipts = [] if raw_receipts is None else encoding.decode(raw_receipts)
            result.append((h, block.hash, block, [Receipt.from_obj(r) for r in receipts]))
        return result

    def stats(self) -> dict[str, Any]:
        """Entry counts per database and the map size (for operators and benchmarks)."""

        def read(txn: Txn) -> dict[str, Any]:
            return {name: txn.stat(db)["entries"] for name, db in self._db.items()}

        return {**self._read(read), "map_size": self.map_size}

    # --- state snapshot install (see accord.storage.snapshot) ---------------------------

    _REPLACED = (
        "blocks",
        "headers",
        "hashes",
        "txs",
        "receipts",
        "certs",
        "state",
        "nodes",
        "roots",
    )

    def installing(self) -> int | None:
        """The height of a snapshot install begun and not finished (a crash mid-sync), or None."""
        raw = self._read(lambda t: t.get(_INSTALL, db=self._db["meta"]))
        return None if raw is None else int(struct.unpack(">Q", raw)[0])

    def begin_install(self, height: int) -> None:
        """Empty the chain and state (safety state and caller meta stay) to take a snapshot of
        ``height``. Until :meth:`finish_install` the store has no head and is marked as
        installing, so a crash in between is seen at the next start (:meth:`abort_install`)."""

        def write(txn: Txn) -> None:
            for name in self._REPLACED:
                txn.drop(self._db[name], delete=False)
            meta = self._db["meta"]
            for key in (_HEAD, _ROOT, _BASE):
                txn.delete(key, db=meta)
            txn.put(_INSTALL, _h(height), db=meta)

        self._write(write, durable=True)

    def install_chunk(
        self, entries: Sequence[tuple[bytes, bytes]], nodes: Mapping[bytes, bytes]
    ) -> None:
        """Write one verified chunk: its state entries and its subtree's records."""

        def write(txn: Txn) -> None:
            if txn.get(_INSTALL, db=self._db["meta"]) is None:
                raise StorageError("no snapshot install in progress")
            if entries:
                txn.cursor(db=self._db["state"]).putmulti(sorted(entries))
            if nodes:
                txn.cursor(db=self._db["nodes"]).putmulti(sorted(nodes.items()))

        self._write(write)

    def finish_install(
        self,
        block: Block,
        certificate: Certificate,
        receipts: Sequence[Receipt],
        nodes: Mapping[bytes, bytes],
        entries: int,
    ) -> None:
        """Make the installed snapshot the store's state at ``block``, which becomes head and
        base, in one transaction; refused (nothing changes) unless the state holds exactly
        ``entries`` entries and the root record of the header's state root is stored."""
        header = block.header
        hk = _h(header.height)
        root = header.state_root

        def write(txn: Txn) -> None:
            db = self._db
            if txn.get(_INSTALL, db=db["meta"]) != hk:
                raise StorageError(f"no snapshot install in progress for height {header.height}")
            if nodes:
                txn.cursor(db=db["nodes"]).putmulti(sorted(nodes.items()))
            have = txn.stat(db["state"])["entries"]
            if have != entries:
                raise StorageError(
                    f"the installed state holds {have} entries, the snapshot {entries}"
                )
            if root != merkle.EMPTY:
                rec = txn.get(tree.node_key(header.height, 0, 0, root), db=db["nodes"])
                if rec is None or tree.record_hash(rec) != root:
                    raise StorageError(
                        "the installed state tree has no record for the header's state root"
                    )
                txn.put(root, hk, db=db["roots"])
            txn.put(hk, block.encode(), db=db["blocks"])
            txn.put(hk, header.encode(), db=db["headers"])
            txn.put(block.hash, hk, db=db["hashes"])
            for i, tx in enumerate(block.txs):
                txn.put(tx.hash, struct.pack(">QI", header.height, i), db=db["txs"])
            txn.put(
                hk, encoding.encode_encoded_list([r.encode() for r in receipts]), db=db["receipts"]
            )
            txn.put(hk, certificate.encode(), db=db["certs"])
            meta = db["meta"]
            txn.put(_HEAD, hk + block.hash, db=meta)
            txn.put(_ROOT, root, db=meta)
            txn.put(_BASE, hk + hk, db=meta)
            txn.delete(_INSTALL, db=meta)

        self._write(write, durable=True)

    def abort_install(self) -> None:
        """Drop a half-installed snapshot: the store is empty again (safety state kept), and
        the chain commits its genesis anew when it opens it."""

        def write(txn: Txn) -> None:
            for name in self._REPLACED:
                txn.drop(self._db[name], delete=False)
            meta = self._db["meta"]
            keep = {_SCHEMA}
            for key in [k for k, _ in txn.cursor(db=meta) if k not in keep]:
                txn.delete(key, db=meta)

        self._write(write, durable=True)

    # --- pruning ------------------------------------------------------------------------

    def prune(self, keep: int, *, batch: int = 32) -> int:
        """Remove blocks and state versions below the last ``keep`` heights; return the new base.

        A block's certificate, receipts, hash and tx index entries go with it. A tree record
        goes once no kept root reaches it: an old record that a newer tree still uses was
        used by every tree in between (an update only copies references it read), so the
        records to drop are, per height ``u``, those of tree ``u - 1`` that tree ``u`` lacks,
        found by walking both trees where they differ (cost: the records a block changed).
        Each batch of heights is one write transaction that also moves the base, so a crash
        leaves a consistent, partly pruned store; LMDB reuses the freed pages.
        """
        if keep < 1:
            raise StorageError("prune must keep at least the head")
        target: int | None = None
        while True:

            def write(txn: Txn, target: int | None = target) -> int | None:
                head = self._head_in(txn)
                if head is None:
                    return None
                goal = head[0] - keep + 1 if target is None else target
                base, version = self._base_in(txn)
                if goal <= base:
                    return None
                stop = min(goal, base + batch)
                for u in range(base + 1, stop + 1):
                    version = self._prune_height(txn, u, version)
                self._put_base(txn, stop, version)
                return goal if stop < goal else None

            target = self._write(write)
            if target is None:
                return self.base()

    def _put_base(self, txn: Txn, height: int, version: int) -> None:
        txn.put(_BASE, _h(height) + _h(version), db=self._db["meta"])

    def _prune_height(self, txn: Txn, u: int, old_version: int) -> int:
        """Drop block ``u - 1`` and the records of tree ``u - 1`` that tree ``u`` does not use;
        return the version of tree ``u``'s root record."""
        db = self._db
        old_raw = txn.get(_h(u - 1), db=db["headers"])
        new_raw = txn.get(_h(u), db=db["headers"])
        if old_raw is None or new_raw is None:
            raise StorageError(
                f"cannot prune: the header at height {u - 1 if old_raw is None else u} is missing"
            )
        old_root, new_root = Header.decode(old_raw).state_root, Header.decode(new_raw).state_root
        nodes = db["nodes"]
        if new_root == merkle.EMPTY:
            new_version = 0
        elif txn.get(tree.node_key(u, 0, 0, new_root), db=nodes) is not None:
            new_version = u
        elif new_root == old_root:
            new_version = old_version
        else:
            raise StorageError(f"cannot prune: the state root record of height {u} is missing")
        if (old_root, old_version) != (new_root, new_version):
            get = txn.cursor(db=nodes).get
            stale: list[bytes] = []
            _stale(get, (old_root, old_version), (new_root, new_version), 0, 0, stale)
            for key in stale:
                txn.delete(key, db=nodes)
            roots = db["roots"]
            if old_root != new_root and txn.get(old_root, db=roots) == _h(old_version):
                txn.delete(old_root, db=roots)
        for name, hook in self._prune_hooks:
            hook(SideTxn(self, txn, name), u - 1)
        raw_block = txn.get(_h(u - 1), db=db["blocks"])
        if raw_block is not None:
            block = Block.decode(raw_block)
            txn.delete(block.hash, db=db["hashes"])
            for tx in block.txs:
                txn.delete(tx.hash, db=db["txs"])
        for name in ("blocks", "headers", "receipts", "certs"):
            txn.delete(_h(u - 1), db=db[name])
        return new_version


def _stale(
    get: Callable[[bytes], bytes | None],
    old: tuple[bytes, int],
    new: tuple[bytes, int] | None,
    depth: int,
    path: int,
    out: list[bytes],
) -> None:
    """Keys of the records under ``old`` (at ``depth`` on ``path``) that ``new``, the subtree
    at the same place in the next tree (None: nothing there), does not share."""
    if new == old or old[0] == merkle.EMPTY:
        return
    key = tree.node_key(old[1], depth, path, old[0])
    out.append(key)
    rec = get(key)
    if rec is None or rec[0] != merkle.STATE_NODE_PREFIX[0]:
        return  # a leaf (or a record already gone): nothing below it
    kept: dict[int, tuple[bytes, int]] = {}
    if new is not None and new[0] != merkle.EMPTY:
        new_rec = get(tree.node_key(new[1], depth, path, new[0]))
        if new_rec is not None and new_rec[0] == merkle.STATE_NODE_PREFIX[0]:
            kept = {nib: (h, int.from_bytes(v, "big")) for nib, h, v in tree.node_children(new_rec)}
    shift = 252 - 4 * depth
    for nib, h, v in tree.node_children(rec):
        _stale(
            get, (h, int.from_bytes(v, "big")), kept.get(nib), depth + 1, path | (nib << shift), out
        )
