"""The state tree's builder: batch updates and proofs over stored nodes.

Hashing rules are those of :mod:`accord.merkle` (the verifier side). Nothing is ever deleted,
so every old root stays readable and provable.

Node records are raw bytes, not the generic encoding, because a block of 5,000 transfers
touches over a hundred thousand of them:

* inner node: ``0x03 || left || right || left version || right version`` (81 bytes): the
  first 65 bytes are exactly the preimage of its hash; the children's versions (8 bytes
  each, big-endian) say under which key each child is stored.
* leaf: ``0x02 || path || SHA-256(value) || value``: the first 65 bytes are the preimage of
  its hash; the value rides along so that a proof against an *old* root can still return the
  value it proves.
* the empty subtree (32 zero bytes) is never stored.

Storage keys (:func:`node_key`) are the node's *version* (8 bytes, big-endian: the height of
the block whose update created it), then its *position* (the first ``depth`` bits of its
path, padded to whole bytes, and one byte of depth), then its hash:

* The hash keeps the store content-addressed: two roots never overwrite each other's nodes.
* The version makes the writes append-only. A block creates over 100,000 nodes spread over
  the whole tree; keyed by position and hash alone they landed next to their older versions
  all over LMDB's B-tree, so every commit dirtied, copied and fsynced nearly every page of
  the node database (hundreds of MB at a million accounts). Keyed by version first they are
  one new run of keys after all older ones: the commit appends a few thousand full pages.
  A parent records its children's versions, so a descent still reads each node with one
  lookup.
* The position keeps, within one version, a path's chain of nodes on neighbouring pages, so
  the reads of a descent hit few pages. The price: a leaf whose sibling disappears moves up,
  and is stored again under its new position.

:func:`compute_update` never writes: it reads through a getter (one LMDB read transaction in
the store; a dict in tests) and returns the new root plus the new records by storage key, so
a proposed block's state root can be computed speculatively and its nodes written at commit.
Callers that keep a single version (tests, tools) can leave ``version`` at 0: the tree is
then purely content-addressed.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Mapping

from accord.errors import StorageError
from accord.merkle import (
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
_NOVER = bytes(8)  # the version beside an empty child (never read)
_DEPTH = [bytes([d & 0xFF]) for d in range(MAX_DEPTH + 1)]  # 256 (full path) keys as 0: its prefix is longer
# Per depth: bytes of position prefix, padding bits after it, and the shift from a 256-bit
# path to its position (pos == path >> _CUT[depth]).
_NB = [(d + 7) >> 3 for d in range(MAX_DEPTH + 1)]
_PAD = [((d + 7) >> 3) * 8 - d for d in range(MAX_DEPTH + 1)]
_CUT = [256 - d for d in range(MAX_DEPTH + 1)]


def version_bytes(version: int) -> bytes:
    """The 8-byte form of a version, as in keys and records."""
    if not 0 <= version < 1 << 64:
        raise StorageError(f"tree version {version} outside 0..2**64-1")
    return version.to_bytes(8, "big")


def _at(depth: int, pos: int) -> bytes:
    """The position part of a key: the first ``depth`` path bits (whole bytes) and the depth."""
    return (pos << _PAD[depth]).to_bytes(_NB[depth], "big") + _DEPTH[depth]


def node_key(version: int | bytes, depth: int, pos: int, h: bytes) -> bytes:
    """Storage key of the node with hash ``h`` created at ``version`` (int or its 8 bytes), at
    ``depth`` with position ``pos`` (its path's first ``depth`` bits)."""
    v = version_bytes(version) if isinstance(version, int) else version
    return v + _at(depth, pos) + h


def leaf_record(path: bytes, value: bytes) -> bytes:
    return STATE_LEAF_PREFIX + path + _sha(value).digest() + value


def record_hash(record: bytes) -> bytes:
    """The hash of a stored record (its first 65 bytes are the preimage)."""
    return _sha(record[:65]).digest()


class _Updater:
    """One batch update: sorted paths (bytes and ints, for bisect), their records, new nodes.

    Subtrees travel as (hash, version bytes) with their place as (depth, pos): ``pos`` is the
    first ``depth`` bits of every path in the subtree. Every node this update creates gets
    the version ``ver``.
    """

    __slots__ = ("get", "nodes", "ints", "paths", "recs", "ver")

    def __init__(self, get: NodeGetter, paths: list[bytes], recs: list[bytes | None], ver: bytes) -> None:
        self.get = get
        self.nodes: dict[bytes, bytes] = {}
        self.paths = paths
        self.ints = [int.from_bytes(p, "big") for p in paths]
        self.recs = recs  # leaf record to set, or None to delete
        self.ver = ver

    def read(self, k: bytes) -> bytes:
        rec = self.get(k) or self.nodes.get(k)
        if rec is None:
            raise StorageError(f"state tree node {k.hex()} is missing")
        return rec

    def node(self, left: bytes, lv: bytes, right: bytes, rv: bytes, depth: int, pos: int) -> tuple[bytes, bytes]:
        """Join two subtrees, promoting a lone leaf so the tree stays in its unique shape."""
        if right == EMPTY or left == EMPTY:
            if left == right:
                return EMPTY, _NOVER
            child, cv, cpos = (left, lv, pos * 2) if right == EMPTY else (right, rv, pos * 2 + 1)
            ck = cv + _at(depth + 1, cpos) + child
            rec = self.read(ck)
            if rec[0] == _LEAF:
                # The leaf moves up: stored again at its new position (and this version); a
                # copy built in this batch at the position it no longer has is dropped.
                if cv == self.ver:
                    self.nodes.pop(ck, None)
                self.nodes[self.ver + _at(depth, pos) + child] = rec
                return child, self.ver
        rec = STATE_NODE_PREFIX + left + right + lv + rv
        h = _sha(rec[:65]).digest()
        self.nodes[self.ver + _at(depth, pos) + h] = rec
        return h, self.ver

    def update(self, h: bytes, hv: bytes, depth: int, pos: int, lo: int, hi: int) -> tuple[bytes, bytes]:
        """New (hash, version) of subtree ``h`` at (depth, pos) after the updates [lo, hi)
        (all inside it).

        The hot loop of block commit: callers skip empty ranges.
        """
        if h == EMPTY:
            return self.build(depth, pos, lo, hi)
        if hi - lo == 1:
            return self.update_one(h, hv, depth, lo)
        at_pos = (pos << _PAD[depth]).to_bytes(_NB[depth], "big") + _DEPTH[depth]  # _at inlined
        rec = self.read(hv + at_pos + h)
        if rec[0] == _NODE:
            left = rec[1:33]
            right = rec[33:65]
            lv = rec[65:73]
            rv = rec[73:81]
            shift = 255 - depth
            ints = self.ints
            mid = bisect_left(ints, ((ints[lo] >> shift) | 1) << shift, lo, hi)
            if mid > lo:
                left, lv = self.update(left, lv, depth + 1, pos * 2, lo, mid)
            if mid < hi:
                right, rv = self.update(right, rv, depth + 1, pos * 2 + 1, mid, hi)
            if left == EMPTY or right == EMPTY:
                return self.node(left, lv, right, rv, depth, pos)
            rec = STATE_NODE_PREFIX + left + right + lv + rv
            h = _sha(rec[:65]).digest()
            self.nodes[self.ver + at_pos + h] = rec
            return h, self.ver
        # A leaf alone in this subtree: merge it with the updates and rebuild the subtree.
        path = rec[1:33]
        at = bisect_left(self.paths, path, lo, hi)
        if at < hi and self.paths[at] == path:
            return self.build(depth, pos, lo, hi)  # the leaf itself is updated or deleted
        sub = _Updater(self.get, [*self.paths[lo:at], path, *self.paths[at:hi]],
                       [*self.recs[lo:at], rec, *self.recs[at:hi]], self.ver)
        sub.nodes = self.nodes
        return sub.build(depth, pos, 0, len(sub.paths))

    def update_one(self, h: bytes, hv: bytes, depth: int, i: int) -> tuple[bytes, bytes]:
        """:meth:`update` for a single write ``i`` into the non-empty subtree ``h``.

        Most nodes of a block's update sit below the depth where the batch's paths part
        (about log2(writes)): there each update is a chain of one-path steps. This walks the
        chain down in a loop, remembering each level's sibling, and hashes back up, with no
        recursion or bisecting. Same results (and records) as the general case.
        """
        path = self.ints[i]
        get = self.get
        nodes = self.nodes
        ver = self.ver
        sha = _sha
        trail: list[tuple[bytes, bytes, bytes]] = []  # (sibling, its version, position key)
        while True:
            # the position part of the key, from the path itself: pos == path >> _CUT[depth]
            at_pos = ((path >> _CUT[depth]) << _PAD[depth]).to_bytes(_NB[depth], "big") + _DEPTH[depth]
            k = hv + at_pos + h
            rec = get(k) or nodes.get(k)
            if rec is None:
                raise StorageError(f"state tree node {k.hex()} is missing")
            if rec[0] != _NODE:
                # A leaf: the written key's own (replace or delete it) or another key's (the
                # two now share this subtree).
                if rec[1:33] == self.paths[i]:  # build(depth, pos, i, i + 1), inlined
                    new = self.recs[i]
                    if new is None:
                        h = EMPTY
                    else:
                        h = sha(new[:65]).digest()
                        nodes[ver + at_pos + h] = new
                        hv = ver
                else:
                    h, hv = self._merge_leaf(rec, depth, path >> _CUT[depth], i)
                break
            if (path >> (255 - depth)) & 1:
                trail.append((rec[1:33], rec[65:73], at_pos))
                h = rec[33:65]
                hv = rec[73:81]
            else:
                trail.append((rec[33:65], rec[73:81], at_pos))
                h = rec[1:33]
                hv = rec[65:73]
            depth += 1
            if h == EMPTY:
                h, hv = self.build(depth, path >> _CUT[depth], i, i + 1)
                break
        # ``inner``: h is known to be an inner node (hashed below), so an empty sibling needs
        # no promotion check; at the bottom h may be a leaf or empty and node() decides.
        inner = False
        for sibling, sv, at_pos in reversed(trail):
            depth -= 1
            if h == EMPTY or (sibling == EMPTY and not inner):
                if (path >> (255 - depth)) & 1:
                    h, hv = self.node(sibling, sv, h, hv, depth, path >> _CUT[depth])
                else:
                    h, hv = self.node(h, hv, sibling, sv, depth, path >> _CUT[depth])
                inner = False
                continue
            if (path >> (255 - depth)) & 1:
                rec = STATE_NODE_PREFIX + sibling + h + sv + hv
            else:
                rec = STATE_NODE_PREFIX + h + sibling + hv + sv
            h = sha(rec[:65]).digest()
            hv = ver
            nodes[ver + at_pos + h] = rec
            inner = True
        return h, hv

    def _merge_leaf(self, rec: bytes, depth: int, pos: int, i: int) -> tuple[bytes, bytes]:
        """Subtree at (depth, pos) holding the stored leaf ``rec`` and write ``i`` (another path)."""
        path = rec[1:33]
        if self.paths[i] < path:
            sub = _Updater(self.get, [self.paths[i], path], [self.recs[i], rec], self.ver)
        else:
            sub = _Updater(self.get, [path, self.paths[i]], [rec, self.recs[i]], self.ver)
        sub.nodes = self.nodes
        return sub.build(depth, pos, 0, 2)

    def build(self, depth: int, pos: int, lo: int, hi: int) -> tuple[bytes, bytes]:
        """Subtree at (depth, pos) holding the non-deleted entries among [lo, hi) (nothing else)."""
        recs = self.recs
        live = [i for i in range(lo, hi) if recs[i] is not None]
        if not live:
            return EMPTY, _NOVER
        if len(live) == 1:
            rec: bytes = recs[live[0]]  # type: ignore[assignment]
            h = _sha(rec[:65]).digest()
            self.nodes[self.ver + _at(depth, pos) + h] = rec
            return h, self.ver
        if depth >= MAX_DEPTH:
            raise StorageError("two state entries share a full 256-bit path")
        shift = 255 - depth
        mid = bisect_left(self.ints, ((self.ints[lo] >> shift) | 1) << shift, lo, hi)
        left, lv = self.build(depth + 1, pos * 2, lo, mid)
        right, rv = self.build(depth + 1, pos * 2 + 1, mid, hi)
        return self.node(left, lv, right, rv, depth, pos)


def compute_update(
    get: NodeGetter,
    root: bytes,
    writes: Mapping[bytes, bytes | None],
    *,
    version: int = 0,
    root_version: int = 0,
) -> tuple[bytes, dict[bytes, bytes]]:
    """New root after ``writes`` (None deletes) on the tree at ``root``, and the new records.

    ``root`` is stored at ``root_version``; new records are keyed at ``version``. Unless
    ``writes`` is empty, the new root is stored at ``version`` (its record is copied there
    if it is an older node, e.g. a leaf left alone), so the caller knows where to find it.

    One recursive descent over the sorted paths: upper nodes shared by many updates are read
    and rehashed once, so a batch of k updates over n entries costs about
    k * (log2(n) - log2(k)) + k hashes rather than k * log2(n).
    """
    items = []
    for k, v in writes.items():
        p = _sha(k).digest()  # state_path(k)
        items.append((p, None if v is None else STATE_LEAF_PREFIX + p + _sha(v).digest() + v))
    if not items:
        return root, {}
    items.sort()
    ver = version_bytes(version)
    up = _Updater(get, [p for p, _ in items], [r for _, r in items], ver)
    new_root, new_ver = up.update(root, version_bytes(root_version), 0, 0, 0, len(items))
    if new_root != EMPTY and new_ver != ver:
        at_root = _at(0, 0)
        up.nodes[ver + at_root + new_root] = up.read(new_ver + at_root + new_root)
    return new_root, up.nodes


def prove(get: NodeGetter, root: bytes, key: bytes, root_version: int = 0) -> tuple[bytes | None, StateProof]:
    """The value of ``key`` under ``root`` (stored at ``root_version``; None if absent) and its proof."""
    path = state_path(key)
    siblings: list[bytes] = []
    h = root
    hv = version_bytes(root_version)
    depth = 0
    pos = 0
    while h != EMPTY:
        rec = get(hv + _at(depth, pos) + h)
        if rec is None:
            raise StorageError(f"state tree node {h.hex()[:16]} is missing (unknown root?)")
        if rec[0] == _LEAF:
            if rec[1:33] == path:
                return rec[65:], StateProof(tuple(siblings))
            return None, StateProof(tuple(siblings), (rec[1:33], rec[33:65]))
        if len(rec) != 81 or depth >= MAX_DEPTH:
            raise StorageError(f"state tree node {h.hex()[:16]} is malformed")
        bit = (path[depth >> 3] >> (7 - (depth & 7))) & 1
        if bit:
            siblings.append(rec[1:33])
            h, hv = rec[33:65], rec[73:81]
        else:
            siblings.append(rec[33:65])
            h, hv = rec[1:33], rec[65:73]
        depth += 1
        pos = pos * 2 + bit
    return None, StateProof(tuple(siblings))
