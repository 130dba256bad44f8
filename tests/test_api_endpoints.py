"""Every client API endpoint against a real store with real committed blocks.

The node is a real single-validator ledger (LMDB store, runtime, chain, mempool); its blocks
carry real BLS certificates. Responses are checked against the store and with the pure
verifiers a light client would use (Merkle and state proofs, certificate signatures).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.base import encoding, merkle
from accord.base.errors import ProofError
from accord.base.merkle import StateProof
from accord.base.metrics import parse_text
from accord.base.types import Block, Certificate, Header, Receipt, Tx
from accord.base.wire import value_from_json, value_to_json
from accord.client import AsyncClient, BlockCommitted, Client, EventCommitted
from accord.consensus import verify_certificate as consensus_verify_certificate
from accord.contracts.base import state_key
from accord.node.api import ApiConfig, openapi

from .support.api import ALICE, BOB, START_BALANCE, ServedNode, http, http_json, transfer

CAROL = bytes(range(1, 21))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    sn = ServedNode(Path(tmp_path_factory.mktemp("api-endpoints")), ApiConfig())
    # Block 1: three good transfers and one that reverts (amount above the balance).
    sn.submit_direct(transfer(ALICE, 0, BOB.address, 10))
    sn.submit_direct(transfer(ALICE, 1, CAROL, 20))
    sn.submit_direct(transfer(ALICE, 2, BOB.address, 30))
    sn.submit_direct(transfer(BOB, 0, CAROL, 10 * START_BALANCE))
    sn.commit()
    sn.commit()  # block 2: empty
    try:
        yield sn
    finally:
        sn.close()


@pytest.fixture(scope="module")
def client(served: ServedNode) -> Iterator[Client]:
    with Client(served.url) as c:
        yield c


def nonce(served: ServedNode, key: object) -> int:
    """The account's next nonce, counting its pending transactions."""
    return served.call(lambda: served.node.mempool.next_nonce(key.address))  # type: ignore[attr-defined]


def verify_certificate(served: ServedNode, header: Header, cert: Certificate) -> None:
    g = served.node.genesis
    assert cert.block_hash == header.hash and cert.height == header.height
    consensus_verify_certificate(g, g.chain_id, cert, g.quorum)


# --- transactions ----------------------------------------------------------------------------


def test_submit_json_and_raw_then_commit(served: ServedNode, client: Client) -> None:
    n = nonce(served, BOB)
    tx1 = transfer(BOB, n, ALICE.address, 1)
    status, doc = http_json(served.url, "POST", "/v1/txs", {"tx": tx1.encode().hex()})
    assert status == 202 and doc == {"tx_hash": tx1.hash.hex()}
    tx2 = transfer(BOB, n + 1, ALICE.address, 2)
    status, _, body = http(served.url, "POST", "/v1/txs", tx2.encode(), "application/octet-stream")
    assert status == 202 and json.loads(body)["tx_hash"] == tx2.hash.hex()
    assert client.tx(tx2.hash).status == "pending"
    block = served.commit()
    assert [t.hash for t in block.txs] == [tx1.hash, tx2.hash]
    assert client.wait(tx2.hash, timeout=5).ok


def test_batch_submit_per_item_results(served: ServedNode, client: Client) -> None:
    n = nonce(served, BOB)
    good = [transfer(BOB, n + i, CAROL, 1) for i in range(3)]
    nxt = transfer(BOB, n + 3, CAROL, 1)
    bad_sig = Tx(*nxt.to_obj()[:7], signature=bytes(64))
    results = client.submit_many([good[0], good[1], good[1], good[2]])
    assert results[0] == good[0].hash and results[1] == good[1].hash and results[3] == good[2].hash
    assert getattr(results[2], "code", None) == "duplicate_tx"
    status, doc = http_json(
        served.url,
        "POST",
        "/v1/txs/batch",
        {"txs": [bad_sig.encode().hex(), "zz", transfer(BOB, n + 9, CAROL, 1).encode().hex()]},
    )
    assert status == 200 and doc["accepted"] == 0
    assert [r["error"]["code"] for r in doc["results"]] == [
        "invalid_signature",
        "decode_error",
        "bad_nonce",
    ]
    served.commit()
    for t in good:
        assert client.tx(t.hash).committed


