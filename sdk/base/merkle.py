"""Merkle trees and their pure verifiers: the transaction tree and the state proof.

Nothing here touches storage: light clients import this module to check what a full node
tells them against a header they trust. The builders for the state tree live in
:mod:`accord.storage.tree`; both sides share the hashing rules defined here.

Transaction tree (``merkle_root`` / ``merkle_proof`` / ``verify_merkle_proof``)
-------------------------------------------------------------------------------
A binary tree over a list of 32-byte leaves with domain separation, so a leaf can never be
passed off as an inner node or the reverse::

    leaf(x)    = SHA-256(0x00 || x)
    node(l, r) = SHA-256(0x01 || l || r)

Levels are built left to right; when a level has an odd number of entries its last entry is
**promoted** unchanged to the next level (it is not paired with itself). Promotion keeps the
tree of n leaves distinct from the tree of n+1 leaves that repeats the last one (the flaw that
pairing-with-itself trees have), and since the verifier is told the leaf ``count`` it knows
exactly at which levels a sibling is present. The root binds the leaf count as well::

    root = SHA-256(0x04 || count as 8 bytes big-endian || top of the tree)

Without it, a promoted last leaf makes the top of an n-leaf tree equal to what a verifier told
"n + 1 leaves" would compute for some proofs, so a proof could pass with a wrong count. The
empty tree has the root ``SHA-256(b"")`` (:data:`EMPTY_TX_ROOT`).

A header's ``tx_root`` covers one leaf per transaction: :func:`tx_leaf` of (tx hash, receipt
hash), so one proof shows that a transaction is in the block *and* what it did.

State tree (``verify_state_proof``)
-----------------------------------
A 16-ary (hexary) compressed sparse Merkle tree over 256-bit paths ``SHA-256(key)``, read
as 64 nibbles (4 bits each, the high nibble of byte 0 first): nibble ``d`` of a path
chooses the child (0..15) at depth ``d``. An inner node has up to 16 children; its
``bitmap`` (16 bits, bit ``i`` = ``1 << i`` set iff child ``i`` is non-empty) says which::

    leaf(path, value) = SHA-256(0x02 || path || SHA-256(value))
    node(children)    = SHA-256(0x03 || bitmap (2 bytes, big-endian)
                                 || the non-empty children's hashes, in child order)
    empty             = 32 zero bytes

Only non-empty children are hashed, so a sparse bottom node is short, and a full top node
is one hash call over 515 bytes (where a binary tree spends 15 calls, each with its own
Python overhead). The bitmap fixes how many hashes follow, so a node's preimage parses one
way only, and the prefixes 0x02/0x03 keep leaves and nodes apart.

The shape is unique for a given set of entries, so the root is a function of the state
alone: the tree of a set is empty (no entry), the entry's leaf (one entry), or a node whose
child ``i`` is the tree of the entries with nibble ``i`` at that depth. Hence a node never
has zero children, nor exactly one child that is a leaf (that leaf is *promoted* in its
place); a node whose only child is an inner node stays (there are no extension nodes: with
hashed paths long shared prefixes are rare). A leaf's hash does not depend on its depth, so
promoting a leaf costs no hashing.

A :class:`StateProof` lists, per level from the root down, the node's bitmap and the hashes
of its non-empty children other than the one on the key's path. The spot the path reaches
below the last level holds the key's own leaf (membership), nothing (non-membership: the
last bitmap lacks the path's nibble, or the root is empty), or another key's leaf
(non-membership: ``other`` = (its path, its value hash); it shares the path's first
``len(levels)`` nibbles). The trade-off of 16 children: a proof has a quarter of a binary
tree's levels but up to 15 siblings per level, about 2.4 KB encoded at a million entries
(0.7 KB binary); the tree's update and storage, which run for every block, got the gain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from accord.base import encoding
from accord.base.errors import DecodeError, ProofError

HASH_SIZE = 32
MAX_DEPTH = 64  # levels of the state tree: nibbles in a 256-bit path
ARITY = 16

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
ROOT_PREFIX = b"\x04"
STATE_LEAF_PREFIX = b"\x02"
STATE_NODE_PREFIX = b"\x03"

EMPTY_TX_ROOT = hashlib.sha256(b"").digest()
"""Root of the transaction tree with no leaves."""

EMPTY = bytes(HASH_SIZE)
"""Hash of an empty state subtree, and so the root of the empty state."""

_sha = hashlib.sha256


# --- transaction tree ------------------------------------------------------------------


def tx_leaf(tx_hash: bytes, receipt_hash: bytes) -> bytes:
    """The 32-byte leaf for one transaction: the hash of the canonical (tx hash, receipt hash)."""
    if (
        type(tx_hash) is bytes
        and type(receipt_hash) is bytes
        and len(tx_hash) == len(receipt_hash) == HASH_SIZE
    ):
        # encode([a, b]) for two 32-byte strings, written out: fixarray(2), bin8(32) twice.
        return _sha(_PAIR + tx_hash + _BIN32 + receipt_hash).digest()
    return encoding.hash_value([tx_hash, receipt_hash])


_PAIR = b"\x92\xc4\x20"
_BIN32 = b"\xc4\x20"


def _check_leaf(x: bytes) -> None:
    if type(x) is not bytes or len(x) != HASH_SIZE:
        raise ProofError("a Merkle leaf must be 32 bytes")


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves (hashed) first, root last; needs at least one leaf."""
    level = []
    for x in leaves:
        _check_leaf(x)
        level.append(_sha(LEAF_PREFIX + x).digest())
    out = [level]
    while len(level) > 1:
        nxt = [
            _sha(NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])  # promoted, not paired with itself
        level = nxt
        out.append(level)
    return out


