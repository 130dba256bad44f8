"""State snapshots: the state at one certified height, cut into chunks a joining node can check.

A joining validator should not replay the chain from genesis to learn the state. It takes a
snapshot instead, from peers it does not trust, so every byte must be checkable against the
one thing it can trust: a header whose certificate a quorum of the genesis validators signed.

Layout. The 16-ary state tree (:mod:`accord.base.merkle`) is partitioned into aligned subtrees,
*cells*: all entries whose path starts with a cell's prefix (``depth`` nibbles). A cell holds at
most :data:`MAX_CHUNK_ENTRIES` entries and :data:`MAX_CHUNK_BYTES` of keys and values, unless it
is a single entry; cells are found by splitting from a bucket depth (chosen from the entry
count) while a cell is too big, so the partition is a function of the state alone and every
honest peer cuts the same snapshot of a height the same way. The **manifest** lists the cells
(depth, prefix, entry count, subtree hash) with the height's block, certificate and receipts.
A **chunk** is one cell's (key, value) entries in path order.

Checks, in order, before anything is written (:func:`verify_manifest`, :func:`verify_chunk`):

* the certificate verifies against the validator set and covers the block; the block's
  transactions and receipts match its header's tx root;
* the cells are well formed, in path order and disjoint, and recombine (the tree's own
  hashing and promotion rules) to the header's state root: a wrong manifest is refused whole;
* a chunk has exactly its cell's count of entries, each under the cell's prefix, in strictly
  ascending path order, and rebuilds to the cell's hash: a tampered, truncated or reordered
  chunk is refused, and the chunk is asked from another peer.

So a chunk that is installed is the state's own, and the install (:meth:`Store.finish_install`)
only commits once every cell is in and the root record is there. Memory: the builder holds
one bucket at a time (1/256 of the state from 1M entries up), the installer one chunk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.base import encoding, merkle
from accord.base.errors import AccordError, DecodeError
from accord.base.types import Block, Certificate, Receipt
from accord.storage import tree
from accord.storage.store import Store

FORMAT = 1
MAX_CHUNK_ENTRIES = 4096
MAX_CHUNK_BYTES = 1 << 20
"""A chunk (at most this much of keys and values, plus framing) fits a catch-up answer."""
MAX_CELLS = 1 << 16
MAX_BUCKET_DEPTH = 2
"""The builder's first cut: at most 256 bucket files open, each sorted in memory on its own."""

_sha = hashlib.sha256
_NODE = merkle.STATE_NODE_PREFIX
_ENTRY = struct.Struct(">HI")


class SnapshotInvalid(AccordError):
    """A snapshot manifest or chunk that does not match what it must (sent by a lying or broken peer)."""

    code = "snapshot_invalid"


def _mask(depth: int) -> int:
    return (1 << (256 - 4 * depth)) - 1


@dataclass(frozen=True)
class Cell:
    """One aligned subtree of the partition: paths starting with ``prefix``'s first ``depth``
    nibbles (the rest of ``prefix`` is zero), holding ``count`` entries that hash to ``hash``."""

    depth: int
    prefix: bytes
    count: int
    hash: bytes

    def to_obj(self) -> list[encoding.Value]:
        return [self.depth, self.prefix, self.count, self.hash]

    @classmethod
    def from_obj(cls, obj: Any) -> Cell:
        if type(obj) is not list or len(obj) != 4:
            raise SnapshotInvalid("a cell is [depth, prefix, count, hash]")
        depth, prefix, count, h = obj
        if type(depth) is not int or not 0 <= depth <= merkle.MAX_DEPTH:
            raise SnapshotInvalid("cell depth outside 0..64")
        if (
            type(prefix) is not bytes
            or len(prefix) != 32
            or int.from_bytes(prefix, "big") & _mask(depth)
        ):
            raise SnapshotInvalid("cell prefix is not a 32-byte path cut to its depth")
        if type(count) is not int or count < 1:
            raise SnapshotInvalid("cell count must be positive")
        if type(h) is not bytes or len(h) != 32:
            raise SnapshotInvalid("cell hash must be 32 bytes")
        return cls(depth, prefix, count, h)

    def holds(self, path: bytes) -> bool:
        shift = 256 - 4 * self.depth
        return int.from_bytes(path, "big") >> shift == int.from_bytes(self.prefix, "big") >> shift


