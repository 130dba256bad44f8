"""The state tree's builder: batch updates and proofs over stored nodes.

Hashing rules are those of :mod:`accord.base.merkle` (the verifier side): a 16-ary compressed
sparse Merkle tree, nibble ``d`` of ``SHA-256(key)`` choosing the child at depth ``d``.
Nothing is ever deleted, so every old root stays readable and provable.

Node records are raw bytes, not the generic encoding, because a block of 5,000 transfers
touches tens of thousands of them:

* inner node with ``n`` non-empty children:
  ``0x03 || bitmap (2 bytes) || their n hashes || their n versions (8 bytes each)``: the
  first ``3 + 32 n`` bytes are exactly the preimage of its hash; the children's versions
  say under which key each child is stored.
* leaf: ``0x02 || path || SHA-256(value) || value``: the first 65 bytes are the preimage of
  its hash; the value rides along so that a proof against an *old* root can still return the
  value it proves.
* the empty subtree (32 zero bytes) is never stored.

Storage keys (:func:`node_key`, 49 bytes) are the node's *version* (8 bytes, big-endian:
the height of the block whose update created it), its *position* (9 bytes) and its hash.
The position is the node's path prefix (its first ``depth`` nibbles) padded with 1-bits,
cut to its first 16 nibbles, then one byte ``255 - depth``:

* The version makes the writes append-only. A block creates tens of thousands of nodes
  spread over the whole tree; keyed by version first they are one new run of keys after all
  older ones, so the commit appends full pages instead of dirtying pages all over LMDB's
  B-tree. A parent records its children's versions, so a descent still reads each node with
  one lookup.
* The padded position sorts a subtree's nodes in *post-order*: a child's padded prefix is at
  most its parent's, equal only for the last child along an all-ones path, where the deeper
  node's smaller ``255 - depth`` byte puts it first; and all of child ``i``'s subtree sorts
  before child ``i + 1``'s. :func:`compute_update` emits its records in exactly that order
  (children in nibble order, then the node), so the commit appends a block's records in
  order and within a version a path's chain of nodes sits on neighbouring pages. Only nodes
  deeper than 16 nibbles (paths sharing 64 bits, which random keys practically never do)
  break the order; they stay correct (the commit inserts what the append refused).
  Sixteen nibbles rather than all 64 keep keys 24 bytes shorter, which the commit writes
  tens of thousands of times per block. The price of positions: a leaf that loses its last
  sibling moves up and is stored again under its new position.
* The hash keeps the store content-addressed: with ``version`` 0 (tests, tools) every batch
  writes under the same version, and two roots never overwrite each other's nodes.

:func:`compute_update` never writes: it reads through a getter (one LMDB read transaction in
the store; a dict in tests) and returns the new root plus the new records by storage key, so
a proposed block's state root can be computed speculatively and its nodes written at commit.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_left
from collections.abc import Callable, Mapping

from accord.base.errors import StorageError
from accord.base.merkle import (
    EMPTY,
    MAX_DEPTH,
    STATE_LEAF_PREFIX,
    STATE_NODE_PREFIX,
    StateProof,
    state_path,
)

NodeGetter = Callable[[bytes], "bytes | None"]

_sha = hashlib.sha256
_LEAF = STATE_LEAF_PREFIX[0]
_NODE = STATE_NODE_PREFIX[0]
_NOVER = bytes(8)  # the version of an empty subtree (never read)
# Per depth d (in nibbles): the shift from a 256-bit path to nibble d, the mask that pads a
# path's first d nibbles with 1-bits, and the byte that orders deeper nodes first.
_SHIFT = [252 - 4 * d for d in range(MAX_DEPTH)]
_MASK = [(1 << (256 - 4 * d)) - 1 for d in range(MAX_DEPTH + 1)]
_DEPTH = [bytes([255 - d]) for d in range(MAX_DEPTH + 1)]
_CUT = 192  # a key holds the first 64 bits (16 nibbles) of the padded position
_NIBS: dict[int, tuple[int, ...]] = {}


def _nibs(bitmap: int) -> tuple[int, ...]:
    """The child indices set in ``bitmap``, ascending (cached: a few hundred distinct bitmaps)."""
    t = _NIBS.get(bitmap)
    if t is None:
        t = _NIBS[bitmap] = tuple(i for i in range(16) if bitmap >> i & 1)
    return t


def version_bytes(version: int) -> bytes:
    """The 8-byte form of a version, as in keys and records."""
    if not 0 <= version < 1 << 64:
        raise StorageError(f"tree version {version} outside 0..2**64-1")
    return version.to_bytes(8, "big")


def _at(depth: int, path: int) -> bytes:
    """The position part of a key for the node at ``depth`` on ``path`` (a 256-bit int)."""
    return ((path | _MASK[depth]) >> _CUT).to_bytes(8, "big") + _DEPTH[depth]


def node_key(version: int | bytes, depth: int, path: int, h: bytes) -> bytes:
    """Storage key of the node with hash ``h`` created at ``version`` (int or its 8 bytes), at
    ``depth`` on ``path`` (any 256-bit path through the node: only its first ``depth``
    nibbles count)."""
    v = version_bytes(version) if isinstance(version, int) else version
    return v + _at(depth, path) + h


def leaf_record(path: bytes, value: bytes) -> bytes:
    return STATE_LEAF_PREFIX + path + _sha(value).digest() + value


def record_hash(record: bytes) -> bytes:
    """The hash of a stored record (a prefix of it is the preimage)."""
    if record[0] == _LEAF:
        return _sha(record[:65]).digest()
    return _sha(record[: 3 + 32 * int.from_bytes(record[1:3], "big").bit_count()]).digest()


def node_children(record: bytes) -> list[tuple[int, bytes, bytes]]:
    """(child index, hash, version bytes) of each non-empty child of an inner node record;
    StorageError if the record is not a well-formed inner node."""
    if not record or record[0] != _NODE or len(record) < 3:
        raise StorageError("not an inner state tree node")
    bitmap = int.from_bytes(record[1:3], "big")
    n = bitmap.bit_count()
    if n == 0 or len(record) != 3 + 40 * n:
        raise StorageError("malformed inner state tree node")
    e = 3 + 32 * n
    return [
        (nib, record[3 + 32 * j : 35 + 32 * j], record[e + 8 * j : e + 8 * j + 8])
        for j, nib in enumerate(_nibs(bitmap))
    ]


def _split(rec: bytes, e: int) -> tuple[list[bytes], list[bytes]]:
    """An inner node record's child hashes and child versions (hashes end at ``e``), as lists
    to edit; unchecked (records come from this module)."""
    return [rec[k : k + 32] for k in range(3, e, 32)], [
        rec[k : k + 8] for k in range(e, len(rec), 8)
    ]


class _Updater:
    """One batch update: sorted paths (bytes and ints, for bisect), their records, new nodes.

    Subtrees travel as (hash, version bytes); their place is (depth, any path in the batch
    range that lies inside them). Every node this update creates gets the version ``ver``.
    Records are added to ``nodes`` in post-order (see the module docstring).
    """

    __slots__ = ("get", "nodes", "ints", "paths", "recs", "ver", "deletes")

    def __init__(
        self, get: NodeGetter, paths: list[bytes], recs: list[bytes | None], ver: bytes
    ) -> None:
        self.get = get
        self.nodes: dict[bytes, bytes] = {}
        self.paths = paths
        self.ints = [int.from_bytes(p, "big") for p in paths]
        self.recs = recs  # leaf record to set, or None to delete
        self.ver = ver
        self.deletes = None in recs

    def read(self, k: bytes) -> bytes:
        rec = self.get(k) or self.nodes.get(k)
        if rec is None:
            raise StorageError(f"state tree node {k.hex()} is missing")
        return rec

    def node(
        self, depth: int, path: int, bitmap: int, hs: list[bytes], vs: list[bytes]
    ) -> tuple[bytes, bytes]:
        """The subtree at (depth, path) with these non-empty children, in its unique shape:
        empty without children, the child itself if it is a lone leaf (promoted), else a node."""
        n = len(hs)
        if n == 0:
            return EMPTY, _NOVER
        if n == 1:
            cpath = (path & ~_MASK[depth]) | ((bitmap.bit_length() - 1) << _SHIFT[depth])
            ck = vs[0] + _at(depth + 1, cpath) + hs[0]
            rec = self.read(ck)
            if rec[0] == _LEAF:
                # The leaf moves up: stored again at its new position (and this version); a
                # copy built in this batch at the position it no longer has is dropped.
                if vs[0] == self.ver:
                    self.nodes.pop(ck, None)
                self.nodes[self.ver + _at(depth, path) + hs[0]] = rec
                return hs[0], self.ver
        pre = STATE_NODE_PREFIX + bitmap.to_bytes(2, "big") + b"".join(hs)
        h = _sha(pre).digest()
        self.nodes[self.ver + _at(depth, path) + h] = pre + b"".join(vs)
        return h, self.ver

    def groups(self, depth: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """(nibble, lo, hi) of the writes in [lo, hi) per child at ``depth``, ascending."""
        ints = self.ints
        shift = _SHIFT[depth]
        out = []
        i = lo
        while i < hi:
            top = ints[i] >> shift
            j = (
                i + 1
                if i + 1 == hi or ints[i + 1] >> shift != top
                else bisect_left(ints, (top + 1) << shift, i, hi)
            )
            out.append((top & 15, i, j))
            i = j
        return out

    def update(self, h: bytes, hv: bytes, depth: int, lo: int, hi: int) -> tuple[bytes, bytes]:
        """New (hash, version) of subtree ``h`` (stored at ``hv``) at ``depth`` after the
        writes [lo, hi) (all inside it). An unchanged subtree keeps its hash and version."""
        if h == EMPTY:
            return self.build(depth, lo, hi)
        if hi - lo == 1:
            return self.update_one(h, hv, depth, lo)
        path = self.ints[lo]
        rec = self.read(hv + _at(depth, path) + h)
        if rec[0] != _NODE:
            # A leaf alone in this subtree: merge it with the writes and rebuild the subtree.
            lpath = rec[1:33]
            at = bisect_left(self.paths, lpath, lo, hi)
            if at < hi and self.paths[at] == lpath:
                return self.build(depth, lo, hi)  # the leaf itself is written or deleted
            sub = _Updater(
                self.get,
                [*self.paths[lo:at], lpath, *self.paths[at:hi]],
                [*self.recs[lo:at], rec, *self.recs[at:hi]],
                self.ver,
            )
            sub.nodes = self.nodes
            return sub.build(depth, 0, len(sub.paths))
        if depth >= MAX_DEPTH:
            raise StorageError("state tree node below the deepest level")
        bitmap = int.from_bytes(rec[1:3], "big")
        n = bitmap.bit_count()
        e = 3 + 32 * n
        # Children first, in nibble order (post-order emission); then the edits.
        results = []
        same_shape = True  # no child appears or disappears
        for nib, i, j in self.groups(depth, lo, hi):
            bit = 1 << nib
            idx = (bitmap & (bit - 1)).bit_count()
            if bitmap & bit:
                a = 3 + 32 * idx
                b = e + 8 * idx
                oh = rec[a : a + 32]
                ov = rec[b : b + 8]
                ch, cv = (
                    self.update(oh, ov, depth + 1, i, j)
                    if j - i > 1
                    else self.update_one(oh, ov, depth + 1, i)
                )
                if ch != oh or cv != ov:
                    results.append((bit, idx, True, ch, cv))
                    if ch == EMPTY:
                        same_shape = False
            else:
                ch, cv = self.build(depth + 1, i, j)
                if ch != EMPTY:
                    results.append((bit, idx, False, ch, cv))
                    same_shape = False
        if not results:
            return h, hv
        if same_shape and n >= 2:
            # The common case (every upper node of a block's update): the same children,
            # some with new hashes and versions, spliced into a copy of the record.
            buf = bytearray(rec)
            for _, idx, _, ch, cv in results:
                a = 3 + 32 * idx
                buf[a : a + 32] = ch
                b = e + 8 * idx
                buf[b : b + 8] = cv
            out = bytes(buf)
            h = _sha(out[:e]).digest()
            self.nodes[self.ver + _at(depth, path) + h] = out
            return h, self.ver
        # Children appear or disappear: rebuild the lists, editing from the highest nibble
        # down so that inserting or removing one keeps the lower indices valid.
        hs, vs = _split(rec, e)
        new_bitmap = bitmap
        for bit, idx, present, ch, cv in reversed(results):
            if not present:
                hs.insert(idx, ch)
                vs.insert(idx, cv)
                new_bitmap |= bit
            elif ch == EMPTY:
                del hs[idx]
                del vs[idx]
                new_bitmap &= ~bit
            else:
                hs[idx] = ch
                vs[idx] = cv
        if len(hs) >= 2:  # node() inlined for the common case
            pre = STATE_NODE_PREFIX + new_bitmap.to_bytes(2, "big") + b"".join(hs)
            h = _sha(pre).digest()
            self.nodes[self.ver + _at(depth, path) + h] = pre + b"".join(vs)
            return h, self.ver
        return self.node(depth, path, new_bitmap, hs, vs)

    def update_one(self, h: bytes, hv: bytes, depth: int, i: int) -> tuple[bytes, bytes]:
        """:meth:`update` for a single write ``i`` into the non-empty subtree ``h``.

        Most nodes of a block's update sit below the depth where the batch's paths part
        (about log16(writes)): there each update is a chain of one-path steps. This walks the
        chain down in a loop, remembering each level's record, and hashes back up, with no
        recursion or bisecting. Same results (and records) as the general case.
        """
        path = self.ints[i]
        get = self.get
        nodes = self.nodes
        ver = self.ver
        sha = _sha
        top_h, top_v = h, hv  # returned as they are if the write changes nothing
        # per trail node: position, record, bitmap, the path's bit, its child index, and
        # where the hashes end (the versions start)
        trail: list[tuple[bytes, bytes, int, int, int, int]] = []
        while True:
            at_pos = ((path | _MASK[depth]) >> _CUT).to_bytes(8, "big") + _DEPTH[depth]
            k = hv + at_pos + h
            rec = get(k) or nodes.get(k)
            if rec is None:
                raise StorageError(f"state tree node {k.hex()} is missing")
            if rec[0] != _NODE:
                # A leaf: the written key's own (replace or delete it) or another key's (the
                # two now share this subtree, unless the write deletes an absent key).
                new = self.recs[i]
                if rec[1:33] == self.paths[i]:
                    if new is None:
                        nh, nv = EMPTY, _NOVER
                    elif new == rec:
                        return top_h, top_v  # the same value again
                    else:
                        nh = sha(new[:65]).digest()
                        nv = ver
                        nodes[ver + at_pos + nh] = new
                elif new is None:
                    return top_h, top_v  # deleting an absent key
                else:
                    nh, nv = self._merge_leaf(rec, depth, i)
                break
            if depth >= MAX_DEPTH:
                raise StorageError("state tree node below the deepest level")
            bitmap = int.from_bytes(rec[1:3], "big")
            bit = 1 << ((path >> _SHIFT[depth]) & 15)
            idx = (bitmap & (bit - 1)).bit_count()
            e = 3 + 32 * bitmap.bit_count()
            trail.append((at_pos, rec, bitmap, bit, idx, e))
            depth += 1
            if not bitmap & bit:
                nh, nv = self.build(depth, i, i + 1)
                if nh == EMPTY:
                    return top_h, top_v  # deleting an absent key
                break
            h = rec[3 + 32 * idx : 35 + 32 * idx]
            hv = rec[e + 8 * idx : e + 8 * idx + 8]
        # Hash back up: (nh, nv) replaces the child at the path's nibble of each trail node.
        for at_pos, rec, bitmap, bit, idx, e in reversed(trail):
            depth -= 1
            a = 3 + 32 * idx
            b = e + 8 * idx
            if not bitmap & bit:  # a new child (nh is not empty here)
                pre = (
                    STATE_NODE_PREFIX + (bitmap | bit).to_bytes(2, "big") + rec[3:a] + nh + rec[a:e]
                )
                vs = rec[e:b] + nv + rec[b:]
            elif nh == EMPTY or (
                e == 35
                and nv == ver
                and nodes.get(ver + _at(depth + 1, path) + nh, b"\x03")[0] == _LEAF
            ):
                # The child went away, or this node's only child (e == 35) became a leaf:
                # the node may shrink to a lone leaf (promoted) or to nothing.
                hs, vl = _split(rec, e)
                if nh == EMPTY:
                    del hs[idx]
                    del vl[idx]
                    bitmap &= ~bit
                else:
                    hs[idx] = nh
                    vl[idx] = nv
                nh, nv = self.node(depth, path, bitmap, hs, vl)
                continue
            else:
                pre = rec[:a] + nh + rec[a + 32 : e]
                vs = rec[e:b] + nv + rec[b + 8 :]
            nh = sha(pre).digest()
            nv = ver
            nodes[ver + at_pos + nh] = pre + vs
        return nh, nv

    def _merge_leaf(self, rec: bytes, depth: int, i: int) -> tuple[bytes, bytes]:
        """Subtree at ``depth`` holding the stored leaf ``rec`` and write ``i`` (another path)."""
        path = rec[1:33]
        if self.paths[i] < path:
            sub = _Updater(self.get, [self.paths[i], path], [self.recs[i], rec], self.ver)
        else:
            sub = _Updater(self.get, [path, self.paths[i]], [rec, self.recs[i]], self.ver)
        sub.nodes = self.nodes
        return sub.build(depth, 0, 2)

    def build(self, depth: int, lo: int, hi: int) -> tuple[bytes, bytes]:
        """Subtree at ``depth`` holding the non-deleted entries among [lo, hi) (nothing else)."""
        if self.deletes:
            live = [i for i in range(lo, hi) if self.recs[i] is not None]
            if not live:
                return EMPTY, _NOVER
            if len(live) < hi - lo:
                sub = _Updater(
                    self.get, [self.paths[i] for i in live], [self.recs[i] for i in live], self.ver
                )
                sub.nodes = self.nodes
                return sub._build(depth, 0, len(live))
        return self._build(depth, lo, hi)

    def _build(self, depth: int, lo: int, hi: int) -> tuple[bytes, bytes]:
        """:meth:`build` when every entry in [lo, hi) is live."""
        ints = self.ints
        if hi - lo == 1:
            rec: bytes = self.recs[lo]  # type: ignore[assignment]
            h = _sha(rec[:65]).digest()
            self.nodes[
                self.ver
                + ((ints[lo] | _MASK[depth]) >> _CUT).to_bytes(8, "big")
                + _DEPTH[depth]
                + h
            ] = rec
            return h, self.ver
        if depth >= MAX_DEPTH:
            raise StorageError("two state entries share a full 256-bit path")
        hs = []
        vs = []
        bitmap = 0
        for nib, i, j in self.groups(depth, lo, hi):
            bitmap |= 1 << nib
            ch, cv = self._build(depth + 1, i, j)
            hs.append(ch)
            vs.append(cv)
        # Two or more live entries: never a lone leaf, so no promotion check.
        pre = STATE_NODE_PREFIX + bitmap.to_bytes(2, "big") + b"".join(hs)
        h = _sha(pre).digest()
        self.nodes[self.ver + _at(depth, ints[lo]) + h] = pre + b"".join(vs)
        return h, self.ver


class _NotFast(Exception):
    """A batch the one-pass walk (:func:`_walk`) does not take: the reference does it."""


# Positions at depth d <= 16 from a path's first 64 bits ``q``: ``_pos(q | _MASK64[d], 255 - d)``
# gives the same 9 bytes as :func:`_at` (padding the first d nibbles with 1-bits and keeping
# 64 bits: deeper than 16 nibbles a position no longer depends on the depth's nibbles).
_MASK64 = [(1 << (64 - 4 * d)) - 1 for d in range(17)]
_pos = struct.Struct(">QB").pack
_WALK_DEPTH = 16
"""The walk keeps inner nodes down to depth 15: their children's nibbles and positions come
from the paths' first 64 bits. A deeper one (paths sharing 64 bits) goes to the reference."""


