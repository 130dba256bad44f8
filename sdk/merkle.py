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
A compressed sparse Merkle tree over 256-bit paths ``SHA-256(key)``. A leaf sits at the
shallowest depth where it is alone in its subtree; an empty subtree hashes to 32 zero bytes
(:data:`EMPTY`); an inner node never has (leaf, empty) or (empty, empty) children (such a
leaf is promoted instead), so the tree of a given set of entries is unique::

    leaf(path, value) = SHA-256(0x02 || path || SHA-256(value))
    node(l, r)        = SHA-256(0x03 || l || r)
    empty             = 32 zero bytes

A leaf's hash does not depend on its depth, so promoting a leaf costs no hashing. Bit ``d``
of a path (the most significant bit of byte 0 is bit 0) chooses the child at depth ``d``: 0
is left, 1 is right.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import encoding
from .errors import DecodeError, ProofError

HASH_SIZE = 32
MAX_DEPTH = 256

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
    if type(tx_hash) is bytes and type(receipt_hash) is bytes and len(tx_hash) == len(receipt_hash) == HASH_SIZE:
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
        nxt = [_sha(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # promoted, not paired with itself
        level = nxt
        out.append(level)
    return out


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


def verify_merkle_proof(root: bytes, leaf: bytes, index: int, count: int, proof: list[bytes]) -> None:
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
            h = _sha(NODE_PREFIX + s + h).digest() if index & 1 else _sha(NODE_PREFIX + h + s).digest()
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


def state_node_hash(left: bytes, right: bytes) -> bytes:
    return _sha(STATE_NODE_PREFIX + left + right).digest()


def path_bit(path: bytes, depth: int) -> int:
    """Bit ``depth`` of ``path``, most significant bit of byte 0 first."""
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


def _common_prefix_bits(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return 8 * len(a) - x.bit_length()


def _hash32(v: Any, what: str) -> bytes:
    if type(v) is not bytes or len(v) != HASH_SIZE:
        raise DecodeError(f"{what} must be 32 bytes")
    return v


@dataclass(frozen=True, slots=True)
class StateProof:
    """A proof that a key has a value (or none) under a state root.

    ``siblings`` are the sibling hashes on the key's path from the root down; their number is
    the depth of the spot the path ends at. For a membership proof that spot holds the key's
    own leaf. For a non-membership proof it is either an empty subtree (``other`` is None) or
    the leaf of another key whose path shares the first ``len(siblings)`` bits
    (``other`` = (its path, its value hash)).
    """

    siblings: tuple[bytes, ...]
    other: tuple[bytes, bytes] | None = None

    def to_obj(self) -> list[Any]:
        return [list(self.siblings), None if self.other is None else list(self.other)]

    def encode(self) -> bytes:
        return encoding.encode(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any) -> StateProof:
        """Strict: a list of [siblings, other]; anything else is a DecodeError."""
        if type(obj) is not list or len(obj) != 2:
            raise DecodeError("state proof must be a list of 2 fields")
        sib, other = obj
        if type(sib) is not list or len(sib) > MAX_DEPTH:
            raise DecodeError(f"state proof siblings must be a list of at most {MAX_DEPTH}")
        siblings = tuple(_hash32(s, "state proof sibling") for s in sib)
        if other is None:
            return cls(siblings, None)
        if type(other) is not list or len(other) != 2:
            raise DecodeError("state proof leaf must be [path, value hash]")
        return cls(siblings, (_hash32(other[0], "leaf path"), _hash32(other[1], "leaf value hash")))

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        return cls.from_obj(encoding.decode(data))


def verify_state_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> None:
    """Check that ``key`` maps to ``value`` (None: is absent) under ``root``; else ProofError."""
    if not isinstance(proof, StateProof):
        raise ProofError("not a state proof")
    if type(key) is not bytes or (value is not None and type(value) is not bytes):
        raise ProofError("state key and value must be bytes")
    siblings = proof.siblings
    depth = len(siblings)
    if depth > MAX_DEPTH:
        raise ProofError("state proof deeper than 256")
    path = state_path(key)
    if value is not None:
        if proof.other is not None:
            raise ProofError("a membership proof names no other leaf")
        h = state_leaf_hash(path, _sha(value).digest())
    elif proof.other is None:
        h = EMPTY
    else:
        other_path, other_vh = proof.other
        if type(other_path) is not bytes or len(other_path) != HASH_SIZE or type(other_vh) is not bytes or len(other_vh) != HASH_SIZE:
            raise ProofError("malformed leaf in state proof")
        if other_path == path:
            raise ProofError("the leaf in a non-membership proof is the key's own")
        if _common_prefix_bits(other_path, path) < depth:
            raise ProofError("the leaf in a non-membership proof is not on the key's path")
        h = state_leaf_hash(other_path, other_vh)
    # Fold up from the spot at ``depth`` to the root.
    for d in range(depth - 1, -1, -1):
        s = siblings[d]
        if type(s) is not bytes or len(s) != HASH_SIZE:
            raise ProofError("state proof sibling must be 32 bytes")
        if (path[d >> 3] >> (7 - (d & 7))) & 1:
            h = _sha(STATE_NODE_PREFIX + s + h).digest()
        else:
            h = _sha(STATE_NODE_PREFIX + h + s).digest()
    if h != root:
        raise ProofError("state proof does not lead to the root")
