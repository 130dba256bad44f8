"""The state tree's builder: batch updates and proofs over stored nodes.

Hashing rules are those of :mod:`accord.merkle` (the verifier side). Nothing is ever deleted,
so every old root stays readable and provable.

Node records are raw bytes, not the generic encoding, because a block of 5,000 transfers
touches tens of thousands of them:

* inner node: ``0x03 || left || right`` (65 bytes): exactly the preimage of its hash.
* leaf: ``0x02 || path || SHA-256(value) || value``: the first 65 bytes are the preimage of
  its hash; the value rides along so that a proof against an *old* root can still return the
  value it proves.
* the empty subtree (32 zero bytes) is never stored.

Storage keys (:func:`node_key`) are the node's *position* followed by its hash: the first
``depth`` bits of the path (padded to whole bytes), one byte of depth, then the 32-byte hash.
The hash keeps the store content-addressed (two roots never overwrite each other's nodes);
the position prefix puts a node next to its ancestors and its neighbours in LMDB's B-tree.
Keyed by hash alone, the ~45,000 nodes a 5,000-write block creates would land on as many
random pages; keyed by position, a path's chain shares pages, so a commit dirties (and
fsyncs) far fewer pages and reads during the descent hit pages already in cache. The price:
a leaf whose sibling disappears moves up, and is stored again under its new position.

:func:`compute_update` never writes: it reads through a getter (one LMDB read transaction in
the store; a dict in tests) and returns the new root plus the new records by storage key, so
a proposed block's state root can be computed speculatively and its nodes written at commit.
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
_DEPTH = [bytes([d & 0xFF]) for d in range(MAX_DEPTH + 1)]  # 256 (full path) keys as 0: its prefix is longer


def node_key(depth: int, pos: int, h: bytes) -> bytes:
    """Storage key of the node with hash ``h`` at ``depth``; ``pos`` is its path's first ``depth`` bits."""
    nb = (depth + 7) >> 3
    return (pos << (nb * 8 - depth)).to_bytes(nb, "big") + _DEPTH[depth] + h


def leaf_record(path: bytes, value: bytes) -> bytes:
    return STATE_LEAF_PREFIX + path + _sha(value).digest() + value


def record_hash(record: bytes) -> bytes:
    """The hash of a stored record (its first 65 bytes are the preimage)."""
    return _sha(record[:65]).digest()


