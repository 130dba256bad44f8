"""Before authentication a peer can make a validator buffer one handshake frame, no more.

Before: an unauthenticated connection could declare a 33 MB frame and dribble it (eight in
parallel took a validator from 72 to 865 MB, never released); the frame was refused only once
all of it had arrived, or when the handshake timed out. Now accepted connections open at the
handshake's frame size and get the full size only once the peer has authenticated.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from pathlib import Path

import aiohttp
import pytest

from accord.net import Kind
from accord.net.frames import HANDSHAKE_MAX

from .support.genesis import make_genesis
from .support.mesh import Inbox, RawPeer, run, secret, start_mesh, stop_all, until


async def _raw_upgrade(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /accord/p2p HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    return reader, writer


def test_an_unauthenticated_peer_cannot_announce_a_big_frame() -> None:
    g = make_genesis(4)

    async def main() -> None:
        ts = await start_mesh(g, [1], {1: Inbox()}, handshake_timeout=30.0)
        t1 = ts[0]
        try:
            assert t1.bound_port
            reader, writer = await _raw_upgrade(t1.bound_port)
            # a binary frame announcing 30 MB, masked as clients must, and only its first bytes
            writer.write(
                b"\x82\xff" + struct.pack(">Q", 30 * 1024 * 1024) + os.urandom(4) + b"\x00" * 1024
            )
            await writer.drain()
            # refused at the header: the server closes long before the handshake timeout (30 s)
            # and before we sent the rest (before: it waited for all 30 MB)
            closed = await asyncio.wait_for(reader.read(), 20.0)
            assert closed[:1] == b"\x88"  # a close frame, then EOF
            writer.close()
            await until(
                lambda: t1.m_hs_fail.get(reason="oversized") == 1, 10.0, "the refusal to be counted"
            )
            assert t1.m_hs_fail.get(reason="timeout") == 0
            # a handshake-sized frame is still read and judged (a garbage HELLO: malformed)
            async with aiohttp.ClientSession() as s:
                raw = RawPeer(s, t1)
                ws = await raw.connect()
                await ws.send_bytes(b"\xc1" * HANDSHAKE_MAX)
                assert await raw.recv() is None
            assert t1.m_hs_fail.get(reason="malformed") == 1
        finally:
            await stop_all(ts)

    run(main())


def test_authenticated_peers_still_exchange_frames_of_megabytes() -> None:
    g = make_genesis(4)

    async def main() -> None:
        inboxes = {1: Inbox(), 2: Inbox()}
        ts = await start_mesh(g, [1, 2], inboxes)
        try:
            await ts[0].wait_connected(1)
            await ts[1].wait_connected(1)
            # distinct payloads: a transport drops a frame identical to one it sent (gossip echo)
            big1, big2 = os.urandom(3 * 1024 * 1024), os.urandom(3 * 1024 * 1024)
            ts[0].send(2, Kind.CONSENSUS, big1)  # to the acceptor (2 accepted 1's dial)
            ts[1].send(1, Kind.CONSENSUS, big2)  # from it
            await until(lambda: inboxes[2].of(Kind.CONSENSUS) == [(1, big1)], 30.0, "1 -> 2")
            await until(lambda: inboxes[1].of(Kind.CONSENSUS) == [(2, big2)], 30.0, "2 -> 1")
        finally:
            await stop_all(ts)

    run(main())


def test_a_deeply_nested_frame_is_counted_garbage_not_a_recursion_error() -> None:
    """Before: a 1 KB frame nested 1,000 levels raised an uncaught RecursionError in the
    handshake (not counted), and from an authenticated peer only closed the connection."""
    g = make_genesis(4)
    deep = b"\x92\x01" + b"\x91" * 1000 + b"\xc0"  # [1, [[[...]]]]: 1,000 levels in ~1 KB

    async def main() -> None:
        ts = await start_mesh(g, [1], {1: Inbox()})
        t1 = ts[0]
        try:
            async with aiohttp.ClientSession() as s:
                raw = RawPeer(s, t1)
                ws = await raw.connect()
                await ws.send_bytes(deep)
                assert await raw.recv() is None
                assert t1.m_hs_fail.get(reason="malformed") == 1
                peer = RawPeer(s, t1)
                assert (await peer.handshake(index=0))["ready"] is True
                assert peer.ws is not None
                for _ in range(3):
                    await peer.ws.send_bytes(deep)
                await until(
                    lambda: t1.m_dropped.get(reason="garbage") == 3, 10.0, "three garbage frames"
                )
                assert 0 in t1.peers()  # counted, below the ban threshold: still connected
        finally:
            await stop_all(ts)

    run(main())


class _HostileListener:
    """Answers a validator's dial with a WebSocket upgrade, then announces a 30 MB frame and
    dribbles its first kilobyte (what a hostile or hijacked address in genesis could do)."""

    def __init__(self) -> None:
        self.dials = 0
        self.closed_by_dialer = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import hashlib

        self.dials += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                ln.split(b":", 1)[1].strip()
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(
                hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            await reader.read(1)  # the dialer's HELLO has started to arrive
            writer.write(b"\x82\x7f" + struct.pack(">Q", 30 * 1024 * 1024) + b"\x00" * 1024)
            await writer.drain()
            while await reader.read(65536):
                pass
            self.closed_by_dialer += 1
        except (OSError, asyncio.IncompleteReadError):
            self.closed_by_dialer += 1
        finally:
            writer.close()


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_dialer_refuses_a_big_frame_from_a_listener_that_has_proven_nothing(
    tmp_path: Path, encrypted: bool
) -> None:
    """Before: only the accepting side capped pre-authentication frames; a dialer opened at
    the full limit (33 MB) and buffered the hostile listener's frame until the handshake timed
    out (30 s here), so this test timed out waiting for the refusal."""
    from accord.net import NetConfig, Transport
    from accord.net import tls as nettls

    g = make_genesis(4)

    async def main() -> None:
        hostile = _HostileListener()
        ssl_ctx = None
        cfg: dict[str, str] = {}
        if encrypted:
            nettls.make_self_signed(tmp_path / "h.crt", tmp_path / "h.key", name="v1")
            nettls.make_self_signed(tmp_path / "v0.crt", tmp_path / "v0.key", name="v0")
            ssl_ctx = nettls.server_context(tmp_path / "h.crt", tmp_path / "h.key")
            cfg = {"tls_cert": str(tmp_path / "v0.crt"), "tls_key": str(tmp_path / "v0.key")}
        server = await asyncio.start_server(hostile.handle, "127.0.0.1", 0, ssl=ssl_ctx)
        port = server.sockets[0].getsockname()[1]
        t0 = Transport(
            g,
            0,
            secret(0),
            host="127.0.0.1",
            port=0,
            config=NetConfig(handshake_timeout=30.0, backoff_max=0.2, **cfg),
        )  # type: ignore[arg-type]
        await t0.start()
        t0.set_address(1, "127.0.0.1", port)
        try:
            await until(
                lambda: t0.m_hs_fail.get(reason="oversized") >= 2,
                10.0,
                "the dialer to refuse the frame",
            )
            await until(lambda: hostile.closed_by_dialer >= 2, 10.0, "the dialer to close")
            assert t0.m_hs_fail.get(reason="timeout") == 0
            assert t0.peers() == []
        finally:
            await t0.stop()
            server.close()

    run(main())
