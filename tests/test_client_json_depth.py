"""The clients' JSON depth check runs before the parser: with a raised recursion limit the C
parser recursed through a 100,000-level answer until the thread's C stack overflowed (the whole
test run died with a segmentation fault). The pre-scan is checked against the real depth."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.errors import DecodeError, TooLarge
from accord.client import AsyncClient, _json_nesting, loads_json

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"a', max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


@given(values)
def test_the_pre_scan_measures_the_real_nesting(v: Any) -> None:
    assert _json_nesting(json.dumps(v)) == _depth(v)


def test_a_deep_answer_is_refused_even_with_a_raised_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        for text in ("[" * 200_000 + "]" * 200_000, '{"a":' * 200_000 + "1" + "}" * 200_000):
            with pytest.raises(DecodeError):
                loads_json(text)
    finally:
        sys.setrecursionlimit(old)
    assert loads_json('{"x": "[[[[", "y": [1, [2]]}') == {"x": "[[[[", "y": [1, [2]]}


async def _hostile_server(answer: str) -> tuple[asyncio.AbstractServer, str]:
    """A 'node' that answers every request with ``answer``: ``endless`` streams chunks for
    ever without a length; ``deep`` is a 200,000-level JSON body; ``lying`` announces 1 TB."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer == "lying":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n[")
            elif answer == "deep":
                body = b"[" * 200_000 + b"]" * 200_000
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                for _ in range(10_000):  # 640 MB if nobody stops reading
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("answer", ["endless", "deep", "lying"])
def test_the_async_client_bounds_what_a_hostile_node_sends(answer: str) -> None:
    """The sync client bounded answers; the async one read whatever came (``resp.read()``) and
    parsed it with the stdlib alone: an endless answer grew its memory without bound."""

    async def run() -> None:
        server, url = await _hostile_server(answer)
        try:
            async with AsyncClient(url, max_response_bytes=1 << 20) as c:
                with pytest.raises((TooLarge, DecodeError)):
                    await c.status()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(run(), 60))
