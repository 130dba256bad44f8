"""State tree: batch updates and proofs against a naive reference, tampering, encoding.

``ref_root`` is the documented definition of the compressed sparse Merkle tree written as
directly as possible (a full recomputation from a dict); the crash test reuses it.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord import encoding
from accord.errors import DecodeError, ProofError
from accord.merkle import EMPTY, StateProof, verify_state_proof
from accord.storage import tree


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _bit(path: bytes, d: int) -> int:
    return (path[d // 8] >> (7 - d % 8)) & 1


def _ref(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not entries:
        return bytes(32)
    if len(entries) == 1:
        path, vh = entries[0]
        return H(b"\x02" + path + vh)
    left = [e for e in entries if _bit(e[0], depth) == 0]
    right = [e for e in entries if _bit(e[0], depth) == 1]
    return H(b"\x03" + _ref(left, depth + 1) + _ref(right, depth + 1))


def ref_root(state: dict[bytes, bytes]) -> bytes:
    """Root of the state ``key -> value`` recomputed from scratch."""
    return _ref([(H(k), H(v)) for k, v in state.items()], 0)


class DictTree:
    """The production tree code over a dict of nodes (what LMDB holds in the store)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self.root = EMPTY

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        root, new = tree.compute_update(self.nodes.get, self.root, writes)
        for k, rec in new.items():
            assert tree.record_hash(rec) == k[-32:]  # keyed by position || hash
        self.nodes.update(new)
        self.root = root

    def prove(self, key: bytes, root: bytes | None = None) -> tuple[bytes | None, StateProof]:
        return tree.prove(self.nodes.get, self.root if root is None else root, key)


keys = st.binary(min_size=1, max_size=6)
values = st.binary(min_size=0, max_size=8)
batches = st.lists(st.dictionaries(keys, st.one_of(st.none(), values), max_size=30), min_size=1, max_size=6)


@given(batches, st.lists(keys, max_size=5))
def test_batches_match_reference(batch_list: list[dict[bytes, bytes | None]], probes: list[bytes]) -> None:
    t = DictTree()
    state: dict[bytes, bytes] = {}
    history = []
    for batch in batch_list:
        t.apply(batch)
        for k, v in batch.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        assert t.root == ref_root(state)
        history.append((t.root, dict(state)))
    # every key present proves its value, absent ones prove absence, also under old roots
    for root, snap in history[-2:]:
        for k in [*snap, *probes, *(k for b in batch_list for k in b)]:
            v, proof = t.prove(k, root)
            assert v == snap.get(k)
            verify_state_proof(root, k, v, proof)
            # the proof survives its canonical encoding
            again = StateProof.decode(proof.encode())
            assert again == proof
            verify_state_proof(root, k, v, again)


def test_update_equals_one_big_batch_and_order_free() -> None:
    items = {b"key %d" % i: b"value %d" % i for i in range(500)}
    one = DictTree()
    one.apply(items)
    inc = DictTree()
    for i in range(0, 500, 37):
        inc.apply(dict(list(items.items())[i : i + 37]))
    assert one.root == inc.root == ref_root(items)
    # deleting everything returns to the empty root
    inc.apply(dict.fromkeys(items))
    assert inc.root == EMPTY
    # deleting an absent key and writing the same value change nothing
    before = one.root
    one.apply({b"absent": None, b"key 3": b"value 3"})
    assert one.root == before


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def populated() -> tuple[DictTree, dict[bytes, bytes]]:
    t = DictTree()
    state = {b"acct %d" % i: b"%d" % (i * 7) for i in range(300)}
    t.apply(state)
    return t, state


