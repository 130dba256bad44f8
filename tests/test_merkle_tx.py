"""Transaction Merkle tree: roots against a spelled-out reference, proofs, tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.errors import ProofError
from accord.base.merkle import (
    EMPTY_TX_ROOT,
    TxTree,
    merkle_proof,
    merkle_root,
    tx_leaf,
    verify_merkle_proof,
)


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def ref_root(leaves: list[bytes]) -> bytes:
    """The documented rule, written independently: pair left to right, promote an odd last."""
    if not leaves:
        return H(b"")
    level = [H(b"\x00" + x) for x in leaves]
    while len(level) > 1:
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [H(b"\x01" + p[0] + p[1]) if len(p) == 2 else p[0] for p in pairs]
    return H(b"\x04" + len(leaves).to_bytes(8, "big") + level[0])


def leaves_of(n: int) -> list[bytes]:
    return [H(b"leaf %d" % i) for i in range(n)]


def test_small_trees_by_hand() -> None:
    a, b, c = leaves_of(3)
    la, lb, lc = (H(b"\x00" + x) for x in (a, b, c))
    assert merkle_root([]) == EMPTY_TX_ROOT == H(b"")

    def fin(n: int, top: bytes) -> bytes:
        return H(b"\x04" + n.to_bytes(8, "big") + top)

    assert merkle_root([a]) == fin(1, la)
    assert merkle_root([a, b]) == fin(2, H(b"\x01" + la + lb))
    assert merkle_root([a, b, c]) == fin(3, H(b"\x01" + H(b"\x01" + la + lb) + lc))
    # promotion, not self-pairing: [a, b, c] and [a, b, c, c] differ
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


@pytest.mark.parametrize("n", range(0, 34))
def test_every_proof_of_every_size(n: int) -> None:
    leaves = leaves_of(n)
    root = merkle_root(leaves)
    assert root == ref_root(leaves)
    for i in range(n):
        proof = merkle_proof(leaves, i)
        verify_merkle_proof(root, leaves[i], i, n, proof)
        # wrong index, wrong count, wrong leaf
        for j in {i - 1, i + 1} - {i}:
            if 0 <= j < n:
                with pytest.raises(ProofError):
                    verify_merkle_proof(root, leaves[i], j, n, proof)
        for m in (n - 1, n + 1, 2 * n):
            if m != n and i < m and m > 0:
                with pytest.raises(ProofError):
                    verify_merkle_proof(root, leaves[i], i, m, proof)
        with pytest.raises(ProofError):
            verify_merkle_proof(root, H(b"other"), i, n, proof)
    with pytest.raises(ProofError):
        merkle_proof(leaves, n)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.data())
def test_tampered_proofs_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1))
    root = merkle_root(leaves)
    assert root == ref_root(leaves)
    proof = merkle_proof(leaves, i)
    verify_merkle_proof(root, leaves[i], i, n, proof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        flipped = bytearray(bad[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad[k] = bytes(flipped)
        with pytest.raises(ProofError):
            verify_merkle_proof(root, leaves[i], i, n, bad)
        with pytest.raises(ProofError):
            verify_merkle_proof(root, leaves[i], i, n, proof[:-1])
        with pytest.raises(ProofError):
            verify_merkle_proof(root, leaves[i], i, n, [*proof[:k], proof[k][:31], *proof[k + 1 :]])
    with pytest.raises(ProofError):
        verify_merkle_proof(root, leaves[i], i, n, [*proof, bytes(32)])
    bad_root = bytes([root[0] ^ 1]) + root[1:]
    with pytest.raises(ProofError):
        verify_merkle_proof(bad_root, leaves[i], i, n, proof)


def test_bad_inputs() -> None:
    leaves = leaves_of(4)
    root = merkle_root(leaves)
    proof = merkle_proof(leaves, 1)
    for index, count in [(-1, 4), (4, 4), (0, 0), (1, -3)]:
        with pytest.raises(ProofError):
            verify_merkle_proof(root, leaves[1], index, count, proof)
    with pytest.raises(ProofError):
        verify_merkle_proof(root, leaves[1][:31], 1, 4, proof)
    with pytest.raises(ProofError):
        merkle_root([b"short"])


def test_tx_leaf_is_hash_of_canonical_pair() -> None:
    t, r = H(b"tx"), H(b"receipt")
    assert tx_leaf(t, r) == H(encoding.encode([t, r]))
    assert tx_leaf(t, r) != tx_leaf(r, t)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=70), st.data())
def test_tx_tree_is_merkle_root_and_merkle_proof(leaves: list[bytes], data: st.DataObject) -> None:
    tree = TxTree(leaves)
    assert tree.root == merkle_root(leaves)
    if leaves:
        i = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1))
        assert tree.proof(i) == merkle_proof(leaves, i)
    with pytest.raises(ProofError):
        tree.proof(len(leaves))
