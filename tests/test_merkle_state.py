"""State tree: batch updates and proofs against a naive reference, tampering, encoding.

``ref_root`` is the documented definition of the 16-ary compressed sparse Merkle tree written
as directly as possible (the unique tree of the full entry set, built recursively from a
dict); ``ref_prove`` reads proofs off that same construction. The crash test reuses it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.errors import DecodeError, ProofError
from accord.base.merkle import EMPTY, StateProof, verify_state_proof

from .support.merkle_ref import DictTree, H, _nib, ref_prove, ref_root

keys = st.binary(min_size=1, max_size=6)
values = st.binary(min_size=0, max_size=8)
batches = st.lists(
    st.dictionaries(keys, st.one_of(st.none(), values), max_size=30), min_size=1, max_size=6
)


@given(batches, st.lists(keys, max_size=5))
def test_batches_match_reference(
    batch_list: list[dict[bytes, bytes | None]], probes: list[bytes]
) -> None:
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
            assert proof == ref_prove(snap, k)
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


def _with_level(p: StateProof, d: int, bitmap: int, sibs: tuple[bytes, ...]) -> StateProof:
    levels = list(p.levels)
    levels[d] = (bitmap, sibs)
    return StateProof(tuple(levels), p.other)


def _level_tampers(p: StateProof, path: bytes, bit: int, extra: bytes) -> list[StateProof]:
    """Every way to tamper with one level's fields, at each level of ``p``."""
    out = []
    for d, (bitmap, sibs) in enumerate(p.levels):
        nib = 1 << _nib(path, d)
        free = [i for i in range(16) if not bitmap >> i & 1 and 1 << i != nib]
        if sibs:
            j = bit % len(sibs)
            out.append(
                _with_level(p, d, bitmap, (*sibs[:j], _flip(sibs[j], bit), *sibs[j + 1 :]))
            )  # sibling bit
            out.append(_with_level(p, d, bitmap, sibs[:j] + sibs[j + 1 :]))  # sibling dropped
            out.append(
                _with_level(p, d, bitmap, tuple(reversed(sibs)))
                if len(set(sibs)) > 1
                else _with_level(p, d, bitmap, (*sibs, extra))
            )  # reordered
        out.append(_with_level(p, d, bitmap, (*sibs, extra)))  # sibling added
        out.append(_with_level(p, d, bitmap ^ nib, sibs))  # path's bit toggled
        if free:
            out.append(_with_level(p, d, bitmap | 1 << free[bit % len(free)], sibs))  # extra bit
            out.append(
                _with_level(p, d, bitmap | 1 << free[bit % len(free)], (*sibs, extra))
            )  # extra child
        if bitmap.bit_count() > 1:
            low = bitmap & -bitmap
            moved = (bitmap ^ low) | (1 << free[0]) if free and low != nib else bitmap
            if moved != bitmap:
                out.append(_with_level(p, d, moved, sibs))  # child moved
    if p.levels:
        out.append(StateProof(p.levels[:-1], p.other))  # truncated
        out.append(StateProof(p.levels[1:], p.other))  # missing the top
    out.append(StateProof((*p.levels, (0xFFFF, (extra,) * 15)), p.other))  # extended
    return out


@pytest.fixture(scope="module")
def populated() -> tuple[DictTree, dict[bytes, bytes]]:
    t = DictTree()
    state = {b"acct %d" % i: b"%d" % (i * 7) for i in range(300)}
    t.apply(state)
    return t, state