@dataclass(frozen=True)
class Manifest:
    """What a snapshot is of (the certified block) and how it is cut (the cells)."""

    block: Block
    certificate: Certificate
    receipts: tuple[Receipt, ...]
    cells: tuple[Cell, ...]

    @property
    def height(self) -> int:
        return self.block.header.height

    @property
    def state_root(self) -> bytes:
        return self.block.header.state_root

    @property
    def entries(self) -> int:
        return sum(c.count for c in self.cells)

    def to_obj(self) -> list[encoding.Value]:
        return [
            FORMAT,
            self.block.to_obj(),
            self.certificate.to_obj(),
            [r.to_obj() for r in self.receipts],
            [c.to_obj() for c in self.cells],
        ]

    def encode(self) -> bytes:
        return encoding.encode(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any) -> Manifest:
        if type(obj) is not list or len(obj) != 5 or obj[0] != FORMAT:
            raise SnapshotInvalid(f"a manifest is [{FORMAT}, block, certificate, receipts, cells]")
        if type(obj[3]) is not list or type(obj[4]) is not list:
            raise SnapshotInvalid("manifest receipts and cells are lists")
        if len(obj[4]) > MAX_CELLS:
            raise SnapshotInvalid(f"a manifest has at most {MAX_CELLS} cells")
        try:
            block = Block.from_obj(obj[1])
            cert = Certificate.from_obj(obj[2])
            receipts = tuple(Receipt.from_obj(r) for r in obj[3])
        except AccordError as e:
            raise SnapshotInvalid(f"manifest block, certificate or receipts: {e.message}") from None
        return cls(block, cert, receipts, tuple(Cell.from_obj(c) for c in obj[4]))

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        try:
            obj = encoding.decode(raw)
        except DecodeError as e:
            raise SnapshotInvalid(f"manifest does not decode: {e.message}") from None
        return cls.from_obj(obj)


# --- the partition's root --------------------------------------------------------------------


def combine(
    cells: Sequence[Cell], version: int = 0, leaves: Callable[[int], bytes] | None = None
) -> tuple[bytes, dict[bytes, bytes]]:
    """The state root of a tree cut into ``cells`` and, with ``leaves`` (cell index -> the
    leaf record of a one-entry cell), the records of the nodes above the cells at ``version``.

    SnapshotInvalid unless the cells are in path order and disjoint. Follows the tree's rules:
    a node over a lone leaf is that leaf (promoted, so its record is stored where it ends up).
    """
    ints = [int.from_bytes(c.prefix, "big") for c in cells]
    for i in range(1, len(cells)):
        if ints[i] <= ints[i - 1] | _mask(cells[i - 1].depth):
            raise SnapshotInvalid("manifest cells overlap or are out of path order")
    records: dict[bytes, bytes] = {}
    ver = tree.version_bytes(version)

    def place(depth: int, path: int, h: bytes, leaf: int | None) -> None:
        if leaves is not None and leaf is not None:
            records[tree.node_key(ver, depth, path, h)] = leaves(leaf)

    def node(depth: int, lo: int, hi: int, path: int) -> tuple[bytes, int | None]:
        if hi - lo == 1 and cells[lo].depth == depth:
            return cells[lo].hash, (lo if cells[lo].count == 1 else None)
        if depth >= merkle.MAX_DEPTH or any(cells[i].depth <= depth for i in range(lo, hi)):
            raise SnapshotInvalid("manifest cells overlap")
        shift = 252 - 4 * depth
        children: list[tuple[int, int, bytes, int | None]] = []
        i = lo
        while i < hi:
            nib = (ints[i] >> shift) & 15
            j = i + 1
            while j < hi and (ints[j] >> shift) & 15 == nib:
                j += 1
            cpath = path | (nib << shift)
            h, leaf = node(depth + 1, i, j, cpath)
            children.append((nib, cpath, h, leaf))
            i = j
        if len(children) == 1 and children[0][3] is not None:
            return children[0][2], children[0][3]  # a lone leaf moves up
        for _, cpath, h, leaf in children:
            place(depth + 1, cpath, h, leaf)
        bitmap = 0
        for nib, *_ in children:
            bitmap |= 1 << nib
        pre = _NODE + bitmap.to_bytes(2, "big") + b"".join(c[2] for c in children)
        h = _sha(pre).digest()
        if leaves is not None:
            records[tree.node_key(ver, depth, path, h)] = pre + ver * len(children)
        return h, None

    if not cells:
        return merkle.EMPTY, records
    root, leaf = node(0, 0, len(cells), 0)
    place(0, 0, root, leaf)
    return root, records