def _walk(
    get: NodeGetter,
    root: bytes,
    root_ver: bytes,
    paths: list[bytes],
    recs: list[bytes],
    ver: bytes,
) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """:meth:`_Updater.update` of the whole tree in one pass over the sorted writes, without
    recursion: the same new root, version and records, in the same order.

    Preconditions: no write deletes (``recs`` holds no None; the caller checks) and the root
    is not empty. :class:`_NotFast` (the caller then runs the reference) when the root is a
    leaf or an inner node on a written path lies deeper than 15 nibbles (there the paths'
    first 64 bits, all the walk reads of them, no longer tell the children apart). New paths
    sharing their first 64 bits always reach one slot together: the reference writes them.

    The walk keeps a stack holding the inner node at every depth of the current path.
    Consecutive sorted paths share the nodes above the nibble where they first differ, so
    for each write the frames below that nibble are finished (the record rebuilt with the
    children's new hashes, hashed, emitted, its hash handed to the frame above) and the walk
    goes down from the shared frame. A frame is finished after every write under it, so
    records come out in post-order, as from the reference. A write that reaches its own leaf
    or an empty slot alone is done here; a slot that several writes reach, or another key's
    leaf, goes to the reference (``_Updater``) for that subtree alone. Without deletes no
    node loses a child, so no leaf is promoted.
    """
    n = len(paths)
    qs = struct.unpack(">" + "Q24x" * n, b"".join(paths))
    sha = _sha
    join = b"".join
    nodes: dict[bytes, bytes] = {}
    mask64 = _MASK64
    pos_of = _pos
    node_tag = _NODE
    pos = _at(0, 0)
    k = root_ver + pos + root
    rec = get(k)
    if rec is None:
        raise StorageError(f"state tree node {k.hex()} is missing")
    if rec[0] != node_tag:
        raise _NotFast
    bitmap = rec[1] << 8 | rec[2]
    # frames[d + 1] is the inner node at depth d on the current path: (record, position,
    # where its hashes end, bitmap, its nibble in the parent); changes[d + 1] its changed
    # children so far, (nibble, new hash) in nibble order. Index 0 stands above the root.
    frames = [(b"", b"", 0, 0, 0), (rec, pos, 3 + 32 * bitmap.bit_count(), bitmap, 0)]
    changes: list[list[tuple[int, bytes]]] = [[], []]
    i = 0
    while True:
        if i < n:
            q = qs[i]
            keep = 0
            if i:
                x = qs[i - 1] ^ q
                if not x:
                    raise _NotFast  # never: paths sharing 64 bits are written together
                keep = (64 - x.bit_length()) >> 2  # the first nibble where they differ
        else:
            keep = -1  # all written: finish every frame, the root's too
        while len(frames) - 2 > keep:
            # Finish the frame at the top: its record with the new child hashes (all at
            # version ``ver``), hashed, emitted, handed to its parent.
            rec, pos, e, bitmap, pnib = frames.pop()
            done = changes.pop()
            if not done:
                continue  # nothing under it changed
            if len(done) == 1 and bitmap >> done[0][0] & 1:
                nib, nh = done[0]
                idx = (bitmap & ((1 << nib) - 1)).bit_count()
                a = 3 + 32 * idx
                b = e + 8 * idx
                out = join((rec[:a], nh, rec[a + 32 : b], ver, rec[b + 8 :]))
                h = sha(out[:e]).digest()
            else:
                buf: bytearray | None = bytearray(rec)
                for nib, nh in done:
                    bit = 1 << nib
                    if not bitmap & bit:
                        buf = None  # a new child: the record changes shape
                        break
                    idx = (bitmap & (bit - 1)).bit_count()
                    a = 3 + 32 * idx
                    buf[a : a + 32] = nh  # type: ignore[index]
                    b = e + 8 * idx
                    buf[b : b + 8] = ver  # type: ignore[index]
                if buf is not None:
                    out = bytes(buf)
                    h = sha(out[:e]).digest()
                else:
                    # Rebuild the lists, inserting from the highest nibble down so that
                    # the lower indices stay valid.
                    hs, vs = _split(rec, e)
                    for nib, nh in reversed(done):
                        bit = 1 << nib
                        idx = (bitmap & (bit - 1)).bit_count()
                        if bitmap & bit:
                            hs[idx] = nh
                            vs[idx] = ver
                        else:
                            hs.insert(idx, nh)
                            vs.insert(idx, ver)
                    for nib, _ in done:
                        bitmap |= 1 << nib
                    pre = STATE_NODE_PREFIX + bitmap.to_bytes(2, "big") + join(hs)
                    h = sha(pre).digest()
                    out = pre + join(vs)
            nodes[ver + pos + h] = out
            changes[-1].append((pnib, h))
        if i == n:
            break
        # Down from the frame at ``depth`` along ``q`` to a leaf or an empty slot.
        rec, pos, e, bitmap, _ = frames[-1]
        depth = len(frames) - 2
        while True:
            s = 60 - 4 * depth
            nib = q >> s & 15
            bit = 1 << nib
            cpos = pos_of(q | mask64[depth + 1], 254 - depth)
            if not bitmap & bit:
                ch, cv, crec = EMPTY, _NOVER, None
                break
            idx = (bitmap & (bit - 1)).bit_count()
            a = 3 + 32 * idx
            b = e + 8 * idx
            ch = rec[a : a + 32]
            cv = rec[b : b + 8]
            k = cv + cpos + ch
            crec = get(k)
            if crec is None:
                raise StorageError(f"state tree node {k.hex()} is missing")
            if crec[0] != node_tag:
                break
            depth += 1
            if depth >= _WALK_DEPTH:
                raise _NotFast
            rec = crec
            pos = cpos
            bitmap = rec[1] << 8 | rec[2]
            e = 3 + 32 * bitmap.bit_count()
            frames.append((rec, pos, e, bitmap, nib))
            changes.append([])
        j = i + 1
        if j < n and qs[j] >> s == q >> s:
            # Several writes reach this slot: the reference builds its subtree.
            top = q >> s
            j += 1
            while j < n and qs[j] >> s == top:
                j += 1
        elif crec is None or crec[1:33] == paths[i]:
            # The write's own leaf (or none yet): the new leaf takes its place.
            r = recs[i]
            if crec != r:  # else the same value again: nothing changes
                nh = sha(r[:65]).digest()
                nodes[ver + cpos + nh] = r
                changes[-1].append((nib, nh))
            i = j
            continue
        # Another key's leaf, or several writes: the reference, for this subtree alone.
        sub = _Updater(get, paths[i:j], recs[i:j], ver)  # type: ignore[arg-type]
        sub.nodes = nodes
        nh, nv = sub.update(ch, cv, depth + 1, 0, j - i)
        if nh != ch:
            if nv != ver:
                raise _NotFast  # cannot happen: a changed subtree is at this version
            changes[-1].append((nib, nh))
        i = j
    done = changes[0]
    if not done:
        return root, root_ver, nodes
    return done[0][1], ver, nodes