def test_tx_status_receipt_and_inclusion_proof(served: ServedNode, client: Client) -> None:
    block1 = served.node.store.get_block(1)
    assert block1 is not None and len(block1.txs) == 4
    for i, tx in enumerate(block1.txs):
        st = client.tx(tx.hash, include_tx=True)
        assert st.status == "committed" and st.height == 1 and st.index == i
        assert st.block_hash == block1.hash and st.tx == tx
        assert st.receipt is not None and st.proof is not None
        assert st.receipt == served.node.store.get_receipts(1)[i]
        p = st.proof
        assert p.tx_root == block1.header.tx_root
        assert p.leaf == merkle.tx_leaf(tx.hash, st.receipt.hash)
        merkle.verify_merkle_proof(p.tx_root, p.leaf, p.index, p.count, p.siblings)
    # The reverting transfer is committed with a failed receipt.
    bob_tx = next(t for t in block1.txs if t.sender == BOB.address)
    failed = client.tx(bob_tx.hash).receipt
    assert failed is not None and not failed.ok and failed.error_code == "revert"
    # JSON view of the receipt: events with tagged bytes.
    status, doc = http_json(served.url, "GET", f"/v1/txs/{block1.txs[0].hash.hex()}")
    ev = doc["receipt"]["events"][0]
    assert status == 200 and ev["name"] == "Transfer"
    assert value_from_json(ev["data"])["to"] == block1.txs[0].args["to"]
    # Receipt raw bytes re-hash to the receipt hash.
    raw = bytes.fromhex(doc["receipt"]["raw"])
    assert encoding.sha256(raw).hex() == doc["receipt"]["hash"]


def test_tx_unknown_and_no_proof(served: ServedNode, client: Client) -> None:
    st = client.tx(bytes(32))
    assert st.status == "unknown" and st.receipt is None and st.proof is None
    block1 = served.node.store.get_block(1)
    assert block1 is not None
    st2 = client.tx(block1.txs[0].hash, proof=False)
    assert st2.committed and st2.proof is None and st2.receipt is not None


# --- blocks and headers ------------------------------------------------------------------------


def test_blocks_by_height_hash_latest_and_raw(served: ServedNode, client: Client) -> None:
    store = served.node.store
    for h in (0, 1, 2):
        stored = store.get_block(h)
        assert stored is not None
        assert client.block(h) == stored
        assert client.block_by_hash(stored.hash) == stored
        status, hdrs, body = http(served.url, "GET", f"/v1/blocks/{h}?format=raw")
        assert status == 200 and hdrs["content-type"].startswith("application/octet-stream")
        assert body == stored.encode() and Block.decode(body).hash == stored.hash
    head_height, head_hash = served.head()
    assert client.block("latest").hash == head_hash
    doc = client.block_json(1, receipts=True)
    assert doc["height"] == 1 and len(doc["txs"]) == 4 and len(doc["receipts"]) == 4
    assert doc["header"]["hash"] == store.get_block(1).hash.hex()
    assert Tx.decode(bytes.fromhex(doc["txs"][0]["raw"])) == store.get_block(1).txs[0]
    assert value_from_json(doc["txs"][0]["args"]) == store.get_block(1).txs[0].args
    oks = [Receipt.from_obj(encoding.decode(bytes.fromhex(r["raw"]))).ok for r in doc["receipts"]]
    assert sorted(oks) == [False, True, True, True]
    assert client.block_json(1)["receipts"] is None
    assert head_height >= 2