# --- checks ---------------------------------------------------------------------------------


def verify_manifest(manifest: Manifest, verify_cert: Callable[[Certificate], None]) -> None:
    """Refuse (SnapshotInvalid) a manifest that its certificate, block and root do not vouch for."""
    block, cert = manifest.block, manifest.certificate
    if cert.height != block.header.height or cert.block_hash != block.hash:
        raise SnapshotInvalid("the certificate is not for the manifest's block")
    try:
        verify_cert(cert)
    except AccordError as e:
        raise SnapshotInvalid(f"the certificate does not verify: {e.message}") from None
    if len(manifest.receipts) != len(block.txs) or any(
        r.tx_hash != t.hash for r, t in zip(manifest.receipts, block.txs, strict=True)
    ):
        raise SnapshotInvalid("the receipts do not match the block's transactions")
    leaves = [
        merkle.tx_leaf(t.hash, r.hash) for t, r in zip(block.txs, manifest.receipts, strict=True)
    ]
    if merkle.merkle_root(leaves) != block.header.tx_root:
        raise SnapshotInvalid("the block's transactions and receipts do not match its tx root")
    root, _ = combine(manifest.cells)
    if root != manifest.state_root:
        raise SnapshotInvalid(
            f"the cells combine to root {root.hex()[:16]}, not the header's "
            f"{manifest.state_root.hex()[:16]}"
        )


@dataclass
class Chunk:
    """A verified chunk, ready to install."""

    entries: list[tuple[bytes, bytes]]
    nodes: dict[bytes, bytes]
    leaf: bytes | None
    """The leaf record of a one-entry cell (stored by :func:`combine`, where it ends up)."""


def verify_chunk(cell: Cell, raw: bytes, version: int) -> Chunk:
    """The entries of ``raw`` if they are exactly ``cell``'s (see module doc), else SnapshotInvalid."""
    try:
        obj = encoding.decode(raw)
    except DecodeError as e:
        raise SnapshotInvalid(f"chunk does not decode: {e.message}") from None
    if type(obj) is not list:
        raise SnapshotInvalid("a chunk is a list of [key, value]")
    if len(obj) != cell.count:
        raise SnapshotInvalid(f"chunk has {len(obj)} entries, its cell {cell.count}")
    entries: list[tuple[bytes, bytes]] = []
    paths: list[bytes] = []
    for item in obj:
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not bytes
            or type(item[1]) is not bytes
        ):
            raise SnapshotInvalid("a chunk entry is [key, value] (bytes)")
        k, v = item
        if not 0 < len(k) <= 511:
            raise SnapshotInvalid("a state key is 1..511 bytes")
        p = _sha(k).digest()
        if paths and p <= paths[-1]:
            raise SnapshotInvalid("chunk entries are not in strictly ascending path order")
        if not cell.holds(p):
            raise SnapshotInvalid("a chunk entry lies outside its cell")
        paths.append(p)
        entries.append((k, v))
    h, nodes = tree.build_subtree(paths, [v for _, v in entries], cell.depth, version)
    if h != cell.hash:
        raise SnapshotInvalid(f"chunk hashes to {h.hex()[:16]}, its cell to {cell.hash.hex()[:16]}")
    if cell.count == 1:
        return Chunk(entries, {}, next(iter(nodes.values())))
    return Chunk(entries, nodes, None)


# --- building (the serving side) ------------------------------------------------------------


