"""API edges: one strict integer parser for every path and query parameter, and stream slots per client.

Before: ``/v1/blocks/²`` was a 500 (``str.isdigit`` accepts it, ``int`` does not), ``/v1/blocks/١``
and ``/v1/blocks/１`` returned block 1, and ``?from=1_0`` read as 10.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.errors import DecodeError
from accord.base.wire import parse_hex, parse_uint

from .support.api import ALICE, BOB, ServedNode, transfer
from .support.api import http as http_call

ODD = [
    "²",
    "١",
    "１",
    "1_0",
    "+1",
    "-0",
    " 1",
    "1 ",
    "0x1",
    "1e3",
    "",
    "٣٤",
    "99999999999999999999999",
]


@given(st.integers(0, 2**64 - 1))
def test_every_canonical_number_parses(n: int) -> None:
    assert parse_uint(str(n), "x") == n


@given(st.text(max_size=24))
def test_anything_else_is_a_decode_error_never_another_exception(text: str) -> None:
    ok = text.isascii() and text.isdigit() and 0 < len(text) <= 20 and int(text) < 2**64
    try:
        n = parse_uint(text, "x")
    except DecodeError:
        assert not ok
    else:
        assert ok and n == int(text)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    sn = ServedNode(Path(tmp_path_factory.mktemp("api-ints")))
    for nonce in range(2):
        sn.submit_direct(transfer(ALICE, nonce, BOB.address, 1))
        sn.commit()
    try:
        yield sn
    finally:
        sn.close()


@pytest.mark.parametrize("text", ODD)
def test_odd_heights_in_paths_are_400s(served: ServedNode, text: str) -> None:
    for path in (
        f"/v1/blocks/{urllib.parse.quote(text)}",
        f"/v1/headers/{urllib.parse.quote(text)}",
    ):
        status, headers, data = http_call(served.url, "GET", path)
        if text == "":
            assert status in (404, 405), (path, status)  # another route, or none
            continue
        assert status == 400, (path, status, data[:200])
        assert json.loads(data)["error"]["code"] == "decode_error"


@pytest.mark.parametrize("text", [t for t in ODD if t])
def test_odd_numbers_in_queries_are_400s(served: ServedNode, text: str) -> None:
    q = urllib.parse.urlencode({"from": text})
    status, _, data = http_call(served.url, "GET", f"/v1/headers?{q}")
    assert status in (400, 422), (text, status, data[:200])
    assert status == 400 or json.loads(data)["error"]["code"] == "invalid_request"
    status, _, data = http_call(served.url, "GET", "/v1/headers?from=1&limit=1")
    assert status == 200 and [h["header"]["height"] for h in json.loads(data)["headers"]] == [1]


def test_one_client_cannot_take_every_stream_slot(tmp_path: Path) -> None:
    """Before: one client could open all 256 stream slots and lock every other one out."""
    import asyncio

    import aiohttp

    from accord.node.api import ApiConfig

    sn = ServedNode(tmp_path / "streams", ApiConfig(max_streams_per_client=2))

    async def main() -> None:
        async with aiohttp.ClientSession() as s:
            a = await s.ws_connect(f"{sn.url}/v1/stream")
            b = await s.ws_connect(f"{sn.url}/v1/stream")
            async with s.get(
                f"{sn.url}/v1/stream",
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                },
            ) as r:
                assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limited"
            await a.close()
            for _ in range(100):  # the server sees the close, then the slot is free again
                c = None
                try:
                    c = await s.ws_connect(f"{sn.url}/v1/stream")
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.05)
            assert c is not None
            await c.close()
            await b.close()

    try:
        asyncio.run(main())
    finally:
        sn.close()


MALFORMED = [
    b"GARBAGE\r\n\r\n",  # not a request line
    b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n",  # no such version
    b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",  # a header without a colon
    b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",  # too long
    b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",  # a control byte in the target
]


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
def test_what_the_http_parser_refuses_is_a_json_error(served: ServedNode, raw: bytes) -> None:
    """Found by the operations review: aiohttp answered its own parse errors as text/plain,
    the one kind of error a JSON client could not read (this test fails on that code)."""
    host, port = urllib.parse.urlsplit(served.url).netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(raw)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *headers = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    assert 400 <= status < 500, status_line
    fields = {h.split(":", 1)[0].lower(): h.split(":", 1)[1].strip() for h in headers}
    assert fields["content-type"].startswith("application/json"), fields
    error = json.loads(body)["error"]
    assert error["code"] in ("bad_request", "too_large") and error["message"]
    assert b"Traceback" not in answer
    # and the node still answers the next client
    assert http_call(served.url, "GET", "/v1/status")[0] == 200


@given(st.text(alphabet="0123456789abcdefABCDEFxX g \t\n١", max_size=12))
def test_hex_parses_only_plain_hex_digits(text: str) -> None:
    """One text, one value: ``bytes.fromhex`` also took ``"ab cd"`` and ``"ab\\ncd"`` for a
    path's hash (found by the operations review)."""
    body = text[2:] if text[:2] in ("0x", "0X") else text
    plain = len(body) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in body)
    try:
        raw = parse_hex(text, "x")
    except DecodeError:
        assert not plain
    else:
        assert plain and raw.hex() == body.lower()


@pytest.mark.parametrize("path", ["/v1/accounts/ab%20cd", "/v1/txs/" + "ab" * 31 + "%20ab"])
def test_hex_with_spaces_in_a_path_is_a_400(served: ServedNode, path: str) -> None:
    status, body = http_call(served.url, "GET", path)[:2]
    assert status == 400, (status, body)