def test_headers_with_certificates(served: ServedNode, client: Client) -> None:
    store = served.node.store
    hwc = client.header(1)
    assert hwc.header == store.get_header(1) and hwc.certificate == store.get_certificate(1)
    assert hwc.certificate is not None
    verify_certificate(served, hwc.header, hwc.certificate)
    genesis_header = client.header(0)
    assert genesis_header.certificate is None and genesis_header.header.height == 0
    head_height = served.head()[0]
    batch = client.headers(0, 1000)
    assert [x.header.height for x in batch] == list(range(head_height + 1))
    for prev, cur in zip(batch, batch[1:], strict=False):
        assert cur.header.parent_hash == prev.header.hash
        assert cur.certificate is not None
        verify_certificate(served, cur.header, cur.certificate)
    assert [x.header.height for x in client.headers(1, 1)] == [1]
    assert client.headers(head_height + 5, 10) == []
    status, doc = http_json(served.url, "GET", "/v1/headers/1")
    assert Header.decode(bytes.fromhex(doc["header"]["raw"])).hash.hex() == doc["header"]["hash"]
    assert doc["certificate"]["signer_indices"] == [0]


# --- state and queries ---------------------------------------------------------------------


def test_state_membership_proof_against_header(served: ServedNode, client: Client) -> None:
    sv = client.state("token", BOB.address)
    assert sv.state_key == state_key("token", BOB.address)
    assert sv.decoded == client.query("token", "balance_of", account=BOB.address)
    assert sv.header == served.node.store.get_header(sv.height)
    merkle.verify_state_proof(sv.header.state_root, sv.state_key, sv.value, sv.proof)
    # What the node served cannot be bent: another value, key or root does not verify.
    assert sv.value is not None
    with pytest.raises(ProofError):
        merkle.verify_state_proof(sv.header.state_root, sv.state_key, sv.value + b"\x00", sv.proof)
    with pytest.raises(ProofError):
        merkle.verify_state_proof(sv.header.state_root, sv.state_key, None, sv.proof)
    with pytest.raises(ProofError):
        merkle.verify_state_proof(
            sv.header.state_root, state_key("token", CAROL), sv.value, sv.proof
        )
    with pytest.raises(ProofError):
        merkle.verify_state_proof(bytes(32), sv.state_key, sv.value, sv.proof)
    # A str key (the token's total supply) through key_type=str.
    supply = client.state("token", "supply")
    assert supply.decoded == 2 * START_BALANCE
    merkle.verify_state_proof(
        supply.header.state_root, supply.state_key, supply.value, supply.proof
    )


def test_state_absent_key_non_membership(served: ServedNode, client: Client) -> None:
    nobody = bytes([0xEE] * 20)
    sv = client.state("token", nobody)
    assert sv.value is None and sv.decoded is None
    merkle.verify_state_proof(sv.header.state_root, sv.state_key, None, sv.proof)
    status, doc = http_json(served.url, "GET", f"/v1/state/token/{nobody.hex()}")
    assert status == 200 and doc["value"] is None
    assert StateProof.decode(bytes.fromhex(doc["proof_raw"])) == sv.proof
    assert doc["proof"] == value_to_json(sv.proof.to_obj())


def test_state_proof_stays_valid_as_chain_grows(served: ServedNode, client: Client) -> None:
    before = client.state("token", CAROL)
    served.submit_direct(transfer(ALICE, nonce(served, ALICE), CAROL, 5))
    served.commit()
    after = client.state("token", CAROL)
    assert after.height > before.height and after.decoded == before.decoded + 5
    # The old answer still verifies against its own header (roots are never forgotten).
    merkle.verify_state_proof(
        before.header.state_root, before.state_key, before.value, before.proof
    )
    merkle.verify_state_proof(after.header.state_root, after.state_key, after.value, after.proof)


