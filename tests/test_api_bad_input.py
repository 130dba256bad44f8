"""Malformed and rejected API requests: the right 4xx JSON error, and nothing changes.

"Nothing changes" is checked as a fingerprint of the node before and after each request:
head height and hash, state root, and mempool size.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.errors import (
    DuplicateTx,
    MempoolFull,
    NonceError,
    NotFound,
    RateLimited,
    UnknownMethod,
)
from accord.base.metrics import parse_text
from accord.base.types import MAX_TX_BYTES, Tx
from accord.client import Client
from accord.node.api import ApiConfig, TokenBuckets

from .support.api import ALICE, BOB, ServedNode, transfer
from .support.api import http as http_call


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    sn = ServedNode(Path(tmp_path_factory.mktemp("api-bad")), ApiConfig(max_batch_txs=5))
    sn.submit_direct(transfer(ALICE, 0, BOB.address, 1))
    sn.commit()
    sn.submit_direct(transfer(ALICE, 1, BOB.address, 1))  # one pending transaction stays pending
    try:
        yield sn
    finally:
        sn.close()


def fingerprint(sn: ServedNode) -> tuple[Any, ...]:
    return (sn.head(), sn.node.store.state_root(), sn.mempool_size())


def expect_error(
    sn: ServedNode,
    method: str,
    path: str,
    body: bytes | None,
    ctype: str | None,
    status: int,
    code: str,
) -> dict[str, Any]:
    before = fingerprint(sn)
    got_status, headers, data = http_call(sn.url, method, path, body, ctype)
    assert headers.get("content-type", "").startswith("application/json"), (path, data[:200])
    doc = json.loads(data)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc
    assert (got_status, doc["error"]["code"]) == (status, code), (path, doc)
    assert doc["error"]["message"]
    assert fingerprint(sn) == before, f"{method} {path} changed the node"
    return doc


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


JSON = "application/json"
RAW = "application/octet-stream"


def good_tx_hex() -> str:
    return transfer(BOB, 50, ALICE.address, 1).encode().hex()


# --- POST /v1/txs ------------------------------------------------------------------------------

SUBMIT_CASES = [
    ("bad hex", j({"tx": "zz"}), JSON, 400, "decode_error"),
    ("odd hex", j({"tx": "abc"}), JSON, 400, "decode_error"),
    ("empty hex", j({"tx": ""}), JSON, 400, "decode_error"),
    ("not json", b"{", JSON, 400, "decode_error"),
    ("empty json body", b"", JSON, 400, "decode_error"),
    ("wrong field", j({"transaction": "00"}), JSON, 422, "invalid_request"),
    ("wrong type", j({"tx": 5}), JSON, 422, "invalid_request"),
    ("list body", j([1, 2]), JSON, 422, "invalid_request"),
    ("extra field", j({"tx": "00", "extra": 1}), JSON, 422, "invalid_request"),
    ("garbage bytes", b"\xc1", RAW, 400, "decode_error"),
    ("empty raw", b"", RAW, 400, "decode_error"),
    (
        "non-canonical int",
        msgpack.packb([1], use_bin_type=True)[:1] + b"\xcd\x00\x01",
        RAW,
        400,
        "non_canonical",
    ),
    ("trailing bytes", encoding.encode([1]) + b"\x00", RAW, 400, "trailing_bytes"),
    ("wrong shape", encoding.encode([1, 2, 3]), RAW, 400, "decode_error"),
    ("raw too large", b"\x00" * (2 * MAX_TX_BYTES + 2048), RAW, 413, "too_large"),
    ("json too large", j({"tx": "00" * (MAX_TX_BYTES + 1024)}), JSON, 413, "too_large"),
]


@pytest.mark.parametrize(
    ("name", "body", "ctype", "status", "code"), SUBMIT_CASES, ids=[c[0] for c in SUBMIT_CASES]
)
def test_submit_malformed(
    served: ServedNode, name: str, body: bytes, ctype: str, status: int, code: str
) -> None:
    expect_error(served, "POST", "/v1/txs", body, ctype, status, code)


def test_submit_decoded_but_too_large_tx(served: ServedNode) -> None:
    big = Tx.create(
        BOB,
        chain_id="accord-api-test",
        contract="token",
        method="transfer",
        args={"to": ALICE.address, "amount": 1, "memo": b"\x00" * MAX_TX_BYTES},
        nonce=1,
    )
    expect_error(served, "POST", "/v1/txs", big.encode(), RAW, 413, "too_large")


def test_submit_rejected_transactions(served: ServedNode) -> None:
    bob_next = served.call(lambda: served.node.mempool.next_nonce(BOB.address))
    good = transfer(BOB, bob_next, ALICE.address, 1)
    bad_sig = Tx(*good.to_obj()[:7], signature=bytes(64))
    expect_error(served, "POST", "/v1/txs", bad_sig.encode(), RAW, 422, "invalid_signature")
    forged = Tx(*good.to_obj()[:6], 999, good.signature)  # gas changed after signing
    expect_error(served, "POST", "/v1/txs", forged.encode(), RAW, 422, "invalid_signature")
    other_chain = transfer(BOB, bob_next, ALICE.address, 1, chain_id="another-chain")
    expect_error(served, "POST", "/v1/txs", other_chain.encode(), RAW, 422, "wrong_chain")
    replayed = transfer(ALICE, 0, BOB.address, 1)  # nonce 0 was committed in block 1
    expect_error(served, "POST", "/v1/txs", replayed.encode(), RAW, 422, "bad_nonce")
    skipped = transfer(BOB, bob_next + 5, ALICE.address, 1)
    expect_error(
        served, "POST", "/v1/txs", j({"tx": skipped.encode().hex()}), JSON, 422, "bad_nonce"
    )
    dup = transfer(ALICE, 1, BOB.address, 1)  # the same bytes as the pending nonce-1 transfer
    expect_error(served, "POST", "/v1/txs", dup.encode(), RAW, 409, "duplicate_tx")


def test_mempool_full_is_503(served: ServedNode) -> None:
    old = served.call(lambda: served.node.mempool.max_txs)
    size = served.mempool_size()
    served.call(lambda: setattr(served.node.mempool, "max_txs", size))
    try:
        bob_next = served.call(lambda: served.node.mempool.next_nonce(BOB.address))
        tx = transfer(BOB, bob_next, ALICE.address, 1)
        expect_error(served, "POST", "/v1/txs", tx.encode(), RAW, 503, "mempool_full")
        with Client(served.url) as c, pytest.raises(MempoolFull):
            c.submit(tx)
    finally:
        served.call(lambda: setattr(served.node.mempool, "max_txs", old))


# --- batch --------------------------------------------------------------------------------------

BATCH_CASES = [
    ("empty list", j({"txs": []}), JSON, 422, "invalid_request"),
    ("not a list", j({"txs": "00"}), JSON, 422, "invalid_request"),
    ("raw not a list", encoding.encode({"a": 1}), RAW, 400, "decode_error"),
    ("raw list of ints", encoding.encode([1, 2]), RAW, 400, "decode_error"),
    ("raw garbage", b"\xc1", RAW, 400, "decode_error"),
    ("too many", j({"txs": ["00"] * 6}), JSON, 413, "too_large"),
]


@pytest.mark.parametrize(
    ("name", "body", "ctype", "status", "code"), BATCH_CASES, ids=[c[0] for c in BATCH_CASES]
)
def test_batch_malformed(
    served: ServedNode, name: str, body: bytes, ctype: str, status: int, code: str
) -> None:
    expect_error(served, "POST", "/v1/txs/batch", body, ctype, status, code)


def test_batch_of_bad_items_changes_nothing(served: ServedNode) -> None:
    before = fingerprint(served)
    items = ["zz", encoding.encode([1]).hex(), transfer(ALICE, 0, BOB.address, 1).encode().hex()]
    status, _, data = http_call(served.url, "POST", "/v1/txs/batch", j({"txs": items}), JSON)
    doc = json.loads(data)
    assert status == 200 and doc["accepted"] == 0
    assert [r["error"]["code"] for r in doc["results"]] == [
        "decode_error",
        "decode_error",
        "bad_nonce",
    ]
    assert fingerprint(served) == before


# --- reads --------------------------------------------------------------------------------------

READ_CASES = [
    ("/v1/txs/zz", 400, "decode_error"),
    ("/v1/txs/abcd", 400, "decode_error"),
    ("/v1/txs/" + "00" * 32 + "?proof=maybe", 422, "invalid_request"),
    ("/v1/txs/" + "00" * 32 + "?bogus=1", 422, "invalid_request"),
    ("/v1/blocks/abc", 400, "decode_error"),
    ("/v1/blocks/-1", 400, "decode_error"),
    ("/v1/blocks/1.5", 400, "decode_error"),
    ("/v1/blocks/99999999999999999999999", 400, "decode_error"),
    ("/v1/blocks/999999", 404, "not_found"),
    ("/v1/blocks/1?format=xml", 422, "invalid_request"),
    ("/v1/blocks/1?bogus=1", 422, "invalid_request"),
    ("/v1/blocks/1?receipts=1&receipts=0", 422, "invalid_request"),
    ("/v1/blocks/hash/zz", 400, "decode_error"),
    ("/v1/blocks/hash/" + "ab" * 32, 404, "not_found"),
    ("/v1/headers/999999", 404, "not_found"),
    ("/v1/headers/x", 400, "decode_error"),
    ("/v1/headers/1?format=raw", 422, "invalid_request"),
    ("/v1/headers", 422, "invalid_request"),
    ("/v1/headers?from=-1", 422, "invalid_request"),
    ("/v1/headers?from=x", 422, "invalid_request"),
    ("/v1/headers?from=0&limit=0", 422, "invalid_request"),
    ("/v1/headers?from=0&limit=100000", 422, "invalid_request"),
    ("/v1/state/token/zz", 400, "decode_error"),
    ("/v1/state/nope/00", 404, "unknown_contract"),
    ("/v1/state/token/00?key_type=int", 422, "invalid_request"),
    ("/v1/state/token/" + "00" * 300, 400, "bad_state_key"),
    ("/v1/stream?from=-1", 422, "invalid_request"),
    ("/v1/stream?blocks=perhaps", 422, "invalid_request"),
    ("/v1/nothing", 404, "not_found"),
    ("/", 404, "not_found"),
]


@pytest.mark.parametrize(("path", "status", "code"), READ_CASES, ids=[c[0] for c in READ_CASES])
def test_read_malformed(served: ServedNode, path: str, status: int, code: str) -> None:
    expect_error(served, "GET", path, None, None, status, code)


def test_wrong_method(served: ServedNode) -> None:
    expect_error(served, "DELETE", "/v1/txs", None, None, 405, "method_not_allowed")
    expect_error(served, "GET", "/v1/txs", None, None, 405, "method_not_allowed")


# --- queries ------------------------------------------------------------------------------------

QUERY_CASES = [
    ("/v1/query/token/nope", j({"args": {}}), JSON, 404, "unknown_method"),
    ("/v1/query/nope/balance_of", j({"args": {}}), JSON, 404, "unknown_contract"),
    (
        "/v1/query/token/transfer",
        j({"args": {"to": {"$bytes": "00" * 20}, "amount": 1}}),
        JSON,
        404,
        "unknown_method",
    ),
    ("/v1/query/token/balance_of", j({"args": {"account": 5}}), JSON, 400, "bad_arguments"),
    ("/v1/query/token/balance_of", j({"args": {}}), JSON, 400, "bad_arguments"),
    (
        "/v1/query/token/balance_of",
        j({"args": {"account": {"$bytes": "00" * 20}, "x": 1}}),
        JSON,
        400,
        "bad_arguments",
    ),
    ("/v1/query/token/balance_of", j({"args": {"account": 1.5}}), JSON, 400, "decode_error"),
    (
        "/v1/query/token/balance_of",
        j({"args": {"account": {"$bytes": "zz"}}}),
        JSON,
        400,
        "decode_error",
    ),
    (
        "/v1/query/token/balance_of",
        j({"args": {"account": {"$weird": "00"}}}),
        JSON,
        400,
        "decode_error",
    ),
    ("/v1/query/token/balance_of", j({"args": 5}), JSON, 422, "invalid_request"),
    ("/v1/query/token/balance_of", j({"argz": {}}), JSON, 422, "invalid_request"),
    ("/v1/query/token/balance_of", b"not json", JSON, 400, "decode_error"),
    ("/v1/query/token/balance_of", encoding.encode([1]), RAW, 400, "decode_error"),
    ("/v1/query/token/balance_of", b"\xc1", RAW, 400, "decode_error"),
    ("/v1/query/token/balance_of", b"\x00" * (2 * MAX_TX_BYTES + 2048), RAW, 413, "too_large"),
]


@pytest.mark.parametrize(("path", "body", "ctype", "status", "code"), QUERY_CASES)
def test_query_malformed(
    served: ServedNode, path: str, body: bytes, ctype: str, status: int, code: str
) -> None:
    expect_error(served, "POST", path, body, ctype, status, code)


# --- property: arbitrary bodies ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=600))
def test_arbitrary_raw_bodies_never_change_anything(served: ServedNode, body: bytes) -> None:
    before = fingerprint(served)
    status, headers, data = http_call(served.url, "POST", "/v1/txs", body, RAW)
    assert 400 <= status < 500 and json.loads(data)["error"]["code"]
    assert fingerprint(served) == before


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(doc=json_values)
def test_arbitrary_json_never_changes_anything(served: ServedNode, doc: Any) -> None:
    before = fingerprint(served)
    for path in ("/v1/txs", "/v1/query/token/balance_of"):
        status, _, data = http_call(served.url, "POST", path, j(doc), JSON)
        assert 400 <= status < 500, (path, doc, data[:200])
        assert json.loads(data)["error"]["code"]
    assert fingerprint(served) == before


# --- client error mapping ---------------------------------------------------------------------


def test_client_raises_the_servers_error_class(served: ServedNode) -> None:
    with Client(served.url) as c:
        with pytest.raises(NonceError) as e1:
            c.submit(transfer(ALICE, 0, BOB.address, 1))
        assert e1.value.code == "bad_nonce"
        with pytest.raises(DuplicateTx):
            c.submit(transfer(ALICE, 1, BOB.address, 1))
        with pytest.raises(NotFound):
            c.block(999_999)
        with pytest.raises(UnknownMethod):
            c.query("token", "no_such_method")


# --- rate limit and stream cap ---------------------------------------------------------------


def test_rate_limit_per_client_returns_429(tmp_path: Path) -> None:
    sn = ServedNode(tmp_path, ApiConfig(rate_per_s=2.0, burst=3.0, max_streams=0))
    try:
        statuses = [http_call(sn.url, "GET", "/v1/status")[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        doc = expect_error(sn, "GET", "/v1/status", None, None, 429, "rate_limited")
        assert "requests/s" in doc["error"]["message"]
        with Client(sn.url) as c, pytest.raises(RateLimited):
            c.status()
        samples = parse_text(sn.node.metrics.render())
        assert samples["accord_api_rate_limited_total"] >= 2
        time.sleep(1.1)  # the bucket refills at 2/s
        assert http_call(sn.url, "GET", "/v1/status")[0] == 200
        time.sleep(0.6)
        # With no stream slots, the WebSocket upgrade is refused with a JSON 503.
        expect_error(sn, "GET", "/v1/stream", None, None, 503, "unavailable")
    finally:
        sn.close()


def test_token_buckets_refill_and_bounded_table() -> None:
    now = [0.0]
    tb = TokenBuckets(rate=10.0, burst=5.0, max_keys=3, clock=lambda: now[0])
    assert all(tb.allow("a") for _ in range(5))
    assert not tb.allow("a")
    now[0] += 0.1  # one token back
    assert tb.allow("a") and not tb.allow("a")
    assert tb.allow("b")  # other clients are independent
    for k in ("c", "d", "e"):
        tb.allow(k)
    assert len(tb) == 3  # the least recently seen clients were forgotten
    now[0] += 100
    assert tb.allow("a")  # refilled, capped at burst
    assert sum(tb.allow("a") for _ in range(10)) == 4
    assert TokenBuckets(0, 0, 1).allow("x")  # rate <= 0 disables the limit


def test_body_limits_declared_and_chunked(tmp_path: Path) -> None:
    sn = ServedNode(
        tmp_path,
        ApiConfig(max_body_bytes=1024, rate_exempt=("127.0.0.1",), rate_per_s=0.001, burst=1),
    )
    try:
        big = j({"txs": ["00" * 600]})
        expect_error(sn, "POST", "/v1/txs/batch", big, JSON, 413, "too_large")
        # Without a Content-Length (chunked), the limit still holds while reading.
        u = urllib.parse.urlsplit(sn.url)
        before = fingerprint(sn)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
        try:
            conn.request(
                "POST",
                "/v1/txs/batch",
                body=iter([big[:700], big[700:]]),
                headers={"Content-Type": JSON},
                encode_chunked=True,
            )
            resp = conn.getresponse()
            doc = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 413 and doc["error"]["code"] == "too_large"
        assert fingerprint(sn) == before
        # 127.0.0.1 is exempt from the (otherwise tiny) rate limit.
        assert all(http_call(sn.url, "GET", "/v1/status")[0] == 200 for _ in range(5))
    finally:
        sn.close()


def test_stream_client_that_stops_reading_is_dropped(tmp_path: Path) -> None:
    """Back-pressure: a stream whose client reads nothing holds no subscription for long."""
    import base64
    import os
    import socket

    sn = ServedNode(tmp_path, ApiConfig(stream_send_timeout_s=0.3))
    try:
        # Small fixed send buffers (inherited by accepted sockets) so that a few hundred kB
        # of stream messages fill them; the OS would otherwise auto-tune them to megabytes.
        assert sn.server._listener is not None
        for lsock in sn.server._listener.sockets:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with Client(sn.url) as c:
            txs = [transfer(ALICE, i, BOB.address, 1) for i in range(1500)]
            assert all(isinstance(r, bytes) for r in c.submit_many(txs))
        sn.commit()
        host, port = urllib.parse.urlsplit(sn.url).hostname, urllib.parse.urlsplit(sn.url).port
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host or "127.0.0.1", port or 80))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            f"GET /v1/stream?from=0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        # ...and now never read again.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            samples = parse_text(sn.node.metrics.render())
            if samples.get("accord_api_stream_lagged_total", 0) >= 1 and not sn.node._subs:
                break
            time.sleep(0.05)
        samples = parse_text(sn.node.metrics.render())
        assert samples["accord_api_stream_lagged_total"] == 1
        assert samples["accord_api_streams"] == 0 and sn.node._subs == []
        assert http_call(sn.url, "GET", "/v1/status")[0] == 200  # the node keeps serving
        s.close()
    finally:
        sn.close()