def compute_update(
    get: NodeGetter,
    root: bytes,
    writes: Mapping[bytes, bytes | None],
    *,
    version: int = 0,
    root_version: int = 0,
    walk: bool = True,
) -> tuple[bytes, dict[bytes, bytes]]:
    """New root after ``writes`` (None deletes) on the tree at ``root``, and the new records.

    ``root`` is stored at ``root_version``; new records are keyed at ``version``, in sorted
    key order (post-order). Unless ``writes`` is empty, the new root is stored at ``version``
    (its record is copied there if it is an older node, e.g. when nothing changed), so the
    caller knows where to find it.

    One descent over the sorted paths: upper nodes shared by many updates are read and
    rehashed once, so a batch of k updates over n entries rehashes about
    k * (log16(n) - log16(k)) + k nodes rather than k * log16(n). A batch without deletes on
    a non-empty tree (every block of transfers) takes the one-pass walk (:func:`_walk`),
    anything else (or ``walk=False``) the recursive reference; both give the same root and
    records (tests/test_storage_fastpath.py compares them).
    """
    paths, recs, deletes = _prepare(writes)
    if not paths:
        return root, {}
    ver = version_bytes(version)
    new_root, new_ver, nodes = _update(
        get, root, version_bytes(root_version), paths, recs, ver, deletes or not walk
    )
    return _root_at(get, new_root, new_ver, ver, nodes)