def test_state_at_an_earlier_height_is_proved_against_that_header(
    served: ServedNode, client: Client
) -> None:
    """``?height=``: what a light client reads to learn the validator set of later heights."""
    before = client.state("token", CAROL)
    served.submit_direct(transfer(ALICE, nonce(served, ALICE), CAROL, 7))
    served.commit()
    old = client.state("token", CAROL, height=before.height)
    assert old.height == before.height and old.header == before.header
    assert old.decoded == before.decoded
    merkle.verify_state_proof(old.header.state_root, old.state_key, old.value, old.proof)
    assert client.state("token", CAROL).decoded == before.decoded + 7
    head = served.node.store.head()[0]
    for bad, code in ((head + 1, 404), (-1, 422)):
        status, _ = http_json(served.url, "GET", f"/v1/state/token/{CAROL.hex()}?height={bad}")
        assert status == code, (bad, status)


def test_query_json_and_raw(served: ServedNode, client: Client) -> None:
    status, doc = http_json(
        served.url,
        "POST",
        "/v1/query/token/balance_of",
        {"args": {"account": {"$bytes": BOB.address.hex()}}},
    )
    assert status == 200 and doc["result"] == client.query(
        "token", "balance_of", account=BOB.address
    )
    assert encoding.decode(bytes.fromhex(doc["raw"])) == doc["result"]
    status, _, body = http(
        served.url,
        "POST",
        "/v1/query/token/balance_of",
        encoding.encode({"account": CAROL}),
        "application/octet-stream",
    )
    assert status == 200 and json.loads(body)["result"] > 0


# --- node ----------------------------------------------------------------------------------------


def test_validators_status_genesis(served: ServedNode, client: Client) -> None:
    g = served.node.genesis
    vals = client.validators()
    assert [v["name"] for v in vals] == [v.name for v in g.validators]
    assert vals[0]["bls_public_key"] == g.validators[0].bls_public_key and vals[0]["index"] == 0
    st = client.status()
    head_height, head_hash = served.head()
    assert st["height"] == head_height and st["head_hash"] == head_hash.hex()
    assert st["chain_id"] == g.chain_id and st["genesis_hash"] == g.hash.hex()
    assert st["mempool"] == served.mempool_size() and st["name"] == "v0"
    got = client.genesis()
    assert got == g and got.hash == g.hash


def test_metrics_prometheus_text(served: ServedNode, client: Client) -> None:
    http(served.url, "GET", "/v1/blocks/999999")  # a counted rejection
    status, hdrs, body = http(served.url, "GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain")
    text = body.decode()
    assert "# TYPE accord_api_requests_total counter" in text
    samples = parse_text(text)
    assert samples['accord_api_rejected_total{code="not_found"}'] >= 1
    assert samples['accord_api_requests_total{route="/v1/status",status="200"}'] >= 1
    assert client.metrics().startswith("# HELP")


def test_openapi_document_validates(served: ServedNode, client: Client) -> None:
    from openapi_spec_validator import validate

    doc = client.openapi()
    validate(doc)  # raises on an invalid document
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for p in (
        "/v1/txs",
        "/v1/txs/{hash}",
        "/v1/blocks/{height}",
        "/v1/headers",
        "/v1/state/{contract}/{key}",
        "/v1/query/{contract}/{method}",
        "/v1/validators",
        "/v1/status",
        "/v1/genesis",
        "/v1/stream",
        "/metrics",
    ):
        assert p in paths
    schemas = doc["components"]["schemas"]
    # Generated from the pydantic models, so the served document matches the code.
    assert "TxStatusResponse" in schemas and "ErrorResponse" in schemas
    assert set(schemas["TxStatusResponse"]["properties"]["status"]["enum"]) == {
        "pending",
        "committed",
        "unknown",
    }
    validate(openapi())
    # The document lists exactly the routes the server serves.
    served_routes = {
        (r.method.lower(), r.resource.canonical)
        for r in served.server.app.router.routes()
        if r.resource is not None
    }
    documented = {(m, p) for p, ops in paths.items() for m in ops}
    assert served_routes == documented