@given(st.integers(0, 299), st.integers(0, 255))
def test_tampered_membership_rejected(
    populated: tuple[DictTree, dict[bytes, bytes]], i: int, bit: int
) -> None:
    t, state = populated
    key = b"acct %d" % i
    value, proof = t.prove(key)
    assert value == state[key]
    verify_state_proof(t.root, key, value, proof)
    cases = [(key, value, p) for p in _level_tampers(proof, H(key), bit, H(b"extra"))]
    cases += [
        (key, value + b"x", proof),  # wrong value
        (key, None, proof),  # claims absence
        (b"acct %d" % ((i + 1) % 300), value, proof),  # proof of another key
        (key, value, StateProof(proof.levels, (H(key), H(value)))),  # membership naming a leaf
    ]
    for k2, v2, p2 in cases:
        with pytest.raises(ProofError):
            verify_state_proof(t.root, k2, v2, p2)
    with pytest.raises(ProofError):
        verify_state_proof(_flip(t.root, bit), key, value, proof)


@given(st.binary(min_size=1, max_size=8), st.integers(0, 255))
def test_tampered_absence_rejected(
    populated: tuple[DictTree, dict[bytes, bytes]], key: bytes, bit: int
) -> None:
    t, state = populated
    if key in state:
        return
    value, proof = t.prove(key)
    assert value is None
    verify_state_proof(t.root, key, None, proof)
    assert proof == ref_prove(state, key)
    with pytest.raises(ProofError):
        verify_state_proof(t.root, key, b"anything", proof)
    for p2 in _level_tampers(proof, H(key), bit, H(b"extra")):
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, None, p2)
    some = next(iter(state))
    if proof.other is not None:
        path, vh = proof.other
        for bad in [(path, _flip(vh, bit)), (_flip(path, bit), vh), (H(key), vh)]:
            with pytest.raises(ProofError):
                verify_state_proof(t.root, key, None, StateProof(proof.levels, bad))
        # claiming the spot is empty instead of holding the other leaf
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, None, StateProof(proof.levels))
    else:
        # naming a leaf where the spot is empty: use a real leaf of the tree
        with pytest.raises(ProofError):
            verify_state_proof(
                t.root, key, None, StateProof(proof.levels, (H(some), H(state[some])))
            )
    # a present key cannot be proven absent with its own leaf as "the other", nor by an empty spot
    v, p = t.prove(some)
    with pytest.raises(ProofError):
        verify_state_proof(t.root, some, None, StateProof(p.levels, (H(some), H(state[some]))))
    with pytest.raises(ProofError):
        verify_state_proof(t.root, some, None, p)


def test_both_kinds_of_absence_occur(populated: tuple[DictTree, dict[bytes, bytes]]) -> None:
    """Non-membership by an empty child slot and by another key's leaf on the path."""
    t, state = populated
    kinds = set()
    for i in range(200):
        key = b"absent %d" % i
        v, p = t.prove(key)
        assert v is None and p.levels
        verify_state_proof(t.root, key, None, p)
        kinds.add(p.other is None)
    assert kinds == {True, False}


def test_non_canonical_shapes_rejected() -> None:
    """Proofs that fold to a root but describe a shape the tree never has: a node whose only
    child is a leaf, a node with no child."""
    key, value = b"k", b"v"
    leaf = H(b"\x02" + H(key) + H(value))
    bit = 1 << _nib(H(key), 0)
    lone = H(b"\x03" + bit.to_bytes(2, "big") + leaf)  # a node over one leaf: must be promoted
    with pytest.raises(ProofError, match="only child"):
        verify_state_proof(lone, key, value, StateProof(((bit, ()),)))
    childless = H(b"\x03\x00\x00")
    with pytest.raises(ProofError, match="without children"):
        verify_state_proof(childless, key, None, StateProof(((0, ()),)))


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
    with pytest.raises(ProofError):
        verify_state_proof(t.root, b"y", None, StateProof(()))  # the root is not empty
    with pytest.raises(ProofError):
        verify_state_proof(EMPTY, b"y", None, StateProof((), (H(b"x"), H(b"1"))))


