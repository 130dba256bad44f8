"""Slow and numerous HTTP clients cannot hold the client API's connections for ever.

Before: a client sending one header byte every 10 s kept its connection indefinitely (20,000
of them exhausted the descriptors), and nothing capped connections per client or in total.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.node.api import ApiConfig

from .support.api import ServedNode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    cfg = ApiConfig(
        request_head_timeout_s=0.5,
        request_body_timeout_s=0.5,
        max_connections_per_client=4,
        max_connections=6,
    )
    sn = ServedNode(Path(tmp_path_factory.mktemp("api-conns")), cfg)
    try:
        yield sn
    finally:
        sn.close()


def _conn(sn: ServedNode, src: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", sn.server.port), timeout=20, source_address=(src, 0))
    return s


def _closed(s: socket.socket) -> bool:
    try:
        while True:
            d = s.recv(4096)
            if not d:
                return True
    except (ConnectionResetError, TimeoutError):
        return isinstance(
            s, socket.socket
        )  # reset is closed too; timeout is reported by the caller


def test_a_dribbled_header_is_cut_off(served: ServedNode) -> None:
    """Fails on the old code: the connection stays open (the recv times out after 20 s)."""
    s = _conn(served)
    s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + 20
    s.settimeout(0.2)
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            if s.recv(100) == b"":
                closed = True
        except TimeoutError:
            s.sendall(b"X")  # keep dribbling
        except (ConnectionResetError, BrokenPipeError):
            closed = True
    s.close()
    assert closed
    assert served.server.api.m_conn_refused.get(reason="head_timeout") >= 1


def test_a_dribbled_body_gets_a_json_408(served: ServedNode) -> None:
    s = _conn(served)
    s.sendall(
        b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:80]
    assert b'"error"' in data and b"application/json" in data


def test_connections_are_capped_per_client_and_in_total(tmp_path: Path) -> None:
    """Fails on the old code (no cap: every connection stays open)."""
    cfg = ApiConfig(request_head_timeout_s=60, max_connections_per_client=4, max_connections=6)
    served = ServedNode(tmp_path, cfg)
    api = served.server.api
    held = [_conn(served) for _ in range(4)]
    try:
        extra = _conn(served)
        extra.settimeout(10)
        assert _closed(extra)  # closed at once, before any request
        assert api.m_conn_refused.get(reason="busy_ip") >= 1
        held += [_conn(served, "127.0.0.2") for _ in range(2)]
        other = _conn(served, "127.0.0.3")
        other.settimeout(10)
        assert _closed(other)
        assert api.m_conn_refused.get(reason="busy") >= 1
    finally:
        for s in held:
            s.close()
        served.close()