# --- stream ----------------------------------------------------------------------------------


def test_stream_receives_blocks_and_events_committed_after_subscribing(served: ServedNode) -> None:
    async def scenario() -> list[object]:
        async with AsyncClient(served.url) as ac:
            height, items = await ac.stream_ready()
            assert height == served.head()[0]
            tx = transfer(ALICE, nonce(served, ALICE), CAROL, 7)
            await ac.submit(tx)
            await asyncio.get_running_loop().run_in_executor(None, served.commit)
            got: list[object] = []
            async for item in items:
                got.append(item)
                if isinstance(item, EventCommitted):
                    break
            return got

    got = asyncio.run(asyncio.wait_for(scenario(), 20))
    blk, ev = got[0], got[1]
    assert isinstance(blk, BlockCommitted) and isinstance(ev, EventCommitted)
    head_height, head_hash = served.head()
    assert blk.height == head_height and blk.hash == head_hash and blk.receipts_ok == [True]
    assert blk.certificate is not None
    verify_certificate(served, blk.header, blk.certificate)
    assert (
        ev.event.name == "Transfer"
        and ev.event.data["to"] == CAROL
        and ev.tx_hash == blk.tx_hashes[0]
    )


def test_stream_replays_from_height_then_follows(served: ServedNode) -> None:
    async def scenario() -> list[int]:
        async with AsyncClient(served.url) as ac:
            _, items = await ac.stream_ready(from_height=0, events=False)
            target = served.head()[0] + 1
            await asyncio.get_running_loop().run_in_executor(None, served.commit)
            heights = []
            async for item in items:
                assert isinstance(item, BlockCommitted)
                heights.append(item.height)
                if item.height == target:
                    return heights
        raise AssertionError("stream ended")

    heights = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert heights == list(range(heights[-1] + 1))  # every height once, in order, no gaps


def wait_until(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_stream_contract_filter_and_close_unsubscribes(served: ServedNode) -> None:
    # Streams of earlier tests were closed by their clients; the server unregisters them.
    assert wait_until(lambda: not served.node._subs)

    async def scenario() -> None:
        async with AsyncClient(served.url) as ac:
            _, items = await ac.stream_ready(blocks=False, contract="nothing_here")
            assert len(served.node._subs) == 1
            await asyncio.get_running_loop().run_in_executor(None, served.commit)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(items.__anext__(), 0.5)
            await items.aclose()

    asyncio.run(scenario())
    # The server notices the close and unregisters the subscription.
    assert wait_until(lambda: not served.node._subs)


def test_inclusion_proofs_for_every_index_of_an_odd_block(
    served: ServedNode, client: Client
) -> None:
    n = nonce(served, ALICE)
    txs = [
        transfer(ALICE, n + i, CAROL, 1) for i in range(7)
    ]  # 7 leaves: promoted nodes on two levels
    assert all(isinstance(r, bytes) for r in client.submit_many(txs))
    block = served.commit()
    receipts = served.node.store.get_receipts(block.height)
    leaves = [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(block.txs, receipts, strict=True)]
    for i, tx in enumerate(block.txs):
        st = client.tx(tx.hash)
        assert st.proof is not None and st.proof.index == i and st.proof.count == 7
        assert st.proof.siblings == merkle.merkle_proof(leaves, i)
        merkle.verify_merkle_proof(block.header.tx_root, st.proof.leaf, i, 7, st.proof.siblings)
        # A tampered sibling or index does not verify.
        if st.proof.siblings:
            bad = [bytes(32)] + st.proof.siblings[1:]
            with pytest.raises(ProofError):
                merkle.verify_merkle_proof(block.header.tx_root, st.proof.leaf, i, 7, bad)
        with pytest.raises(ProofError):
            merkle.verify_merkle_proof(
                block.header.tx_root, st.proof.leaf, (i + 1) % 7, 7, st.proof.siblings
            )