def _bucket_depth(count: int) -> int:
    d = 0
    while d < MAX_BUCKET_DEPTH and count > MAX_CHUNK_ENTRIES * 16**d:
        d += 1
    return d


def _split(
    items: list[tuple[bytes, bytes, bytes]],
    sizes: list[int],
    depth: int,
    lo: int,
    hi: int,
    out: list[tuple[int, int, int]],
) -> None:
    n = hi - lo
    if n == 1 or (n <= MAX_CHUNK_ENTRIES and sizes[hi] - sizes[lo] <= MAX_CHUNK_BYTES):
        out.append((depth, lo, hi))
        return
    if depth >= merkle.MAX_DEPTH:
        raise AccordError("two state entries share a full path")
    shift = 252 - 4 * depth
    i = lo
    while i < hi:
        nib = (int.from_bytes(items[i][0], "big") >> shift) & 15
        j = i + 1
        while j < hi and (int.from_bytes(items[j][0], "big") >> shift) & 15 == nib:
            j += 1
        _split(items, sizes, depth + 1, i, j, out)
        i = j


def build(
    store: Store, out_dir: str | Path, *, progress: Callable[[int, int], None] | None = None
) -> Manifest:
    """Write a snapshot of the store's head (which must be certified) under ``out_dir/<height>``.

    The state is read in one read transaction (a consistent view while blocks keep being
    committed), spread over bucket files by path prefix, then each bucket is sorted and cut
    into cells. The snapshot appears atomically (a rename) once complete, and its cells are
    checked to recombine to the header's root first: a damaged store is not served.
    ``progress(done, total)`` is called as entries are read and as buckets are cut.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with store.snapshot() as snap:
        head = snap.head()
        if head is None:
            raise AccordError("the store has no blocks")
        height = head[0]
        final = out_dir / str(height)
        if (final / "manifest.bin").exists():
            return Manifest.decode((final / "manifest.bin").read_bytes())
        tmp = out_dir / f".building-{height}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        total = snap._txn.stat(store._db["state"])["entries"]
        depth = _bucket_depth(total)
        files = [open(tmp / f"bucket-{b:03d}", "wb", buffering=1 << 16) for b in range(16**depth)]  # noqa: SIM115
        shift = 256 - 4 * depth
        try:
            for n, (k, v) in enumerate(snap.iter_state()):
                b = int.from_bytes(_sha(k).digest(), "big") >> shift if depth else 0
                files[b].write(_ENTRY.pack(len(k), len(v)) + k + v)
                if progress is not None and n % 8192 == 0:
                    progress(n, 2 * total)
        finally:
            for f in files:
                f.close()
        # From the same read transaction: pruning may remove this height meanwhile.
        txn, hk = snap._txn, struct.pack(">Q", height)
        raw_block, raw_cert, raw_receipts = (
            txn.get(hk, db=store._db[n]) for n in ("blocks", "certs", "receipts")
        )
    if raw_block is None or raw_cert is None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AccordError(f"the head block {height} or its certificate is missing: no snapshot")
    block, cert = Block.decode(raw_block), Certificate.decode(raw_cert)
    decoded = encoding.decode(raw_receipts) if raw_receipts is not None else []
    receipts = tuple(Receipt.from_obj(r) for r in decoded) if isinstance(decoded, list) else ()
    cells: list[Cell] = []
    done = 0
    try:
        for b in range(16**depth):
            path = tmp / f"bucket-{b:03d}"
            items = sorted((_sha(k).digest(), k, v) for k, v in _read_bucket(path.read_bytes()))
            path.unlink()
            if not items:
                continue
            sizes = [0]
            for _, k, v in items:
                sizes.append(sizes[-1] + len(k) + len(v))
            parts: list[tuple[int, int, int]] = []
            _split(items, sizes, depth, 0, len(items), parts)
            for d, lo, hi in parts:
                part = items[lo:hi]
                h, _ = tree.build_subtree([p for p, _, _ in part], [v for _, _, v in part], d, 0)
                prefix = (int.from_bytes(part[0][0], "big") & ~_mask(d)).to_bytes(32, "big")
                (tmp / f"chunk-{len(cells):06d}").write_bytes(
                    encoding.encode([[k, v] for _, k, v in part])
                )
                cells.append(Cell(d, prefix, hi - lo, h))
            done += len(items)
            if progress is not None:
                progress(total + done, 2 * total)
        manifest = Manifest(block, cert, receipts, tuple(cells))
        root, _ = combine(manifest.cells)
        if root != manifest.state_root:
            raise AccordError(
                f"the state read ({root.hex()[:16]}) does not match the head's root "
                f"{manifest.state_root.hex()[:16]}: the store is damaged, no snapshot"
            )
        (tmp / "manifest.bin").write_bytes(manifest.encode())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _read_bucket(raw: bytes) -> Iterator[tuple[bytes, bytes]]:
    at = 0
    while at < len(raw):
        kl, vl = _ENTRY.unpack_from(raw, at)
        at += _ENTRY.size
        yield raw[at : at + kl], raw[at + kl : at + kl + vl]
        at += kl + vl


def available(out_dir: str | Path) -> list[int]:
    """Heights of the complete snapshots under ``out_dir``, highest first."""
    out = []
    with_dirs = Path(out_dir)
    if not with_dirs.is_dir():
        return []
    for p in with_dirs.iterdir():
        if p.name.isdigit() and (p / "manifest.bin").exists():
            out.append(int(p.name))
    return sorted(out, reverse=True)


def keep_latest(out_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` highest snapshots."""
    for h in available(out_dir)[keep:]:
        shutil.rmtree(Path(out_dir) / str(h), ignore_errors=True)


