"""Poseidon, BabyJubJub, EdDSA-Poseidon, notes, the commitment tree, the regulator cipher and
compressed proof points: the Python side must match circomlib bit for bit.

Vectors: circomlib's own test values (Poseidon([1,2]), Poseidon([1,2,3,4])) and values computed
with circomlibjs 0.1.7 (the devDependency in package.json).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base.errors import DecodeError, ProofError, ValidationError
from accord.zk import babyjub, groth16
from accord.zk import notes as zk
from accord.zk.ceremony import CeremonyParams
from accord.zk.poseidon import FIELD, poseidon, poseidon_ex

# --- Poseidon --------------------------------------------------------------------------------


def test_poseidon_matches_circomlib_vectors() -> None:
    assert poseidon(1, 2) == 0x115CC0F5E7D690413DF64C6B9662E9CF2A3617F2743245519E19607A4417189A
    assert (
        poseidon(1, 2, 3, 4) == 0x299C867DB6C1FDD79DCEFA40E4510B9837E60EBB1CE0663DBAA525DF65250465
    )
    # circomlibjs 0.1.7
    assert (
        poseidon(0) == 19014214495641488759237505126948346942972912379615652741039992445865937985820
    )
    assert (
        poseidon(1, 2, 3)
        == 6542985608222806190361240322586112750744169038454362455181422643027100751666
    )
    assert (
        poseidon(1, 2, 3, 4, 5)
        == 6183221330272524995739186171720101788151706631170188140075976616310159254464
    )


def test_poseidon_ex_squeezes_like_circomlibjs() -> None:
    assert poseidon_ex([1, 2, 5, 0], 0, 5) == [
        7664771263934108287633766733300453249640428319911616500145758059138830520182,
        7500499852486797053604318238247669955495396902965050895411068446511843377906,
        21759364912251269440968216184195083025714327737430778748499180621738108198236,
        16849990034266545694787278624448698680442372969198018888547082288274220919144,
        11376884348715871422889704950222589973610449657096839382522193118667177690270,
    ]


def test_poseidon_rejects_bad_inputs() -> None:
    with pytest.raises(ValidationError):
        poseidon(FIELD)
    with pytest.raises(ValidationError):
        poseidon(-1)
    with pytest.raises(ValidationError):
        poseidon(*range(6))
    with pytest.raises(ValidationError):
        poseidon()


# --- BabyJubJub and EdDSA ---------------------------------------------------------------------

# circomlibjs: eddsa.prv2pub / signPoseidon with prv = 00010203...0001, message 1234
LIB_A = (
    13277427435165878497778222415993513565335242147425444199013288855685581939618,
    13622229784656158136036771217484571176836296686641868549125388198837476602820,
)
LIB_SIG = babyjub.Signature(
    (
        11220723668893468001994760120794694848178115379170651044669708829805665054484,
        2367470421002446880004241260470975644531657398480773647535134774673409612366,
    ),
    2010143491207902444122668013146870263468969134090678646686512037244361350365,
)


def test_babyjub_scalar_mul_matches_circomlibjs() -> None:
    assert babyjub.mul(babyjub.BASE8, 123456789) == (
        15919299401931535325513703139194931338293993994510664661086800834970360591752,
        1645780246786685895560641778865228215443840970280597910012614014295481144366,
    )
    assert babyjub.mul(babyjub.GENERATOR, 8) == babyjub.BASE8
    assert babyjub.mul(babyjub.BASE8, babyjub.SUBORDER) == babyjub.IDENTITY
    assert babyjub.in_subgroup(babyjub.BASE8)
    assert not babyjub.in_subgroup(babyjub.GENERATOR)  # order 8l, not l


def test_eddsa_verifies_circomlibjs_signature() -> None:
    assert babyjub.eddsa_verify(LIB_A, 1234, LIB_SIG)
    assert not babyjub.eddsa_verify(LIB_A, 1235, LIB_SIG)
    bad = babyjub.Signature(LIB_SIG.r8, (LIB_SIG.s + 1) % babyjub.SUBORDER)
    assert not babyjub.eddsa_verify(LIB_A, 1234, bad)
    # S >= l is refused even though S - l would satisfy the equation (malleability)
    mall = babyjub.Signature(LIB_SIG.r8, LIB_SIG.s + babyjub.SUBORDER)
    assert not babyjub.eddsa_verify(LIB_A, 1234, mall)


@settings(max_examples=10)
@given(st.binary(min_size=32, max_size=32), st.integers(0, FIELD - 1))
def test_eddsa_sign_verify(secret: bytes, msg: int) -> None:
    a = babyjub.eddsa_public_key(secret)
    sig = babyjub.eddsa_sign(secret, msg)
    assert babyjub.eddsa_verify(a, msg, sig)
    assert not babyjub.eddsa_verify(a, (msg + 1) % FIELD, sig)


def test_check_key_refuses_small_and_off_curve_points() -> None:
    with pytest.raises(ValidationError):
        babyjub.check_key(babyjub.IDENTITY)
    with pytest.raises(ValidationError):
        babyjub.check_key((1, 2))
    with pytest.raises(ValidationError):
        babyjub.check_key(babyjub.GENERATOR)
    assert babyjub.check_key(babyjub.BASE8) == babyjub.BASE8


# --- notes, tree, regulator ---------------------------------------------------------------------


def test_note_encryption_finds_only_the_recipient() -> None:
    alice, bob = zk.SpendingKey.from_seed(b"alice"), zk.SpendingKey.from_seed(b"bob")
    note = zk.Note(42, bob.owner, 5, 6)
    blob = note.encrypt(bob.address.viewing)
    assert zk.Note.decrypt(bob, blob) == note
    assert zk.Note.decrypt(alice, blob) is None
    assert zk.Note.decrypt(bob, blob[:-1] + bytes([blob[-1] ^ 1])) is None
    assert zk.Note.decrypt(bob, b"garbage") is None
    assert zk.Address.from_bytes(bob.address.to_bytes()) == bob.address
    with pytest.raises(DecodeError):
        zk.Address.from_bytes(b"\x00" * 63)


def test_note_value_range() -> None:
    with pytest.raises(ValidationError):
        zk.Note(2**64, 1, 2, 3)
    with pytest.raises(ValidationError):
        zk.Note(-1, 1, 2, 3)


@settings(max_examples=15)
@given(st.lists(st.integers(0, FIELD - 1), min_size=1, max_size=12), st.data())
def test_tree_paths_and_frontier_agree(leaves: list[int], data: st.DataObject) -> None:
    tree = zk.MerkleTree(5)
    for leaf in leaves:
        tree.append(leaf)
    i = data.draw(st.integers(0, len(leaves) - 1))
    elements, bits = tree.path(i)
    assert zk.root_from_path(leaves[i], elements, bits) == tree.root
    # The contract's frontier insertion computes the same root.
    z = zk.zeros(5)
    filled = list(z[:5])
    root = z[5]
    for n, leaf in enumerate(leaves):
        idx, cur = n, leaf
        for level in range(5):
            if idx % 2 == 0:
                filled[level] = cur
                cur = zk.hash2(cur, z[level])
            else:
                cur = zk.hash2(filled[level], cur)
            idx //= 2
        root = cur
    assert root == tree.root


def test_regulator_round_trip_and_wrong_key() -> None:
    reg = zk.RegulatorKey.from_seed(b"reg")
    other = zk.RegulatorKey.from_seed(b"other")
    plain = [11, 22, 33, 44, 55]
    eph, cipher = zk.regulator_encrypt(reg.public, plain, 987654321)
    rec = reg.decrypt(eph, cipher)
    assert (rec.sender, rec.receivers, rec.values) == (11, (22, 44), (33, 55))
    wrong = other.decrypt(eph, cipher)
    assert (wrong.sender, wrong.receivers, wrong.values) != (11, (22, 44), (33, 55))
    with pytest.raises(ValidationError):
        reg.decrypt((1, 2), cipher)


def test_plan_transfer_refuses_unbalanced_and_foreign_notes() -> None:
    key = zk.SpendingKey.from_seed(b"k")
    reg = zk.RegulatorKey.from_seed(b"reg").public
    tree = zk.MerkleTree(4)
    note = zk.Note(10, key.owner, 1, 2)
    idx = tree.append(note.commitment)
    with pytest.raises(ValidationError):
        zk.plan_transfer(
            key, [zk.SpendInput(note, idx)], [(key.address, 11)], tree, reg, chain_id="t"
        )
    foreign = zk.SpendingKey.from_seed(b"f")
    with pytest.raises(ValidationError):
        zk.plan_transfer(
            foreign, [zk.SpendInput(note, idx)], [(key.address, 10)], tree, reg, chain_id="t"
        )
    with pytest.raises(ValidationError):
        zk.plan_transfer(
            key, [zk.SpendInput(note, idx + 1)], [(key.address, 10)], tree, reg, chain_id="t"
        )
    plan = zk.plan_transfer(
        key,
        [zk.SpendInput(note, idx)],
        [(key.address, 10)],
        tree,
        reg,
        rng=random.Random(1),
        chain_id="t",
    )
    assert len(plan.public) == zk.N_TRANSFER_PUBLIC
    assert plan.public[zk.PUB_ROOT] == tree.root
    assert plan.public[zk.PUB_NF] == key.nullifier(note.rho)


# --- compressed points ------------------------------------------------------------------------


@settings(max_examples=8)
@given(st.integers(1, groth16.R - 1))
def test_point_compression_round_trip(k: int) -> None:
    from py_ecc.optimized_bn128 import G1, G2, eq, multiply

    p1 = multiply(G1, k)
    p2 = multiply(G2, k)
    assert eq(groth16.decompress_g1(groth16.compress_g1(p1), "A"), p1)
    assert eq(groth16.decompress_g2(groth16.compress_g2(p2), "B"), p2)


def test_decompression_refuses_bad_points() -> None:
    with pytest.raises(ProofError):
        groth16.decompress_g1(b"\xff" * 32, "A")  # x >= q
    with pytest.raises(ProofError):
        groth16.decompress_g1(bytes([0x40]) + bytes(31), "A")  # infinity
    x = 0
    while groth16._sqrt_fq((x**3 + 3) % groth16.Q) is not None:
        x += 1
    with pytest.raises(ProofError):
        groth16.decompress_g1(x.to_bytes(32, "big"), "A")  # not on the curve
    with pytest.raises(ProofError):
        groth16.decompress_proof(b"\x00" * 127)


def test_ceremony_params_are_checked() -> None:
    with pytest.raises(ValidationError):
        CeremonyParams(power=30, members=("a",)).check()
    with pytest.raises(ValidationError):
        CeremonyParams(power=12, members=()).check()
    with pytest.raises(ValidationError):
        CeremonyParams(power=12, members=("a", "a")).check()
    with pytest.raises(ValidationError):
        CeremonyParams(power=12, members=("a b",)).check()
    with pytest.raises(ValidationError):
        CeremonyParams(power=12, members=("a",), beacon="xyz").check()


# --- the fast pairing -------------------------------------------------------------------------


def _a1(p: object) -> tuple[int, int]:
    from py_ecc.optimized_bn128 import normalize

    x, y = normalize(p)
    return int(x.n), int(y.n)


def _a2(p: object) -> tuple[tuple[int, int], tuple[int, int]]:
    from py_ecc.optimized_bn128 import normalize

    x, y = normalize(p)
    return (int(x.coeffs[0]), int(x.coeffs[1])), (int(y.coeffs[0]), int(y.coeffs[1]))


def test_fast_pairing_equals_py_ecc() -> None:
    from py_ecc.optimized_bn128 import G1, G2, multiply, pairing

    from accord.zk import pairing as fp

    p, q = multiply(G1, 12345), multiply(G2, 6789)
    assert fp.pairing_product([(_a1(p), _a2(q))]) == [int(c) for c in pairing(q, p).coeffs]


@settings(max_examples=3)
@given(st.integers(1, groth16.R - 1), st.integers(1, groth16.R - 1))
def test_fast_pairing_is_bilinear(a: int, b: int) -> None:
    from py_ecc.optimized_bn128 import G1, G2, multiply, neg

    from accord.zk import pairing as fp

    # e(aP, bQ) * e(-abP, Q) == 1, and not 1 when the product is off by one
    pairs = [
        (_a1(multiply(G1, a)), _a2(multiply(G2, b))),
        (_a1(neg(multiply(G1, a * b % groth16.R))), _a2(G2)),
    ]
    assert fp.pairing_product(pairs) == fp.ONE
    pairs[1] = (_a1(neg(multiply(G1, (a * b + 1) % groth16.R))), _a2(G2))
    assert fp.pairing_product(pairs) != fp.ONE