def _update(
    get: NodeGetter,
    root: bytes,
    root_ver: bytes,
    paths: list[bytes],
    recs: list[bytes | None],
    ver: bytes,
    no_walk: bool,
) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """(new root, its version, new records): the walk when it takes the batch (and
    ``no_walk`` is false: it must be when any write deletes), else the reference."""
    if root != EMPTY and not no_walk:
        try:
            return _walk(get, root, root_ver, paths, recs, ver)  # type: ignore[arg-type]
        except _NotFast:
            pass  # the reference below takes the batch
    up = _Updater(get, paths, recs, ver)
    new_root, new_ver = up.update(root, root_ver, 0, 0, len(paths))
    return new_root, new_ver, up.nodes


def _prepare(
    writes: Mapping[bytes, bytes | None],
) -> tuple[list[bytes], list[bytes | None], bool]:
    """The writes' paths in ascending order, their leaf records (None: delete), any deletes.

    One pass, keyed by path: sorting the paths alone compares bytes directly, about twice as
    fast as sorting (path, record) pairs.
    """
    sha = _sha
    by_path: dict[bytes, bytes | None] = {}
    deletes = False
    for k, v in writes.items():
        p = sha(k).digest()  # state_path(k)
        if v is None:
            by_path[p] = None
            deletes = True
        else:
            by_path[p] = STATE_LEAF_PREFIX + p + sha(v).digest() + v
    paths = sorted(by_path)
    return paths, [by_path[p] for p in paths], deletes