class TxTree:
    """The transaction tree over ``leaves``, built once: its root and any leaf's proof.

    ``merkle_root``/``merkle_proof`` build the tree per call (about 7 ms for 5,000 leaves);
    a server that answers many proofs for one block keeps one of these instead. Both are the
    same function of the leaves (tests/test_merkle_tx.py compares them).
    """

    def __init__(self, leaves: list[bytes]) -> None:
        self.count = len(leaves)
        self._levels = _levels(list(leaves)) if leaves else []
        self.root = _finish(self.count, self._levels[-1][0]) if leaves else EMPTY_TX_ROOT

    def proof(self, index: int) -> list[bytes]:
        """Siblings from leaf ``index`` up to the root (promoted levels have none)."""
        if type(index) is not int or not 0 <= index < self.count:
            raise ProofError(f"leaf index {index} outside 0..{self.count - 1}")
        proof = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root of the transaction tree over ``leaves`` (32-byte values, in order)."""
    if not leaves:
        return EMPTY_TX_ROOT
    return _finish(len(leaves), _levels(list(leaves))[-1][0])


def _finish(count: int, top: bytes) -> bytes:
    return _sha(ROOT_PREFIX + count.to_bytes(8, "big") + top).digest()


def merkle_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """Siblings from the leaf up to the root for ``leaves[index]`` (promoted levels have none)."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf index {index} outside 0..{len(leaves) - 1}")
    proof = []
    for level in _levels(list(leaves))[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify_merkle_proof(
    root: bytes, leaf: bytes, index: int, count: int, proof: list[bytes]
) -> None:
    """Check that ``leaf`` is entry ``index`` of a ``count``-leaf tree with ``root``; else ProofError."""
    if type(index) is not int or type(count) is not int or not 0 <= index < count:
        raise ProofError(f"leaf index {index} outside a tree of {count} leaves")
    _check_leaf(leaf)
    h = _sha(LEAF_PREFIX + leaf).digest()
    used = 0
    n = count
    while n > 1:
        if not (index == n - 1 and n % 2 == 1):  # otherwise promoted: no sibling at this level
            if used >= len(proof):
                raise ProofError("Merkle proof is too short")
            s = proof[used]
            if type(s) is not bytes or len(s) != HASH_SIZE:
                raise ProofError("Merkle proof sibling must be 32 bytes")
            used += 1
            h = (
                _sha(NODE_PREFIX + s + h).digest()
                if index & 1
                else _sha(NODE_PREFIX + h + s).digest()
            )
        index //= 2
        n = (n + 1) // 2
    if used != len(proof):
        raise ProofError("Merkle proof is too long")
    if count >= 1 << 64 or _finish(count, h) != root:
        raise ProofError("Merkle proof does not lead to the root")


# --- state tree ------------------------------------------------------------------------


def state_path(key: bytes) -> bytes:
    """The 256-bit tree path of a state key."""
    return _sha(key).digest()


def state_leaf_hash(path: bytes, value_hash: bytes) -> bytes:
    return _sha(STATE_LEAF_PREFIX + path + value_hash).digest()


def state_node_hash(bitmap: int, children: list[bytes]) -> bytes:
    """Hash of an inner node: ``children`` are the non-empty ones, in child order."""
    return _sha(STATE_NODE_PREFIX + bitmap.to_bytes(2, "big") + b"".join(children)).digest()


def path_nibble(path: bytes, depth: int) -> int:
    """Nibble ``depth`` of ``path`` (0..63): the child index at that depth, high nibble first."""
    b = path[depth >> 1]
    return b & 15 if depth & 1 else b >> 4


def _common_prefix_nibbles(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return (8 * len(a) - x.bit_length()) >> 2


def _hash32(v: Any, what: str) -> bytes:
    if type(v) is not bytes or len(v) != HASH_SIZE:
        raise DecodeError(f"{what} must be 32 bytes")
    return v


Level = tuple[int, tuple[bytes, ...]]
"""One level of a state proof: (bitmap of the node, its other non-empty children's hashes)."""


@dataclass(frozen=True, slots=True)
class StateProof:
    """A proof that a key has a value (or none) under a state root.

    ``levels`` are the nodes on the key's path from the root down, each as (bitmap, the
    hashes of its non-empty children other than the one at the path's nibble, in child
    order); their number is the depth of the spot the path ends at. For a membership proof
    that spot holds the key's own leaf. For a non-membership proof it is either empty
    (``other`` is None: the last bitmap lacks the path's nibble, or there are no levels and
    the root is empty) or the leaf of another key whose path shares the first
    ``len(levels)`` nibbles (``other`` = (its path, its value hash)).
    """

    levels: tuple[Level, ...]
    other: tuple[bytes, bytes] | None = None

    def to_obj(self) -> list[Any]:
        return [
            [[b, list(s)] for b, s in self.levels],
            None if self.other is None else list(self.other),
        ]

    def encode(self) -> bytes:
        return encoding.encode(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any) -> StateProof:
        """Strict: a list of [levels, other], each level [bitmap (0..65535), [hash, ...]
        (at most 16)]; anything else is a DecodeError."""
        if type(obj) is not list or len(obj) != 2:
            raise DecodeError("state proof must be a list of 2 fields")
        lv, other = obj
        if type(lv) is not list or len(lv) > MAX_DEPTH:
            raise DecodeError(f"state proof levels must be a list of at most {MAX_DEPTH}")
        levels = []
        for x in lv:
            if type(x) is not list or len(x) != 2:
                raise DecodeError("state proof level must be [bitmap, siblings]")
            bitmap, sib = x
            if type(bitmap) is not int or not 0 <= bitmap < 1 << ARITY:
                raise DecodeError("state proof bitmap must be an integer in 0..65535")
            if type(sib) is not list or len(sib) > ARITY:
                raise DecodeError(f"state proof siblings must be a list of at most {ARITY}")
            levels.append((bitmap, tuple(_hash32(s, "state proof sibling") for s in sib)))
        if other is None:
            return cls(tuple(levels), None)
        if type(other) is not list or len(other) != 2:
            raise DecodeError("state proof leaf must be [path, value hash]")
        return cls(
            tuple(levels), (_hash32(other[0], "leaf path"), _hash32(other[1], "leaf value hash"))
        )

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        return cls.from_obj(encoding.decode(data))


def verify_state_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> None:
    """Check that ``key`` maps to ``value`` (None: is absent) under ``root``; else ProofError.

    Rebuilds each node on the path from its bitmap, the given siblings and the hash from
    the level below at the path's nibble, and refuses any proof a canonical tree could not
    produce: a bitmap whose count of children disagrees with the siblings, one lacking
    the path's nibble (or, at an empty spot, having it), a node with no child or whose only
    child is the leaf below, another leaf off the path or equal to the key's own.
    """
    if not isinstance(proof, StateProof):
        raise ProofError("not a state proof")
    if type(key) is not bytes or (value is not None and type(value) is not bytes):
        raise ProofError("state key and value must be bytes")
    levels = proof.levels
    if type(levels) is not tuple:
        raise ProofError("malformed state proof levels")
    depth = len(levels)
    if depth > MAX_DEPTH:
        raise ProofError(f"state proof deeper than {MAX_DEPTH}")
    path = state_path(key)
    empty_spot = False
    if value is not None:
        if proof.other is not None:
            raise ProofError("a membership proof names no other leaf")
        h = state_leaf_hash(path, _sha(value).digest())
    elif proof.other is None:
        h = EMPTY
        empty_spot = True
    else:
        if type(proof.other) is not tuple or len(proof.other) != 2:
            raise ProofError("malformed leaf in state proof")
        other_path, other_vh = proof.other
        if (
            type(other_path) is not bytes
            or len(other_path) != HASH_SIZE
            or type(other_vh) is not bytes
            or len(other_vh) != HASH_SIZE
        ):
            raise ProofError("malformed leaf in state proof")
        if other_path == path:
            raise ProofError("the leaf in a non-membership proof is the key's own")
        if _common_prefix_nibbles(other_path, path) < depth:
            raise ProofError("the leaf in a non-membership proof is not on the key's path")
        h = state_leaf_hash(other_path, other_vh)
    # Fold up from the spot at ``depth`` to the root; at the bottom level the spot is a
    # leaf (or empty), at every level above it an inner node.
    bottom = depth - 1
    for d in range(bottom, -1, -1):
        level = levels[d]
        if type(level) is not tuple or len(level) != 2:
            raise ProofError("malformed state proof level")
        bitmap, sibs = level
        if type(bitmap) is not int or not 0 <= bitmap < 1 << ARITY or type(sibs) is not tuple:
            raise ProofError("malformed state proof level")
        # Every sibling is 32 bytes: their concatenation (hashed below) has the right length
        # and no sibling is longer than 32. (A bytes-like sibling other than bytes hashes
        # exactly as its bytes would: accepting it accepts the same proof.)
        try:
            joined = b"".join(sibs)
        except TypeError:
            raise ProofError("state proof sibling must be 32 bytes") from None
        if len(joined) != 32 * len(sibs) or (sibs and max(map(len, sibs)) != 32):
            raise ProofError("state proof sibling must be 32 bytes")
        b = path[d >> 1]
        bit = 1 << (b & 15 if d & 1 else b >> 4)
        count = bitmap.bit_count()
        if d == bottom and empty_spot:
            if bitmap & bit:
                raise ProofError("state proof claims an empty spot its bitmap fills")
            if count == 0:
                raise ProofError("state proof has a node without children")
            if len(sibs) != count:
                raise ProofError("state proof siblings disagree with the bitmap")
            h = _sha(STATE_NODE_PREFIX + bitmap.to_bytes(2, "big") + joined).digest()
            continue
        if not bitmap & bit:
            raise ProofError("state proof bitmap lacks the path's child")
        if len(sibs) != count - 1:
            raise ProofError("state proof siblings disagree with the bitmap")
        if count == 1 and d == bottom:
            raise ProofError("state proof has a node whose only child is a leaf")
        before = (bitmap & (bit - 1)).bit_count()  # siblings left of the path's child
        cut = 32 * before
        h = _sha(
            STATE_NODE_PREFIX + bitmap.to_bytes(2, "big") + joined[:cut] + h + joined[cut:]
        ).digest()
    if h != root:
        raise ProofError("state proof does not lead to the root")
