"""Encrypted validator links: what a wire tap, a man in the middle and an old dialer get.

Before: links were plaintext WebSockets (a capture showed every transaction), and a relay in
the middle could read everything while the two validators authenticated each other through it.
Now links are TLS 1.3 and both handshake signatures cover the listener's certificate.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from accord.net import Kind, NetConfig, Transport
from accord.net import tls as nettls

from .support.genesis import make_genesis
from .support.mesh import Inbox, run, secret, stop_all, until
from .support.mesh import start_tls as start

pytestmark = pytest.mark.timeout(120)


class Relay:
    """A TCP relay that records every byte it forwards (a passive tap on the link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.captured = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(
        self, ssl_in: ssl.SSLContext | None = None, ssl_out: ssl.SSLContext | None = None
    ) -> None:
        self.ssl_out = ssl_out
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_in)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                self.captured += data
                w.write(data)
                await w.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port, ssl=self.ssl_out)
        except OSError:
            w.close()
            return
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("encrypted", [True, False])
def test_a_passive_capture_of_a_link_shows_no_transaction_bytes(
    tmp_path: Path, encrypted: bool
) -> None:
    """The plaintext run is the control: the same tap does see the transactions there."""
    g = make_genesis(4)

    async def main() -> None:
        inboxes = {0: Inbox(), 1: Inbox()}
        t0 = await start(g, 0, tmp_path if encrypted else None, inboxes[0])
        t1 = await start(g, 1, tmp_path if encrypted else None, inboxes[1])
        assert t1.bound_port and t0.bound_port
        tap = Relay(t1.bound_port)
        await tap.start()
        t0.set_address(1, "127.0.0.1", tap.port)  # 0 dials 1 through the tap
        try:
            await t0.wait_connected(1)
            await t1.wait_connected(1)
            assert t0.encrypted is encrypted
            txs0 = [b"TX-FROM-0-" + os.urandom(40) for _ in range(50)]
            txs1 = [b"TX-FROM-1-" + os.urandom(40) for _ in range(50)]
            for tx in txs0:
                t0.gossip_tx(tx)
            for tx in txs1:
                t1.gossip_tx(tx)
            t0.flush_txs()
            t1.flush_txs()
            big = os.urandom(2 * 1024 * 1024)  # past the handshake limit, both directions
            t0.send(1, Kind.CONSENSUS, big)
            t1.send(0, Kind.CONSENSUS, big[::-1])
            await until(
                lambda: [tx for _, b in inboxes[1].of(Kind.TX_BATCH) for tx in b] == txs0,
                20,
                "0 -> 1",
            )
            await until(
                lambda: [tx for _, b in inboxes[0].of(Kind.TX_BATCH) for tx in b] == txs1,
                20,
                "1 -> 0",
            )
            await until(lambda: inboxes[1].of(Kind.CONSENSUS) == [(0, big)], 20, "big 0 -> 1")
            await until(lambda: inboxes[0].of(Kind.CONSENSUS) == [(1, big[::-1])], 20, "big 1 -> 0")
            captured = bytes(tap.captured)
            assert len(captured) > 4 * 1024 * 1024  # the tap saw the traffic
            seen = [tx for tx in txs0 + txs1 if tx in captured]
            if encrypted:
                assert captured[:1] == b"\x16"  # a TLS ClientHello, then records
                assert seen == [] and b"TX-FROM-" not in captured and big[:64] not in captured
            else:  # the acceptor's frames are in the clear (the dialer's are only masked by a key
                # that travels with them: a tap unmasks them as easily)
                assert all(tx in captured for tx in txs1)
        finally:
            await tap.stop()
            await stop_all([t0, t1])

    run(main())