def _root_at(
    get: NodeGetter, root: bytes, root_ver: bytes, ver: bytes, nodes: dict[bytes, bytes]
) -> tuple[bytes, dict[bytes, bytes]]:
    """``(root, nodes)`` with the root's record at ``ver`` (copied there if it is older)."""
    if root != EMPTY and root_ver != ver:
        at_root = _at(0, 0)
        k = root_ver + at_root + root
        rec = get(k) or nodes.get(k)
        if rec is None:
            raise StorageError(f"state tree node {k.hex()} is missing")
        nodes[ver + at_root + root] = rec
    return root, nodes


def prove(
    get: NodeGetter, root: bytes, key: bytes, root_version: int = 0
) -> tuple[bytes | None, StateProof]:
    """The value of ``key`` under ``root`` (stored at ``root_version``; None if absent) and its proof."""
    path = state_path(key)
    p = int.from_bytes(path, "big")
    levels: list[tuple[int, tuple[bytes, ...]]] = []
    h = root
    hv = version_bytes(root_version)
    depth = 0
    while h != EMPTY:
        rec = get(hv + _at(depth, p) + h)
        if rec is None:
            raise StorageError(f"state tree node {h.hex()[:16]} is missing (unknown root?)")
        if rec[0] == _LEAF:
            if rec[1:33] == path:
                return rec[65:], StateProof(tuple(levels))
            return None, StateProof(tuple(levels), (rec[1:33], rec[33:65]))
        if depth >= MAX_DEPTH:
            raise StorageError(f"state tree node {h.hex()[:16]} is below the deepest level")
        bitmap = int.from_bytes(rec[1:3], "big")
        n = bitmap.bit_count()
        if rec[0] != _NODE or n == 0 or len(rec) != 3 + 40 * n:
            raise StorageError(f"state tree node {h.hex()[:16]} is malformed")
        e = 3 + 32 * n
        bit = 1 << ((p >> _SHIFT[depth]) & 15)
        hashes = [rec[k : k + 32] for k in range(3, e, 32)]
        if not bitmap & bit:
            levels.append((bitmap, tuple(hashes)))
            return None, StateProof(tuple(levels))
        idx = (bitmap & (bit - 1)).bit_count()
        h = hashes.pop(idx)
        hv = rec[e + 8 * idx : e + 8 * idx + 8]
        levels.append((bitmap, tuple(hashes)))
        depth += 1
    return None, StateProof(tuple(levels))


def build_subtree(
    paths: list[bytes],
    values: list[bytes],
    depth: int,
    version: int,
) -> tuple[bytes, dict[bytes, bytes]]:
    """Hash and records (keyed at ``version``) of the subtree at ``depth`` holding exactly
    these entries: ``paths`` strictly ascending, all sharing their first ``depth`` nibbles.

    The subtree's shape is the one the full tree gives it, so a snapshot chunk built here
    hashes to what its parent node names (:mod:`accord.storage.snapshot`). A lone entry is
    its leaf, stored at ``depth``; the caller moves it if the leaf is promoted higher up.
    """
    if not paths or len(paths) != len(values):
        raise StorageError("a subtree needs one value per path, and at least one entry")
    if any(a >= b for a, b in zip(paths, paths[1:], strict=False)):
        raise StorageError("subtree entries must be in strictly ascending path order")
    recs: list[bytes | None] = [
        STATE_LEAF_PREFIX + p + _sha(v).digest() + v for p, v in zip(paths, values, strict=True)
    ]
    up = _Updater(lambda k: None, paths, recs, version_bytes(version))
    h, _ = up._build(depth, 0, len(paths))
    return h, up.nodes