def read_manifest(out_dir: str | Path, height: int) -> bytes | None:
    p = Path(out_dir) / str(height) / "manifest.bin"
    return p.read_bytes() if p.exists() else None


def read_chunk(out_dir: str | Path, height: int, index: int) -> bytes | None:
    if index < 0:
        return None
    p = Path(out_dir) / str(height) / f"chunk-{index:06d}"
    return p.read_bytes() if p.exists() else None


class Installer:
    """Puts a verified manifest's chunks into ``store`` (emptied by :meth:`begin`), in any
    order, and commits them with :meth:`finish`; :meth:`abort` drops a partial install."""

    def __init__(self, store: Store, manifest: Manifest) -> None:
        self.store = store
        self.manifest = manifest
        self._leaves: dict[int, bytes] = {}
        self._done: set[int] = set()

    def begin(self) -> None:
        self.store.begin_install(self.manifest.height)

    def add(self, index: int, chunk: Chunk) -> None:
        if index in self._done:
            return
        self.store.install_chunk(chunk.entries, chunk.nodes)
        if chunk.leaf is not None:
            self._leaves[index] = chunk.leaf
        self._done.add(index)

    @property
    def missing(self) -> list[int]:
        return [i for i in range(len(self.manifest.cells)) if i not in self._done]

    def finish(self) -> None:
        m = self.manifest
        if self.missing:
            raise SnapshotInvalid(f"{len(self.missing)} chunks are not installed yet")
        root, upper = combine(m.cells, m.height, self._leaves.__getitem__)
        if root != m.state_root:  # verify_manifest checked this; the records must agree
            raise SnapshotInvalid("the installed cells do not combine to the header's state root")
        self.store.finish_install(m.block, m.certificate, m.receipts, upper, m.entries)

    def abort(self) -> None:
        self.store.abort_install()


def install(
    store: Store,
    manifest: Manifest,
    chunks: Callable[[int, Cell], Chunk],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Install a verified manifest, with ``chunks(i, cell)`` giving cell ``i``'s verified chunk
    (it raises to give up: the half-installed state is then dropped)."""
    inst = Installer(store, manifest)
    inst.begin()
    try:
        for i, cell in enumerate(manifest.cells):
            inst.add(i, chunks(i, cell))
            if progress is not None:
                progress(cell.count)
        inst.finish()
    except BaseException:
        inst.abort()
        raise


__all__ = [
    "Cell",
    "Chunk",
    "Installer",
    "Manifest",
    "SnapshotInvalid",
    "available",
    "build",
    "combine",
    "install",
    "verify_chunk",
    "verify_manifest",
]
