"""A hand-driven validator dialer for tests: it speaks the handshake step by step, so a test
can forge any part of it (key, signature, genesis, nonce), then send raw frames. An https URL
dials over TLS and signs the channel binding, as a validator of an encrypted network does."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from accord.base import encoding
from accord.base.crypto import bls
from accord.net import handshake as hs
from accord.net import tls as nettls
from accord.net.frames import Kind, encode_frame


class RawPeer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        genesis_hash: bytes,
        target: int,
        keys: list[bytes] | None = None,
    ) -> None:
        """``keys``: the validators' BLS keys, by index (the handshake binds keys: validator
        ``index`` signs as ``keys[index]`` to ``keys[target]``)."""
        self.session = session
        self.url = url
        self.genesis_hash = genesis_hash
        self.target = target
        self.keys = keys
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        tls = nettls.link_client_context() if self.url.startswith("https:") else True
        self.ws = await self.session.ws_connect(self.url, max_msg_size=64 * 1024 * 1024, ssl=tls)
        return self.ws

    def binding(self) -> bytes | None:
        """The channel binding of this connection (None on a plaintext link)."""
        assert self.ws is not None
        ssl_object = self.ws.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        return nettls.channel_binding(ssl_object.getpeercert(binary_form=True))

    async def send(self, kind: Kind, payload: Any) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(encode_frame(kind, payload))

    async def recv(self) -> tuple[Kind, Any] | None:
        """The next frame, or None once the acceptor closed the connection."""
        assert self.ws is not None
        msg = await asyncio.wait_for(self.ws.receive(), 10)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return None
        value = encoding.decode(msg.data)
        return Kind(value[0]), value[1]

    async def handshake(
        self,
        *,
        index: int,
        sk: bytes,
        genesis_hash: bytes | None = None,
        nonce: bytes | None = None,
        key: bytes | None = None,
        auth_sig: bytes | None = None,
    ) -> dict[str, Any]:
        """HELLO / CHALLENGE / AUTH as validator ``index``; returns what happened (for replays)."""
        gh = genesis_hash if genesis_hash is not None else self.genesis_hash
        n_d = nonce if nonce is not None else hs.new_nonce()
        hello = {
            "version": hs.VERSION,
            "genesis": gh,
            "key": key or bls.public_key(sk),
            "to": self._key(self.target),
            "nonce": n_d,
        }
        await self.connect()
        await self.send(Kind.HELLO, hello)
        out: dict[str, Any] = {"hello": hello, "ready": False}
        got = await self.recv()
        if got is None:
            return out
        assert got[0] is Kind.CHALLENGE
        sig = (
            auth_sig
            if auth_sig is not None
            else hs.sign(
                sk,
                gh,
                n_d,
                got[1]["nonce"],
                self._key(index),
                self._key(self.target),
                self.binding(),
            )
        )
        out["auth"] = sig
        await self.send(Kind.AUTH, {"sig": sig})
        got = await self.recv()
        out["ready"] = got is not None and got[0] is Kind.READY
        return out

    def _key(self, index: int) -> bytes:
        if self.keys is None or not 0 <= index < len(self.keys):
            return bytes(48)  # no such validator: a key nobody holds
        return self.keys[index]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def completes_handshake(transport: Any, sk: bytes) -> bool:
    """Whether a dialer holding BLS secret ``sk`` gets READY from ``transport`` (a running
    :class:`accord.net.transport.Transport`): the test of which keys a node accepts."""
    scheme = "https" if transport.encrypted else "http"
    url = f"{scheme}://127.0.0.1:{transport.bound_port}/accord/p2p"
    async with aiohttp.ClientSession() as session:
        peer = RawPeer(session, url, transport.genesis_hash, 1, [bls.public_key(sk), transport.me])
        try:
            out = await peer.handshake(index=0, sk=sk)
        finally:
            await peer.close()
        return bool(out["ready"])
