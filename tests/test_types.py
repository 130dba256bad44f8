"""Ledger types: canonical forms, strict decoding, signatures, genesis checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import (
    DecodeError,
    GenesisError,
    InvalidSignature,
    ValidationError,
    WrongChain,
)
from accord.base.genesis import Genesis, ValidatorInfo
from accord.base.types import Block, Certificate, Header, Tx, bitmap_from, bitmap_indices, body_hash

from .support.genesis import make_genesis

KEY = AccountKey.from_name("alice")


def tx(nonce: int = 0, **args: object) -> Tx:
    return Tx.create(
        KEY,
        chain_id="c",
        contract="token",
        method="transfer",
        args=args or {"to": b"\x01" * 20, "amount": 5},
        nonce=nonce,
    )


@given(st.integers(0, 2**64 - 1), st.integers(1, 10**9), st.binary(max_size=40))
def test_tx_round_trip(nonce: int, amount: int, to: bytes) -> None:
    t = tx(nonce, to=to, amount=amount)
    back = Tx.decode(t.encode())
    assert back == t and back.hash == t.hash
    back.check("c")


_names = st.text(max_size=70)
_u64ish = st.one_of(st.integers(-2, 2**64 + 1), st.booleans(), st.none(), st.binary(max_size=2))


@given(
    _names,
    _names,
    _names,
    st.dictionaries(st.text(max_size=8), st.integers(0, 2**63), max_size=4),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)
def test_tx_signing_bytes_cut_from_the_encoding_equal_the_generic_encoding(
    chain_id: str,
    contract: str,
    method: str,
    args: dict[str, int],
    nonce: int,
    gas: int,
) -> None:
    """The signed bytes taken out of a transaction's encoding are exactly
    ``encode([TX_DOMAIN, *body])``, for created and for decoded transactions."""
    from accord.base.types import TX_DOMAIN

    made = Tx.create(
        KEY,
        chain_id=chain_id,
        contract=contract,
        method=method,
        args=args,
        nonce=nonce,
        gas_limit=gas,
    )
    assert made.encode() == encoding.encode(made.to_obj())  # the encoding create() assembled
    t = Tx(chain_id, contract, method, args, KEY.public_key, nonce, gas, b"\x07" * 64)
    generic = encoding.encode([TX_DOMAIN, *t.body()])
    assert t.signing_bytes() == generic  # nothing cached yet: the generic path
    t.encode()
    assert t.signing_bytes() == generic  # cut from the cached encoding
    if max(len(chain_id), len(contract), len(method)) <= 64:
        assert Tx.decode(t.encode()).signing_bytes() == generic


@given(
    st.lists(
        st.one_of(
            _names,
            st.binary(max_size=70),
            _u64ish,
            st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
        ),
        min_size=7,
        max_size=9,
    ),
    st.integers(0, 7),
)
def test_tx_from_obj_fast_path_accepts_exactly_what_the_field_checks_accept(
    fields: list[object],
    keep: int,
) -> None:
    """Mutate a valid transaction's fields at random: the one-pass check and the field by
    field checks agree on every input (same transaction, or a DecodeError)."""
    valid = tx().to_obj()
    obj = (
        list(fields)
        if len(fields) != 8
        else [valid[i] if i <= keep else fields[i] for i in range(8)]
    )
    try:
        fast = Tx.from_obj(obj)
    except DecodeError:
        fast = None
    slow: Tx | None
    try:
        slow = _slow_from_obj(obj)
    except DecodeError:
        slow = None
    assert fast == slow


def _slow_from_obj(obj: list[object]) -> Tx:
    """Tx.from_obj's field by field path alone (a wrapper the fast path does not match)."""
    from accord.base import types

    f = types._list(obj, 8, "tx")
    types._expect(type(f[3]) is dict, "tx args must be a map")
    return Tx(
        types._str(f[0], "chain id"),
        types._str(f[1], "contract"),
        types._str(f[2], "method"),
        f[3],
        types._bytes(f[4], 32, "public key"),
        types._int(f[5], "nonce"),
        types._int(f[6], "gas limit"),
        types._bytes(f[7], 64, "signature"),
    )


def test_tx_signature_covers_every_field() -> None:
    t = tx()
    obj = t.to_obj()
    for i, new in [(0, "other"), (1, "x"), (2, "mint"), (3, {"amount": 6}), (5, 1), (6, 7)]:
        forged = list(obj)
        forged[i] = new
        with pytest.raises((InvalidSignature, WrongChain)):
            Tx.from_obj(forged).check("c")


def test_signature_verification_follows_zip215_on_edge_cases() -> None:
    """Signatures from a standard signer verify; every flipped bit, a non-canonical ``s``
    (``s + L``, the classic malleation) and a key that is not a curve point are refused."""
    from accord.base.crypto import ed25519

    L = 2**252 + 27742317777372353535851937790883648493
    t = tx()
    msg, sig, pk = t.signing_bytes(), t.signature, t.public_key
    ed25519.verify(pk, msg, sig)
    for bit in range(0, 512, 7):
        bad = bytearray(sig)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidSignature):
            ed25519.verify(pk, msg, bytes(bad))
    s = int.from_bytes(sig[32:], "little")
    with pytest.raises(InvalidSignature):
        ed25519.verify(pk, msg, sig[:32] + (s + L).to_bytes(32, "little"))
    not_a_point = (2).to_bytes(32, "little")  # y = 2 has no x on the curve
    with pytest.raises(InvalidSignature):
        ed25519.verify(not_a_point, msg, sig)
    with pytest.raises(InvalidSignature):
        ed25519.verify(pk[:31], msg, sig)


