"""The light client against lying nodes.

A real single-validator ledger (LMDB store, runtime, real BLS certificates) serves the client
API; a tampering proxy in front of it changes one field of one kind of answer at a time
(header fields, certificate signature/bitmap/target, tx bytes, receipt, proof fields and
siblings, state value, state proof, state header, a header that does not chain, garbage).
Every tampering must be caught with a NodeLied naming the proxy and the failed check, and
nothing it served may enter the trusted state. With an honest node next to the liar the client
gets verified answers and reports the liar. Two conflicting headers with valid certificates
(forged with the validator's public demo key) stop the client with evidence, also after a
restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.errors import ForkDetected, LightClientError, NodeLied
from accord.base.types import Certificate, Header, Receipt, Tx, bitmap_from, vote_message
from accord.light import LightClient

from .support import light
from .support.api import ALICE, BOB, transfer
from .support.light import Doc, Ledger, Mutator, Proxy

# the module-scoped honest ledger and its tampering proxy
ledger = light.ledger
proxy = light.proxy

pytestmark = pytest.mark.timeout(120)


# --- mutations ---------------------------------------------------------------------------------


def _header(d: Doc) -> Header:
    return Header.decode(bytes.fromhex(d["raw"]))


def _set_header(d: Doc, h: Header) -> None:
    d["raw"] = h.encode().hex()


def _cert(d: Doc) -> Certificate:
    return Certificate.decode(bytes.fromhex(d["raw"]))


def _set_cert(d: Doc, c: Certificate) -> None:
    d["raw"] = c.encode().hex()


def on_headers(height: int, fn: Callable[[Doc], None]) -> Mutator:
    """Apply ``fn`` to the header-with-certificate entry at ``height`` (list or single form)."""

    def mutate(path: str, doc: Doc) -> Doc:
        if path == "/v1/headers":
            for entry in doc["headers"]:
                if _header(entry["header"]).height == height:
                    fn(entry)
        elif path == f"/v1/headers/{height}":
            fn(doc)
        return doc

    return mutate


def header_field(at: int, **changes: Any) -> Mutator:
    return on_headers(
        at, lambda e: _set_header(e["header"], dataclasses.replace(_header(e["header"]), **changes))
    )


def cert_change(height: int, fn: Callable[[Certificate], Certificate | None]) -> Mutator:
    def change(e: Doc) -> None:
        c = fn(_cert(e["certificate"]))
        if c is None:
            e["certificate"] = None
        else:
            _set_cert(e["certificate"], c)

    return on_headers(height, change)


def _other_signature(c: Certificate) -> Certificate:
    # A valid signature by the validator, on another message (the vote of another height).
    sk = bls.demo_secret("v0")
    sig = bls.sign(sk, vote_message("accord-api-test", c.height + 7, c.round, 2, c.block_hash))
    return dataclasses.replace(c, signature=sig)


def strip_certificates(path: str, doc: Doc) -> Doc:
    if path == "/v1/headers":
        for e in doc["headers"]:
            e["certificate"] = None
    elif path.startswith("/v1/headers/"):
        doc["certificate"] = None
    return doc


def drop_height(height: int) -> Mutator:
    def mutate(path: str, doc: Doc) -> Doc:
        if path == "/v1/headers":
            doc["headers"] = [e for e in doc["headers"] if _header(e["header"]).height != height]
        return doc

    return mutate


def on_tx(fn: Callable[[Doc], None]) -> Mutator:
    def mutate(path: str, doc: Doc) -> Doc:
        if path.startswith("/v1/txs/") and doc.get("status") == "committed":
            fn(doc)
        return doc

    return mutate


def _tx_change(d: Doc) -> None:
    tx = Tx.decode(bytes.fromhex(d["tx"]["raw"]))
    args = dict(tx.args)
    args["amount"] = 999_999  # signature kept: the bytes no longer hash to the asked hash
    d["tx"]["raw"] = dataclasses.replace(tx, args=args).encode().hex()


def _receipt_change(**changes: Any) -> Callable[[Doc], None]:
    def fn(d: Doc) -> None:
        r = Receipt.from_obj(encoding.decode(bytes.fromhex(d["receipt"]["raw"])))
        d["receipt"]["raw"] = encoding.encode(dataclasses.replace(r, **changes).to_obj()).hex()

    return fn


def _flip(hexstr: str) -> str:
    b = bytearray(bytes.fromhex(hexstr))
    b[0] ^= 1
    return b.hex()


def _sibling_flip(d: Doc) -> None:
    d["proof"]["siblings"][0] = _flip(d["proof"]["siblings"][0])


def _index_change(d: Doc) -> None:
    d["proof"]["index"] = d["index"] = 2


def on_state(fn: Callable[[Doc], None]) -> Mutator:
    def mutate(path: str, doc: Doc) -> Doc:
        # the contract a test reads, not the validator-set proofs sync reads (its own test)
        if path.startswith("/v1/state/") and not path.startswith("/v1/state/governance/"):
            fn(doc)
        return doc

    return mutate


def _state_value(d: Doc) -> None:
    d["value"] = encoding.encode(10**12).hex()


def _state_proof_flip(d: Doc) -> None:
    obj = encoding.decode(bytes.fromhex(d["proof_raw"]))
    sibs = next(
        level[1] for level in obj[0] if level[1]
    )  # [levels, other]; level = [bitmap, siblings]
    sibs[0] = bytes([sibs[0][0] ^ 1]) + sibs[0][1:]
    d["proof_raw"] = encoding.encode(obj).hex()


def _state_header(d: Doc) -> None:
    h = _header(d["header"])
    _set_header(d["header"], dataclasses.replace(h, state_root=bytes(32)))


def _state_key(d: Doc) -> None:
    d["state_key"] = _flip(d["state_key"])


def _state_height(d: Doc) -> None:
    d["height"] = d["height"] - 1


# (name, mutation, operation, expected check)
CASES: list[tuple[str, Mutator, str, str]] = [
    ("header state_root", header_field(2, state_root=bytes(32)), "sync", "certificate"),
    ("header tx_root", header_field(2, tx_root=bytes(32)), "sync", "certificate"),
    ("header time", header_field(3, time_ms=123), "sync", "certificate"),
    ("header proposer", header_field(2, proposer=5), "sync", "certificate"),
    ("header round", header_field(2, round=9), "sync", "certificate"),
    ("header parent", header_field(3, parent_hash=bytes(32)), "sync", "certificate"),
    ("header height", header_field(2, height=3), "sync", "header_height"),
    ("header chain id", header_field(2, chain_id="other-chain"), "sync", "header_chain_id"),
    (
        "genesis header tampered (does not chain)",
        header_field(0, state_root=bytes(32)),
        "sync",
        "header_chain",
    ),
    ("a height left out (does not chain)", drop_height(2), "sync", "header_height"),
    ("certificate signature", cert_change(2, _other_signature), "sync", "certificate"),
    (
        "certificate signature garbage",
        cert_change(2, lambda c: dataclasses.replace(c, signature=b"\x01" * 96)),
        "sync",
        "certificate",
    ),
    (
        "certificate empty bitmap",
        cert_change(2, lambda c: dataclasses.replace(c, signers=bitmap_from([], 1))),
        "sync",
        "certificate",
    ),
    (
        "certificate wrong bitmap size",
        cert_change(2, lambda c: dataclasses.replace(c, signers=b"\x01\x00\x00")),
        "sync",
        "certificate",
    ),
    (
        "certificate phase P",
        cert_change(2, lambda c: dataclasses.replace(c, phase=1)),
        "sync",
        "certificate",
    ),
    (
        "certificate for another block",
        cert_change(2, lambda c: dataclasses.replace(c, block_hash=bytes(32))),
        "sync",
        "certificate",
    ),
    ("garbage reply", lambda p, d: d, "garbage", "response"),
    ("tx bytes", on_tx(_tx_change), "tx", "tx_hash"),
    ("receipt gas", on_tx(_receipt_change(gas_used=1)), "tx", "tx_inclusion"),
    ("receipt ok flag", on_tx(_receipt_change(ok=False)), "tx", "tx_inclusion"),
    ("receipt names another tx", on_tx(_receipt_change(tx_hash=bytes(32))), "tx", "receipt"),
    ("proof sibling", on_tx(_sibling_flip), "tx", "tx_inclusion"),
    (
        "proof leaf",
        on_tx(lambda d: d["proof"].__setitem__("leaf", _flip(d["proof"]["leaf"]))),
        "tx",
        "tx_inclusion",
    ),
    ("proof count", on_tx(lambda d: d["proof"].__setitem__("count", 4)), "tx", "tx_inclusion"),
    ("proof index", on_tx(_index_change), "tx", "tx_inclusion"),
    (
        "proof tx_root",
        on_tx(lambda d: d["proof"].__setitem__("tx_root", "00" * 32)),
        "tx",
        "tx_inclusion",
    ),
    ("tx height", on_tx(lambda d: d.__setitem__("height", 2)), "tx", "tx_block"),
    ("tx block hash", on_tx(lambda d: d.__setitem__("block_hash", "00" * 32)), "tx", "tx_block"),
    ("state value", on_state(_state_value), "state", "state_proof"),
    (
        "state value hidden",
        on_state(lambda d: d.__setitem__("value", None)),
        "state",
        "state_proof",
    ),
    ("absent value invented", on_state(_state_value), "absent", "state_proof"),
    ("state proof sibling", on_state(_state_proof_flip), "state", "state_proof"),
    ("state proof sibling (absent)", on_state(_state_proof_flip), "absent", "state_proof"),
    ("state header", on_state(_state_header), "state", "state_header"),
    ("state height", on_state(_state_height), "state", "state_header"),
    ("state key", on_state(_state_key), "state", "state_key"),
]


def run_op(lc: LightClient, ledger: Ledger, op: str) -> Any:
    if op in ("sync", "garbage"):
        return lc.sync()
    if op == "header":
        return lc.header(1)
    if op == "tx":
        return lc.verify_tx(ledger.target.hash)
    if op == "state":
        return lc.verify_state("token", BOB.address)
    if op == "absent":
        return lc.verify_state("token", b"\x42" * 20)
    raise AssertionError(op)


@pytest.mark.parametrize(("name", "mutate", "op", "check"), CASES, ids=[c[0] for c in CASES])
def test_every_tampering_is_caught(
    ledger: Ledger, proxy: Proxy, tmp_path: Path, name: str, mutate: Mutator, op: str, check: str
) -> None:
    proxy.mutate = mutate
    proxy.garbage_on = "/v1/headers" if op == "garbage" else None
    store = tmp_path / "light.json"
    try:
        with LightClient(ledger.genesis, [proxy.url], store=store) as lc:
            with pytest.raises(NodeLied) as info:
                run_op(lc, ledger, op)
            assert info.value.node == proxy.url
            assert info.value.check == check, info.value.message
            assert proxy.url in str(info.value) and check in str(info.value)
            assert any(f.check == check for f in lc.faults)
            # Nothing the liar served was believed: every stored header is the honest one.
            for height, t in lc.store.headers.items():
                assert t.hash == ledger.served.node.store.get_header(height).hash
    finally:
        proxy.mutate = lambda p, d: d
        proxy.garbage_on = None


def test_honest_node_next_to_a_liar(ledger: Ledger, proxy: Proxy, tmp_path: Path) -> None:
    proxy.mutate = on_tx(_sibling_flip)
    try:
        with LightClient(
            ledger.genesis, [proxy.url, ledger.served.url], store=tmp_path / "l.json"
        ) as lc:
            report = lc.sync()
            assert report.to_height == ledger.served.head()[0]
            vt = lc.verify_tx(ledger.target.hash)
            assert (
                vt.node == ledger.served.url and vt.receipt.ok and vt.index == 1 and vt.height == 1
            )
            assert [(f.node, f.check) for f in lc.faults] == [(proxy.url, "tx_inclusion")]
    finally:
        proxy.mutate = lambda p, d: d


def test_untampered_proxy_is_believed(ledger: Ledger, proxy: Proxy) -> None:
    """The proxy itself changes nothing when told to: the failures above are the tampering."""
    with LightClient(ledger.genesis, [proxy.url]) as lc:
        lc.sync()
        assert lc.verify_tx(ledger.target.hash).index == 1
        assert lc.verify_state("token", BOB.address).present
        assert not lc.verify_state("token", b"\x42" * 20).present
        assert lc.faults == []


# --- forks ---------------------------------------------------------------------------------


def _forged(ledger: Ledger, height: int, **changes: Any) -> tuple[Header, Certificate]:
    """A different header at ``height`` with a valid certificate: what a validator set that
    signs two blocks at one height produces (here: the single validator's public demo key)."""
    honest = ledger.served.node.store.get_header(height)
    assert honest is not None
    h = dataclasses.replace(honest, **changes)
    sig = bls.sign(bls.demo_secret("v0"), vote_message(h.chain_id, height, 0, 2, h.hash))
    return h, Certificate(height, 0, 2, h.hash, bitmap_from([0], 1), sig)


def _serve(header: Header, cert: Certificate) -> Callable[[Doc], None]:
    def fn(e: Doc) -> None:
        _set_header(e["header"], header)
        e["certificate"] = {"raw": cert.encode().hex()}

    return fn


def test_conflicting_certified_headers_stop_the_client(
    ledger: Ledger, proxy: Proxy, tmp_path: Path
) -> None:
    head = ledger.served.head()[0]
    forged, cert = _forged(ledger, head, state_root=b"\x07" * 32)
    proxy.mutate = on_headers(head, _serve(forged, cert))
    store = tmp_path / "light.json"
    try:
        with LightClient(ledger.genesis, [ledger.served.url, proxy.url], store=store) as lc:
            with pytest.raises(ForkDetected) as info:
                lc.sync()
            ev = info.value.evidence
            assert ev["height"] == head and ev["b"]["node"] == proxy.url
            assert {ev["a"]["header"], ev["b"]["header"]} == {
                ledger.served.node.store.get_header(head).encode().hex(),
                forged.encode().hex(),
            }
            with pytest.raises(ForkDetected):  # stopped: refuses everything after
                lc.verify_state("token", BOB.address)
        # ... also after a restart: the evidence is on disk.
        with LightClient(ledger.genesis, [ledger.served.url], store=store) as lc2:
            with pytest.raises(ForkDetected):
                lc2.sync()
            assert lc2.store.fork is not None and lc2.store.fork["height"] == head
    finally:
        proxy.mutate = lambda p, d: d


def test_certified_header_that_does_not_chain_is_a_fork(
    ledger: Ledger, proxy: Proxy, tmp_path: Path
) -> None:
    """A validly certified header whose parent is not the trusted header below it."""
    head = ledger.served.head()[0]
    with LightClient(ledger.genesis, [ledger.served.url], store=tmp_path / "l.json") as lc:
        lc.sync()
    ledger.served.submit_direct(transfer(ALICE, ledger.nonce, BOB.address, 1))
    ledger.nonce += 1
    ledger.served.commit()
    forged, cert = _forged(ledger, head + 1, parent_hash=b"\x09" * 32)
    proxy.mutate = on_headers(head + 1, _serve(forged, cert))
    try:
        with LightClient(ledger.genesis, [proxy.url], store=tmp_path / "l.json") as lc:
            with pytest.raises(ForkDetected) as info:
                lc.sync()
            assert info.value.evidence["b"]["node"] == proxy.url
            assert lc.head is not None and lc.head.height == head
    finally:
        proxy.mutate = lambda p, d: d


def test_no_node_reachable_is_an_error_not_a_lie(ledger: Ledger) -> None:
    with LightClient(ledger.genesis, ["http://127.0.0.1:9"], timeout=2) as lc:
        with pytest.raises(LightClientError) as info:
            lc.sync()
        assert not isinstance(info.value, NodeLied)
        assert lc.faults == []


def test_unknown_and_pending_tx_are_not_verified(ledger: Ledger) -> None:
    with LightClient(ledger.genesis, [ledger.served.url]) as lc:
        with pytest.raises(LightClientError) as info:
            lc.verify_tx(b"\x01" * 32)
        assert "unknown" in info.value.message and not isinstance(info.value, NodeLied)


def test_async_client_has_the_same_checks(ledger: Ledger, proxy: Proxy) -> None:
    from accord.light import AsyncLightClient

    async def go() -> None:
        async with AsyncLightClient(ledger.genesis, [proxy.url, ledger.served.url]) as lc:
            proxy.mutate = on_state(_state_value)
            vs = await lc.verify_state("token", BOB.address)
            assert vs.node == ledger.served.url and vs.present
            assert [(f.node, f.check) for f in lc.faults] == [(proxy.url, "state_proof")]

    try:
        asyncio.run(go())
    finally:
        proxy.mutate = lambda p, d: d


def test_headers_without_certificates_are_not_trusted(ledger: Ledger, proxy: Proxy) -> None:
    proxy.mutate = strip_certificates
    try:
        with LightClient(ledger.genesis, [proxy.url]) as lc:
            report = lc.sync()
            assert lc.head is None and report.headers_verified == 0
            assert (
                "no certificate" in report.nodes[proxy.url]
                and "not trusted" in report.nodes[proxy.url]
            )
            with pytest.raises(LightClientError, match="no certified header") as info:
                lc.header(1)
            assert not isinstance(info.value, NodeLied) and lc.store.get(1) is None
    finally:
        proxy.mutate = lambda p, d: d


def test_cli_reports_the_liar_and_the_fork(
    ledger: Ledger, proxy: Proxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from accord.cli.main import main
    from accord.light import TrustStore

    ledger.genesis.save(tmp_path / "genesis.json")
    common = ["--genesis", str(tmp_path / "genesis.json"), "--store", str(tmp_path / "cli.json")]
    proxy.mutate = on_state(_state_value)
    try:
        assert (
            main(["light", "state", "token", BOB.address.hex(), *common, "--node", proxy.url]) == 1
        )
        err = capsys.readouterr().err
        assert "NOT VERIFIED" in err and proxy.url in err and "state_proof" in err
        # With an honest node as well: verified, and the liar is listed.
        assert (
            main(
                [
                    "light",
                    "state",
                    "token",
                    BOB.address.hex(),
                    *common,
                    "--node",
                    proxy.url,
                    "--node",
                    ledger.served.url,
                    "--json",
                ]
            )
            == 0
        )
        doc = json.loads(capsys.readouterr().out)
        assert doc["present"] is True and doc["faults"][0]["node"] == proxy.url
    finally:
        proxy.mutate = lambda p, d: d
    TrustStore(ledger.genesis.chain_id, ledger.genesis.hash, tmp_path / "cli.json").set_fork(
        {"height": 1}
    )
    assert main(["light", "sync", *common, "--node", ledger.served.url, "--json"]) == 3
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "fork_detected"