@given(st.integers(0, 299), st.integers(0, 255), st.data())
def test_tampered_membership_rejected(populated: tuple[DictTree, dict[bytes, bytes]], i: int, bit: int, data: st.DataObject) -> None:
    t, state = populated
    key = b"acct %d" % i
    value, proof = t.prove(key)
    assert value == state[key]
    verify_state_proof(t.root, key, value, proof)
    k = data.draw(st.integers(0, len(proof.siblings) - 1))
    sib = list(proof.siblings)
    sib[k] = _flip(sib[k], bit)
    cases = [
        (key, value, StateProof(tuple(sib))),                       # flipped sibling bit
        (key, value + b"x", proof),                                 # wrong value
        (key, None, proof),                                         # claims absence
        (b"acct %d" % ((i + 1) % 300), value, proof),               # proof of another key
        (key, value, StateProof(proof.siblings[:-1])),              # truncated
        (key, value, StateProof(proof.siblings[1:])),               # missing the top
        (key, value, StateProof((*proof.siblings, EMPTY))),         # extended
        (key, value, StateProof(proof.siblings, (H(key), H(value)))),  # membership naming a leaf
    ]
    for k2, v2, p2 in cases:
        with pytest.raises(ProofError):
            verify_state_proof(t.root, k2, v2, p2)
    with pytest.raises(ProofError):
        verify_state_proof(_flip(t.root, bit), key, value, proof)


@given(st.binary(min_size=1, max_size=8), st.integers(0, 255))
def test_tampered_absence_rejected(populated: tuple[DictTree, dict[bytes, bytes]], key: bytes, bit: int) -> None:
    t, state = populated
    if key in state:
        return
    value, proof = t.prove(key)
    assert value is None
    verify_state_proof(t.root, key, None, proof)
    with pytest.raises(ProofError):
        verify_state_proof(t.root, key, b"anything", proof)
    if proof.siblings:
        sib = list(proof.siblings)
        sib[-1] = _flip(sib[-1], bit)
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, None, StateProof(tuple(sib), proof.other))
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, None, StateProof(proof.siblings[:-1], proof.other))
    if proof.other is not None:
        path, vh = proof.other
        for bad in [(path, _flip(vh, bit)), (_flip(path, bit), vh)]:
            with pytest.raises(ProofError):
                verify_state_proof(t.root, key, None, StateProof(proof.siblings, bad))
        # claiming the spot is empty instead of holding the other leaf
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, None, StateProof(proof.siblings))
    else:
        # naming a leaf where the spot is empty: use a real leaf of the tree
        some = next(iter(state))
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, None, StateProof(proof.siblings, (H(some), H(state[some]))))
    # a present key cannot be proven absent with its own leaf as "the other"
    some = next(iter(state))
    v, p = t.prove(some)
    with pytest.raises(ProofError):
        verify_state_proof(t.root, some, None, StateProof(p.siblings, (H(some), H(state[some]))))


def test_empty_tree_and_single_leaf() -> None:
    t = DictTree()
    v, p = t.prove(b"x")
    assert v is None and p == StateProof(())
    verify_state_proof(EMPTY, b"x", None, p)
    t.apply({b"x": b"1"})
    assert t.root == H(b"\x02" + H(b"x") + H(b"1"))
    verify_state_proof(t.root, b"x", b"1", t.prove(b"x")[1])
    v, p = t.prove(b"y")
    assert v is None and p.other == (H(b"x"), H(b"1"))
    verify_state_proof(t.root, b"y", None, p)


def test_state_proof_encoding_is_strict() -> None:
    p = StateProof((H(b"a"), EMPTY), (H(b"k"), H(b"v")))
    assert StateProof.decode(p.encode()) == p
    assert StateProof.from_obj(encoding.decode(p.encode())) == p
    bad_objs = [
        [],
        [[H(b"a")]],
        [[b"short"], None],
        [[H(b"a")] * 257, None],
        [[H(b"a")], [H(b"k")]],
        [[H(b"a")], [H(b"k"), b"x"]],
        [[H(b"a")], "leaf"],
        ["siblings", None],
        [[H(b"a")], None, None],
    ]
    for obj in bad_objs:
        with pytest.raises(DecodeError):
            StateProof.decode(encoding.encode(obj))
    for raw in [b"", b"\xc1", p.encode() + b"\x00", b"\x92\x90"]:
        with pytest.raises(DecodeError):
            StateProof.decode(raw)


def test_verifier_rejects_non_proofs() -> None:
    with pytest.raises(ProofError):
        verify_state_proof(EMPTY, b"k", None, [[], None])  # type: ignore[arg-type]
    with pytest.raises(ProofError):
        verify_state_proof(EMPTY, b"k", None, StateProof((EMPTY,) * 257))
    with pytest.raises(ProofError):
        verify_state_proof(EMPTY, b"k", None, StateProof((b"short",)))
