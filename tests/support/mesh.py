"""A mesh of validator transports in one process, with raw peers that speak the wire by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from accord.base.crypto import bls
from accord.base.genesis import Genesis
from accord.net import Kind, NetConfig, Transport
from accord.net import tls as nettls

from . import rawpeer


def run(coro: Coroutine[Any, Any, Any], timeout: float = 90) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def secret(i: int) -> bytes:
    return bls.demo_secret(f"v{i}")


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Inbox:
    """Collects what a transport delivers; optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.items: list[tuple[int, Kind, Any]] = []
        self.delay = delay

    async def __call__(self, frm: int, kind: Kind, payload: Any) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.items.append((frm, kind, payload))

    def of(self, kind: Kind) -> list[tuple[int, Any]]:
        return [(f, p) for f, k, p in self.items if k is kind]


async def start_mesh(
    g: Genesis, indexes: list[int], inboxes: dict[int, Inbox] | None = None, **cfg: Any
) -> list[Transport]:
    ts = []
    for i in indexes:
        inbox = inboxes.get(i) if inboxes else None
        # Every validator configured at 127.0.0.1 (addresses are node configuration, not
        # genesis), its port filled in below once it listens (0: not dialled).
        t = Transport(
            g,
            i,
            secret(i),
            host="127.0.0.1",
            port=0,
            addresses={j: ("127.0.0.1", 0) for j in range(g.n)},
            config=NetConfig(**cfg),
            on_message=inbox,
        )
        await t.start()
        ts.append(t)
    for t in ts:
        for u in ts:
            if u is not t:
                assert u.bound_port
                t.set_address(u.index, "127.0.0.1", u.bound_port)
    return ts


async def stop_all(ts: list[Transport]) -> None:
    await asyncio.gather(*(t.stop() for t in ts))


def url(t: Transport) -> str:
    return f"http://127.0.0.1:{t.bound_port}/accord/p2p"


class RawPeer(rawpeer.RawPeer):
    """The shared raw dialer aimed at a transport; the key defaults to validator ``index``'s."""

    def __init__(self, session: aiohttp.ClientSession, target: Transport) -> None:
        super().__init__(
            session, url(target), target.genesis_hash, target.index, target.genesis.validator_keys()
        )

    async def handshake(self, *, index: int, sk: bytes | None = None, **kw: Any) -> dict[str, Any]:
        return await super().handshake(
            index=index, sk=sk if sk is not None else secret(index), **kw
        )


def tls_config(tmp: Path, i: int, **cfg: Any) -> NetConfig:
    cert, key = tmp / f"v{i}.crt", tmp / f"v{i}.key"
    if not cert.exists():
        nettls.make_self_signed(cert, key, name=f"v{i}")
    return NetConfig(tls_cert=str(cert), tls_key=str(key), **cfg)


async def start_tls(
    g: Genesis, i: int, tmp: Path | None, inbox: Inbox | None = None, **cfg: Any
) -> Transport:
    """Validator ``i`` of ``g`` listening on an ephemeral port, over TLS when ``tmp`` is
    given (its certificate made there), plaintext otherwise."""
    config = tls_config(tmp, i, **cfg) if tmp is not None else NetConfig(**cfg)
    # every validator configured at 127.0.0.1 (node configuration; ports set once known)
    t = Transport(
        g,
        i,
        secret(i),
        host="127.0.0.1",
        port=0,
        addresses={j: ("127.0.0.1", 0) for j in range(g.n)},
        config=config,
        on_message=inbox,
    )
    await t.start()
    return t
