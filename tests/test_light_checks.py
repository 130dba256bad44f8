"""Light-client checks and trusted store, without a network.

Certificates from a 7-validator genesis (quorum 5) built with the demo keys: any quorum of
distinct signers is accepted, anything below is refused, and no single flipped byte of a
header or certificate gets through. The JSON store round-trips, resumes, refuses another
chain's file, a corrupted file and a stored head whose certificate does not verify.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import merkle
from accord.base.crypto import bls
from accord.base.errors import DecodeError, LightClientError, NodeLied
from accord.base.types import ZERO_HASH, Certificate, Header
from accord.benches.light import bench_genesis, certify, make_chain
from accord.light import AsyncLightClient, Checker, TrustedHeader, TrustStore

SECRETS = [bls.demo_secret(f"light-check-{i}") for i in range(7)]
GENESIS = bench_genesis(SECRETS)
CHECKER = Checker(GENESIS)
CHAIN = make_chain(GENESIS, SECRETS, 6, random.Random(5))
HEADERS = [Header.decode(h) for h, _ in CHAIN]
CERTS = [Certificate.decode(c) for _, c in CHAIN]


def test_chain_verifies() -> None:
    assert GENESIS.quorum == 5
    for i, (h, c) in enumerate(zip(HEADERS, CERTS, strict=True)):
        CHECKER.certified("n", h, c, i + 1)
        if i:
            CHECKER.check_link("n", HEADERS[i - 1], h)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(0, 6), min_size=1, max_size=7))
def test_quorum_of_distinct_signers(signers: set[int]) -> None:
    header = HEADERS[2]
    cert = certify(header, SECRETS, sorted(signers))
    if len(signers) >= GENESIS.quorum:
        CHECKER.check_certificate("n", header, cert)
    else:
        with pytest.raises(NodeLied) as info:
            CHECKER.check_certificate("n", header, cert)
        assert info.value.check == "certificate" and "quorum" in info.value.message


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["header", "certificate"]), st.data())
def test_no_flipped_byte_gets_through(which: str, data: st.DataObject) -> None:
    hb, cb = CHAIN[3]
    raw = bytearray(hb if which == "header" else cb)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        header = Header.decode(bytes(raw)) if which == "header" else HEADERS[3]
        cert = Certificate.decode(bytes(raw)) if which == "certificate" else CERTS[3]
    except DecodeError:
        return  # not even a header/certificate: refused at decoding
    with pytest.raises(NodeLied):
        CHECKER.certified("n", header, cert, 4)
        CHECKER.check_link("n", HEADERS[2], header)


def test_signers_must_sign_this_block_at_this_height() -> None:
    h = HEADERS[1]
    # The votes of the right validators, but on another block / as a P vote / short bitmap.
    wrong = certify(HEADERS[2], SECRETS, [0, 1, 2, 3, 4])
    for cert in (
        dataclasses.replace(wrong, height=h.height, block_hash=h.hash),
        dataclasses.replace(CERTS[1], phase=1),
        dataclasses.replace(CERTS[1], signers=b""),
        dataclasses.replace(CERTS[1], signature=CERTS[2].signature),
        None,
    ):
        with pytest.raises(NodeLied) as info:
            CHECKER.check_certificate("node-x", h, cert)
        assert info.value.check == "certificate" and info.value.node == "node-x"


def test_link_checks() -> None:
    with pytest.raises(NodeLied) as info:
        CHECKER.check_link("n", HEADERS[0], HEADERS[2])
    assert info.value.check == "header_chain"
    earlier = dataclasses.replace(HEADERS[1], time_ms=HEADERS[0].time_ms - 1)
    with pytest.raises(NodeLied) as info:
        CHECKER.check_link("n", HEADERS[0], earlier)
    assert info.value.check == "header_time"
    with pytest.raises(NodeLied) as info:
        CHECKER.check_shape("n", dataclasses.replace(HEADERS[0], chain_id="x"), 1)
    assert info.value.check == "header_chain_id"
    g0 = Header(
        GENESIS.chain_id,
        0,
        0,
        ZERO_HASH,
        merkle.EMPTY_TX_ROOT,
        bytes(32),
        0,
        0,
        GENESIS.genesis_time_ms,
    )
    CHECKER.check_shape("n", g0, 0)
    with pytest.raises(NodeLied) as info:
        CHECKER.check_shape("n", dataclasses.replace(g0, parent_hash=b"\x01" * 32), 0)
    assert info.value.check == "genesis_header"


# --- the store -------------------------------------------------------------------------------


def _store(path: Path | None, **kw: int) -> TrustStore:
    return TrustStore(GENESIS.chain_id, GENESIS.hash, path, **kw)


def test_store_round_trip_and_trim(tmp_path: Path) -> None:
    path = tmp_path / "s" / "light.json"
    s = _store(path, keep=4)
    s.add([TrustedHeader(h, c) for h, c in zip(HEADERS, CERTS, strict=True)])
    assert s.head_height == 6 and sorted(s.headers) == [3, 4, 5, 6]
    again = _store(path)
    assert again.head is not None and again.head.hash == HEADERS[-1].hash
    assert again.get(3) is not None and again.get(3).certificate == CERTS[2]
    assert not list(path.parent.glob(".light-*"))  # no temporary file left behind


def test_store_refuses_other_chain_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "light.json"
    _store(path).add([TrustedHeader(HEADERS[0], CERTS[0])])
    with pytest.raises(LightClientError, match="another genesis"):
        TrustStore("other", GENESIS.hash, path)
    doc = json.loads(path.read_text())
    doc["headers"]["1"][0] = HEADERS[1].encode().hex()  # no longer the certified header
    path.write_text(json.dumps(doc))
    with pytest.raises(LightClientError):
        _store(path)
    path.write_text("{not json")
    with pytest.raises(LightClientError):
        _store(path)
    doc = json.loads(json.dumps(_store(None).to_json()))
    doc["head"] = 9
    path.write_text(json.dumps(doc))
    with pytest.raises(LightClientError, match="head"):
        _store(path)


def test_stored_head_is_rechecked(tmp_path: Path) -> None:
    path = tmp_path / "light.json"
    forged_cert = dataclasses.replace(CERTS[1], signature=CERTS[2].signature)
    # A certificate for header 2 carrying another block's signature, written behind our back.
    _store(path).add([TrustedHeader(HEADERS[1], forged_cert)])
    with pytest.raises(LightClientError, match="stored head does not verify"):
        AsyncLightClient(GENESIS, ["http://127.0.0.1:9"], store=path)


def test_checkpoint_header_starts_the_client(tmp_path: Path) -> None:
    lc = AsyncLightClient(
        GENESIS, ["http://127.0.0.1:9"], store=tmp_path / "l.json", trusted_header=HEADERS[3]
    )
    assert lc.head is not None and lc.head.hash == HEADERS[3].hash and lc.head.certificate is None
    with pytest.raises(LightClientError, match="chain"):
        AsyncLightClient(
            GENESIS,
            ["http://127.0.0.1:9"],
            trusted_header=dataclasses.replace(HEADERS[3], chain_id="elsewhere"),
        )
    with pytest.raises(LightClientError, match="at least one node"):
        AsyncLightClient(GENESIS, [])