def test_state_proof_encoding_is_strict() -> None:
    p = StateProof(((0xFFFF, (H(b"a"),) * 15), (0b101, (EMPTY,))), (H(b"k"), H(b"v")))
    assert StateProof.decode(p.encode()) == p
    assert StateProof.from_obj(encoding.decode(p.encode())) == p
    level = [3, [H(b"a")]]
    bad_objs = [
        [],
        [[level]],
        [[[3, [b"short"]]], None],
        [[level] * 65, None],
        [[[3, [H(b"a")] * 17]], None],
        [[[65536, [H(b"a")]]], None],
        [[[-1, [H(b"a")]]], None],
        [[[True, [H(b"a")]]], None],
        [[[b"\x00\x03", [H(b"a")]]], None],
        [[[3, H(b"a")]], None],
        [[[3]], None],
        [[[3, [H(b"a")], 0]], None],
        [[H(b"a")], None],
        [[level], [H(b"k")]],
        [[level], [H(b"k"), b"x"]],
        [[level], "leaf"],
        ["levels", None],
        [[level], None, None],
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
    with pytest.raises(ProofError, match="deeper"):
        verify_state_proof(EMPTY, b"k", None, StateProof(((0xFFFF, (EMPTY,) * 15),) * 65))
    malformed = [
        StateProof(((0xFFFF, (b"short",) * 15),)),
        StateProof(((0xFFFF, [EMPTY] * 15),)),  # type: ignore[arg-type]
        StateProof(((70000, (EMPTY,) * 15),)),
        StateProof((("ffff", (EMPTY,) * 15),)),  # type: ignore[arg-type]
        StateProof(((0xFFFF,),)),  # type: ignore[arg-type]
        StateProof([(0xFFFF, (EMPTY,) * 15)]),  # type: ignore[arg-type]
        StateProof((), (EMPTY,)),  # type: ignore[arg-type]
        StateProof((), (b"short", EMPTY)),
    ]
    for p in malformed:
        with pytest.raises(ProofError):
            verify_state_proof(EMPTY, b"k", None, p)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=4), min_size=2, max_size=60, unique=True), st.data())
def test_one_by_one_equals_batch_and_rebuild(keys_: list[bytes], data: st.DataObject) -> None:
    """Writes applied as one batch, one at a time, or rebuilt from scratch give one root;
    deleting a random subset one by one agrees with a rebuild too."""
    state = {k: b"v" + k for k in keys_}
    batch = DictTree()
    batch.apply(dict(state))
    single = DictTree()
    for k, v in state.items():
        single.apply({k: v})
    assert batch.root == single.root == ref_root(state)
    gone = data.draw(st.lists(st.sampled_from(keys_), unique=True))
    for k in gone:
        single.apply({k: None})
        del state[k]
    rebuilt = DictTree()
    rebuilt.apply(dict(state))
    batch.apply(dict.fromkeys(gone))
    assert batch.root == single.root == rebuilt.root == ref_root(state)


def test_malformed_fields_of_a_valid_proof_rejected(
    populated: tuple[DictTree, dict[bytes, bytes]],
) -> None:
    """Fields reshaped without changing the bytes they hash to are still refused."""
    t, state = populated
    key = b"acct 7"
    value, proof = t.prove(key)
    verify_state_proof(t.root, key, value, proof)
    d = next(i for i, (_, s) in enumerate(proof.levels) if len(s) >= 2)
    bitmap, sibs = proof.levels[d]
    resplit = (
        sibs[0][:31],
        sibs[0][31:] + sibs[1],
        *sibs[2:],
    )  # same concatenation, sizes 31 and 33
    as_text = tuple(s.hex() for s in sibs)
    for bad in [
        _with_level(proof, d, bitmap, resplit),
        _with_level(proof, d, bitmap, as_text),  # type: ignore[arg-type]
        _with_level(proof, d, bitmap, list(sibs)),  # type: ignore[arg-type]
        _with_level(proof, d, bool(bitmap), sibs),
        StateProof(list(proof.levels)),  # type: ignore[arg-type]
        StateProof(
            tuple([bitmap, list(sibs)] if i == d else lv for i, lv in enumerate(proof.levels))
        ),  # type: ignore[misc]
    ]:
        with pytest.raises(ProofError):
            verify_state_proof(t.root, key, value, bad)