def test_keys_of_small_order_sign_nothing() -> None:
    """Under ZIP-215 alone anyone could sign any message for a small-order public key (R = sB
    verifies for every message). Each of the eight small-order points, in every encoding
    (non-canonical y + p, either sign bit), is refused; libsodium's blocklist is the same."""
    import os

    import ed25519_zebra
    from nacl.bindings import (
        crypto_core_ed25519_scalar_reduce,
        crypto_scalarmult_ed25519_base_noclamp,
    )

    from accord.base.crypto import ed25519

    assert {
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "0100000000000000000000000000000000000000000000000000000000000000",
    } <= {e.hex() for e in ed25519._SMALL_ORDER}
    s = crypto_core_ed25519_scalar_reduce(os.urandom(64))
    forged = crypto_scalarmult_ed25519_base_noclamp(s) + s
    accepted_by_zip215 = 0
    for enc in ed25519._SMALL_ORDER:
        for key in (enc, enc[:31] + bytes((enc[31] | 0x80,))):
            accepted_by_zip215 += ed25519_zebra.ed_verify(forged, b"move everything", key)
            with pytest.raises(InvalidSignature, match="small order"):
                ed25519.verify(key, b"move everything", forged)
    assert accepted_by_zip215 >= 7
    identity = bytes([1]) + bytes(31)
    assert ed25519_zebra.ed_verify(forged, b"any message", identity)  # why the check exists
    with pytest.raises(InvalidSignature):
        ed25519.verify(identity, b"any message", forged)


def test_tx_wrong_chain() -> None:
    with pytest.raises(WrongChain):
        tx().check("other-chain")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o[:7],
        lambda o: [*o, 1],
        lambda o: [o[0], o[1], o[2], [], *o[4:]],
        lambda o: [*o[:4], b"short", *o[5:]],
        lambda o: [*o[:5], -1, *o[6:]],
        lambda o: [*o[:7], b"\x00" * 10],
    ],
)
def test_tx_malformed_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError):
        Tx.decode(encoding.encode(mutate(tx().to_obj())))


def test_header_and_block_round_trip() -> None:
    h = Header(
        "c",
        3,
        7,
        b"\x01" * 32,
        b"\x02" * 32,
        b"\x03" * 32,
        1,
        2,
        1000,
        b"\x04" * 96,
        body_hash((tx(),)),
    )
    assert Header.decode(h.encode()) == h
    b = Block(h, (tx(),))
    assert Block.decode(b.encode()) == b
    bad = Block(Header("c", 3, 7, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 2, 2, 1000), (tx(),))
    with pytest.raises(DecodeError):
        Block.decode(bad.encode())
    # Other transactions under a genuine header (a block's hash is its header's) are refused
    # on decoding, whatever the count: a lying peer cannot swap a body.
    other = Tx.create(
        AccountKey.from_name("mallory"),
        chain_id="c",
        contract="token",
        method="transfer",
        args={"to": bytes(20), "amount": 9},
        nonce=0,
    )
    swapped = Block(h, (other,))
    assert swapped.hash == b.hash
    with pytest.raises(DecodeError, match="body hash"):
        Block.decode(swapped.encode())
    assert (
        Block.decode(Block(replace(h, body_hash=body_hash((other,))), (other,)).encode()).hash
        != b.hash
    )


def test_certificate_bitmap() -> None:
    bm = bitmap_from([0, 3, 9], 10)
    assert bitmap_indices(bm) == [0, 3, 9]
    c = Certificate(1, 2, 2, b"\x00" * 32, bm, b"\x00" * 96)
    assert Certificate.decode(c.encode()) == c


def test_genesis_hash_is_stable_and_pop_checked() -> None:
    g = make_genesis(4)
    g.check()
    assert g.hash == Genesis.model_validate_json(g.model_dump_json()).hash
    assert (g.n, g.f, g.quorum) == (4, 1, 3)
    sk = bls.demo_secret("intruder")
    other = bls.demo_secret("someone-else")
    bad_v = ValidatorInfo(
        name="x", bls_public_key=bls.public_key(sk).hex(), pop=bls.pop_prove(other).hex()
    )
    g2 = g.model_copy(update={"validators": [*g.validators, bad_v]})
    with pytest.raises(GenesisError):
        g2.check()


def test_genesis_file_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = make_genesis(4)
    g.save(tmp_path / "genesis.json")
    assert Genesis.load(tmp_path / "genesis.json").hash == g.hash
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GenesisError):
        Genesis.load(tmp_path / "bad.json")


@given(st.integers(min_value=1, max_value=40), st.data())
def test_signer_indices_agree_with_the_consensus_check(n: int, data: st.DataObject) -> None:
    from accord.consensus import certificate_signers

    weighted = data.draw(st.booleans())
    if weighted:
        counts = data.draw(
            st.lists(st.integers(min_value=0, max_value=50_000), min_size=n, max_size=n)
        )
        signers = b"".join(c.to_bytes(2, "little") for c in counts)
    else:
        chosen = data.draw(st.sets(st.integers(min_value=0, max_value=n - 1)))
        signers = bitmap_from(chosen, n)
    cert = Certificate(1, 0, 2, b"\x01" * 32, signers, b"")
    assert cert.signer_indices(n) == certificate_signers(cert, n)
    with pytest.raises(ValidationError):
        Certificate(1, 0, 2, b"\x01" * 32, b"\x00" * (2 * n + 1), b"").signer_indices(n)
