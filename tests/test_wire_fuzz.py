"""Fuzzers for the wire decoders (consensus messages, transactions, blocks, transport frames,
handshake fields): whatever the bytes, each decoder returns a value or raises its own clean
error (DecodeError, BadFrame, HandshakeRefused: AccordErrors with a code), never anything
else (no IndexError, RecursionError, MemoryError...), and a core fed the same bytes counts
them and changes nothing it should not. Inputs are random values, random bytes, and valid
encodings with flipped, inserted, deleted or truncated bytes (the likeliest attack)."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError, BadFrame, HandshakeRefused
from accord.base.genesis import ConsensusParams
from accord.base.types import Block, Certificate, Tx
from accord.consensus import (
    Aggregate,
    BuildBlock,
    Core,
    CostModelCrypto,
    MessageReceived,
    Params,
    Proposal,
    Tick,
    Ticket,
    decode_message,
)
from accord.consensus.sortition import sortition_message
from accord.net import handshake as hs
from accord.net.frames import Kind, decode_frame, encode_frame, kind_specs
from accord.sim.engine import SimConfig, Simulator

N = 4
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_messages() -> list[bytes]:
    sim = Simulator(SimConfig(nodes=N, block_txs=3, rounds=1, round_ms=1000))
    nd = sim.nodes[1]
    ticket = sim.signers[1].sign(sortition_message("accord-sim", 1, 0, nd.core.status().seed))
    block = sim.build_block(nd, BuildBlock(1, 0, sim.genesis_hash, 1, ticket))
    vote = Aggregate.single(N, 1, 0, 1, block.hash, 1, sim.signers[1].sign(b"x"))
    return [
        Ticket(1, 0, 1, ticket).encode(),
        vote.encode(),
        Proposal(0, 1, ticket, block, None, None).encode(),
    ]


MESSAGES = _valid_messages()
KEY = AccountKey.from_name("fuzz")
TX = Tx.create(
    KEY,
    chain_id="c",
    contract="token",
    method="transfer",
    args={"to": bytes(20), "amount": 5, "memo": [1, {"a": b"x"}]},
    nonce=0,
    gas_limit=10_000,
).encode()
SPECS = kind_specs(ConsensusParams())
HELLO = encode_frame(
    Kind.HELLO,
    {
        "version": hs.VERSION,
        "genesis": bytes(32),
        "key": bytes(48),
        "to": 1,
        "nonce": bytes(hs.NONCE_SIZE),
    },
)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=80)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC4, 0xCF, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF])
            )
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


def _nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"  # [[[...[1]...]]]: depth bombs


def _clean(fn: Any, data: bytes, errors: tuple[type[BaseException], ...] = (AccordError,)) -> None:
    try:
        fn(data)
    except errors as e:
        assert isinstance(e, AccordError) and e.code, (
            e
        )  # a code for the metrics, a message for logs


wire = st.one_of(
    mutated(MESSAGES),
    st.binary(max_size=300),
    values.map(encoding.encode),
    st.integers(1, 3000).map(_nested),
)


@FUZZ
@given(wire)
def test_consensus_decoder_raises_only_decode_errors(data: bytes) -> None:
    _clean(lambda b: decode_message(b, N, 1 << 20), data)


@FUZZ
@given(
    st.one_of(
        mutated([TX]),
        st.binary(max_size=300),
        values.map(encoding.encode),
        st.integers(1, 3000).map(_nested),
    )
)
def test_transaction_decoder_raises_only_decode_errors(data: bytes) -> None:
    _clean(Tx.decode, data)


@FUZZ
@given(st.one_of(mutated([MESSAGES[2]]), values.map(encoding.encode)))
def test_block_and_certificate_decoders_raise_only_decode_errors(data: bytes) -> None:
    _clean(Block.decode, data)
    _clean(lambda b: Certificate.from_obj(encoding.decode(b)), data)


@FUZZ
@given(
    st.one_of(
        mutated([HELLO, encode_frame(Kind.CONSENSUS, MESSAGES[1])]),
        st.binary(max_size=200),
        values.map(encoding.encode),
        st.integers(1, 3000).map(_nested),
    )
)
def test_frames_and_handshake_fields_raise_only_their_errors(data: bytes) -> None:
    try:
        kind, payload = decode_frame(data, SPECS)
    except BadFrame as e:
        assert e.code and e.reason
        return
    for name, typ, size in (
        ("version", int, None),
        ("genesis", bytes, 32),
        ("key", bytes, 48),
        ("to", int, None),
        ("nonce", bytes, hs.NONCE_SIZE),
        ("sig", bytes, None),
    ):
        try:
            hs.field(payload, name, typ, size)
        except HandshakeRefused as e:
            assert e.reason == "malformed"
    try:
        hs.verify(bytes(48), payload, bytes(32), bytes(32), bytes(32), 0, 1)
    except HandshakeRefused as e:
        assert e.reason in ("malformed", "bad_signature")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire, min_size=1, max_size=8))
def test_a_core_fed_garbage_counts_it_and_keeps_its_votes(batch: list[bytes]) -> None:
    model = CostModelCrypto(N, seed=b"fuzz")
    core = Core(
        Params(chain_id="accord-sim", n=N),
        model.signer(0),
        model,
        head=(0, hashlib.sha256(b"accord-sim-genesis").digest()),
    )
    core.handle(Tick(100))
    before = core._safety.encode()
    for data in batch:
        core.handle(MessageReceived(1 + len(data) % (N - 1), data))
    s = core.status().stats
    assert s["received"] == len(batch)
    # no vote, no lock from garbage (the whole safety state, so white-box)
    assert core.status().height == 1 and core._safety.encode() == before