class _Updater:
    """One batch update: sorted paths (bytes and ints, for bisect), their records, new nodes.

    Positions travel as ``pos``: the first ``depth`` bits of every path in the subtree.
    """

    __slots__ = ("get", "nodes", "ints", "paths", "recs")

    def __init__(self, get: NodeGetter, paths: list[bytes], recs: list[bytes | None]) -> None:
        self.get = get
        self.nodes: dict[bytes, bytes] = {}
        self.paths = paths
        self.ints = [int.from_bytes(p, "big") for p in paths]
        self.recs = recs  # leaf record to set, or None to delete

    def read(self, k: bytes) -> bytes:
        rec = self.nodes.get(k) or self.get(k)
        if rec is None:
            raise StorageError(f"state tree node {k.hex()} is missing")
        return rec

    def node(self, left: bytes, right: bytes, depth: int, pos: int) -> bytes:
        """Join two subtrees, promoting a lone leaf so the tree stays in its unique shape."""
        if right == EMPTY or left == EMPTY:
            if left == right:
                return EMPTY
            child, cpos = (left, pos * 2) if right == EMPTY else (right, pos * 2 + 1)
            ck = node_key(depth + 1, cpos, child)
            rec = self.read(ck)
            if rec[0] == _LEAF:
                self.nodes.pop(ck, None)  # built in this batch at a position it no longer has
                self.nodes[node_key(depth, pos, child)] = rec
                return child
        rec = STATE_NODE_PREFIX + left + right
        h = _sha(rec).digest()
        self.nodes[node_key(depth, pos, h)] = rec
        return h

    def update(self, h: bytes, depth: int, pos: int, lo: int, hi: int) -> bytes:
        """New hash of subtree ``h`` at (depth, pos) after the updates [lo, hi) (all inside it).

        The hot loop of block commit: callers skip empty ranges.
        """
        if h == EMPTY:
            return self.build(depth, pos, lo, hi)
        nb = (depth + 7) >> 3
        at_pos = (pos << (nb * 8 - depth)).to_bytes(nb, "big") + _DEPTH[depth]  # node_key inlined
        k = at_pos + h
        rec = self.nodes.get(k) or self.get(k)
        if rec is None:
            raise StorageError(f"state tree node {k.hex()} is missing")
        if rec[0] == _NODE:
            left = rec[1:33]
            right = rec[33:65]
            shift = 255 - depth
            mid = bisect_left(self.ints, ((self.ints[lo] >> shift) | 1) << shift, lo, hi)
            if mid > lo:
                left = self.update(left, depth + 1, pos * 2, lo, mid)
            if mid < hi:
                right = self.update(right, depth + 1, pos * 2 + 1, mid, hi)
            if left == EMPTY or right == EMPTY:
                return self.node(left, right, depth, pos)
            rec = STATE_NODE_PREFIX + left + right
            h = _sha(rec).digest()
            self.nodes[at_pos + h] = rec
            return h
        # A leaf alone in this subtree: merge it with the updates and rebuild the subtree.
        path = rec[1:33]
        at = bisect_left(self.paths, path, lo, hi)
        if at < hi and self.paths[at] == path:
            return self.build(depth, pos, lo, hi)  # the leaf itself is updated or deleted
        sub = _Updater(self.get, [*self.paths[lo:at], path, *self.paths[at:hi]],
                       [*self.recs[lo:at], rec, *self.recs[at:hi]])
        sub.nodes = self.nodes
        return sub.build(depth, pos, 0, len(sub.paths))

    def build(self, depth: int, pos: int, lo: int, hi: int) -> bytes:
        """Subtree at (depth, pos) holding the non-deleted entries among [lo, hi) (nothing else)."""
        recs = self.recs
        live = [i for i in range(lo, hi) if recs[i] is not None]
        if not live:
            return EMPTY
        if len(live) == 1:
            rec: bytes = recs[live[0]]  # type: ignore[assignment]
            h = _sha(rec[:65]).digest()
            self.nodes[node_key(depth, pos, h)] = rec
            return h
        if depth >= MAX_DEPTH:
            raise StorageError("two state entries share a full 256-bit path")
        shift = 255 - depth
        mid = bisect_left(self.ints, ((self.ints[lo] >> shift) | 1) << shift, lo, hi)
        left = self.build(depth + 1, pos * 2, lo, mid)
        right = self.build(depth + 1, pos * 2 + 1, mid, hi)
        return self.node(left, right, depth, pos)


def compute_update(
    get: NodeGetter, root: bytes, writes: Mapping[bytes, bytes | None]
) -> tuple[bytes, dict[bytes, bytes]]:
    """New root after ``writes`` (None deletes) on the tree at ``root``, and the new records.

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
    up = _Updater(get, [p for p, _ in items], [r for _, r in items])
    new_root = up.update(root, 0, 0, 0, len(items))
    return new_root, up.nodes


def prove(get: NodeGetter, root: bytes, key: bytes) -> tuple[bytes | None, StateProof]:
    """The value of ``key`` under ``root`` (None if absent) and the proof of it."""
    path = state_path(key)
    siblings: list[bytes] = []
    h = root
    depth = 0
    pos = 0
    while h != EMPTY:
        rec = get(node_key(depth, pos, h))
        if rec is None:
            raise StorageError(f"state tree node {h.hex()[:16]} is missing (unknown root?)")
        if rec[0] == _LEAF:
            if rec[1:33] == path:
                return rec[65:], StateProof(tuple(siblings))
            return None, StateProof(tuple(siblings), (rec[1:33], rec[33:65]))
        bit = (path[depth >> 3] >> (7 - (depth & 7))) & 1
        if bit:
            siblings.append(rec[1:33])
            h = rec[33:65]
        else:
            siblings.append(rec[33:65])
            h = rec[1:33]
        depth += 1
        pos = pos * 2 + bit
    return None, StateProof(tuple(siblings))