def test_a_man_in_the_middle_with_its_own_certificate_is_refused(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A relay that terminates TLS on both sides (its own certificate toward the dialer) and
    forwards the decrypted WebSocket bytes. Without the channel binding the two validators
    would authenticate each other through it and it would read everything: the second half
    shows exactly that when the binding is switched off."""
    g = make_genesis(4)
    mitm_cert, mitm_key = tmp_path / "mitm.crt", tmp_path / "mitm.key"
    nettls.make_self_signed(mitm_cert, mitm_key, name="v1")  # it may claim any name

    async def attempt() -> tuple[Transport, Transport, Relay]:
        t0 = await start(g, 0, tmp_path, Inbox(), backoff_max=0.2)
        t1 = await start(g, 1, tmp_path, Inbox())
        assert t1.bound_port
        mitm = Relay(t1.bound_port)
        await mitm.start(
            ssl_in=nettls.server_context(mitm_cert, mitm_key), ssl_out=nettls.link_client_context()
        )
        t0.set_address(1, "127.0.0.1", mitm.port)
        return t0, t1, mitm

    async def main() -> None:
        t0, t1, mitm = await attempt()
        try:
            await until(
                lambda: t0.m_hs_fail.get(reason="bad_signature") >= 3, 20, "refusals at the dialer"
            )
            assert t0.peers() == [] and t1.peers() == []
            assert t0.m_hs_ok.total() == 0 and t1.m_hs_ok.total() == 0
            # it really sat inside the TLS sessions: it read the WebSocket upgrade in the clear
            assert b"GET /accord/p2p HTTP/1.1" in bytes(mitm.captured)
        finally:
            await mitm.stop()
            await stop_all([t0, t1])

        # the same relay succeeds once both sides sign a binding that is not the certificate's
        monkeypatch.setattr(nettls, "channel_binding", lambda der: b"\x00" * 32)
        t0, t1, mitm = await attempt()
        try:
            await t0.wait_connected(1)
            t1.send(0, Kind.CONSENSUS, b"SECRET-VOTE")
            await until(
                lambda: b"SECRET-VOTE" in bytes(mitm.captured), 10, "the relay reading traffic"
            )
        finally:
            await mitm.stop()
            await stop_all([t0, t1])

    run(main())


def test_an_old_plaintext_dialer_is_refused_with_a_clear_counted_error(tmp_path: Path) -> None:
    g = make_genesis(4)

    async def main() -> None:
        old = await start(g, 0, None, backoff_max=0.2)  # no TLS: what an old version dials
        t1 = await start(g, 1, tmp_path)
        plain2 = await start(g, 2, None)  # a plaintext listener, dialed by TLS validator 1
        ts = [old, t1, plain2]
        assert t1.bound_port and plain2.bound_port
        old.set_address(1, "127.0.0.1", t1.bound_port)
        t1.set_address(2, "127.0.0.1", plain2.bound_port)
        try:
            await until(
                lambda: t1.m_hs_fail.get(reason="plaintext") >= 2,
                20,
                "refusals counted by the listener",
            )
            await until(
                lambda: old.m_dial_fail.get(reason="tls_required") >= 2, 20, "the dialer told why"
            )
            await until(
                lambda: plain2.m_hs_fail.get(reason="tls_not_enabled") >= 1,
                20,
                "TLS refused by plaintext",
            )
            await until(lambda: t1.m_dial_fail.get(reason="tls") >= 1, 20, "TLS dialer told why")
            assert old.peers() == [] and t1.peers() == [] and plain2.peers() == []
            # what any plaintext client sees: a 426 that says what to do
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{t1.bound_port}/accord/p2p") as r:
                    assert r.status == 426
                    assert "requires TLS" in await r.text()
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await s.ws_connect(f"http://127.0.0.1:{t1.bound_port}/accord/p2p")
                assert e.value.status == 426
        finally:
            await stop_all(ts)

    run(main())


def test_tls_needs_both_files_and_says_so(tmp_path: Path) -> None:
    g = make_genesis(4)
    with pytest.raises(Exception, match="both a certificate and its key"):
        Transport(g, 0, secret(0), config=NetConfig(tls_cert=str(tmp_path / "x.crt")))
    with pytest.raises(Exception, match="cannot load the TLS certificate"):
        (tmp_path / "x.crt").write_text("not a certificate")
        Transport(
            g,
            0,
            secret(0),
            config=NetConfig(tls_cert=str(tmp_path / "x.crt"), tls_key=str(tmp_path / "k")),
        )


def test_the_acceptor_refuses_an_auth_signed_for_another_channel(tmp_path: Path) -> None:
    """The listener checks the binding too: a dialer's AUTH made for another TLS session (a
    relay's certificate) or for a plaintext link is refused, even from the right key."""
    from .support import rawpeer

    g = make_genesis(4)

    async def main() -> None:
        t1 = await start(g, 1, tmp_path)
        url = f"https://127.0.0.1:{t1.bound_port}/accord/p2p"
        try:
            async with aiohttp.ClientSession() as s:
                for wrong in (lambda: nettls.channel_binding(b"another certificate"), lambda: None):
                    raw = rawpeer.RawPeer(s, url, g.hash, 1, g.validator_keys())
                    raw.binding = wrong  # type: ignore[method-assign]
                    assert (await raw.handshake(index=0, sk=secret(0)))["ready"] is False
                    await raw.close()
                assert t1.m_hs_fail.get(reason="bad_signature") == 2
                good = rawpeer.RawPeer(s, url, g.hash, 1, g.validator_keys())
                assert (await good.handshake(index=0, sk=secret(0)))["ready"] is True
                await good.close()
        finally:
            await t1.stop()

    run(main())


def test_garbage_tls_and_silent_connections_are_counted_and_closed(tmp_path: Path) -> None:
    """Before anything is authenticated, a connection costs one bounded slot: a broken TLS
    ClientHello is counted (``tls_handshake``), a connection that never sends a byte is closed
    at the handshake timeout (``timeout``), and the listener keeps serving real validators."""
    g = make_genesis(4)

    async def main() -> None:
        t1 = await start(g, 1, tmp_path, handshake_timeout=1.0)
        t0 = await start(g, 0, tmp_path)
        assert t1.bound_port
        try:
            r, w = await asyncio.open_connection("127.0.0.1", t1.bound_port)
            w.write(b"\x16\x03\x01\x00\x08not-a-hello" + os.urandom(64))
            await w.drain()
            assert await asyncio.wait_for(r.read(), 10) is not None  # closed by the listener
            w.close()
            silent_r, silent_w = await asyncio.open_connection("127.0.0.1", t1.bound_port)
            assert await asyncio.wait_for(silent_r.read(), 10) == b""  # closed at the timeout
            silent_w.close()
            await until(
                lambda: t1.m_hs_fail.get(reason="tls_handshake") == 1, 10, "the bad hello counted"
            )
            await until(
                lambda: t1.m_hs_fail.get(reason="timeout") == 1, 10, "the silent one counted"
            )
            t0.set_address(1, "127.0.0.1", t1.bound_port)
            await t0.wait_connected(1)
        finally:
            await stop_all([t0, t1])

    run(main())
