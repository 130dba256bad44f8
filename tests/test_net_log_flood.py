"""A flood of hostile connections against a live validator transport writes a bounded number
of log lines: each kind of line a stranger can trigger stays within its budget
(accord.base.logbudget), the rest are counted in ``accord_net_log_lines_held_total``, and the
validator still authenticates an honest peer and takes its messages afterwards.

Before: a connection whose first byte is not TLS (garbage, an old plaintext dialer) was logged
outside the budget, one line per connection; the flood below wrote over 100 such lines."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import aiohttp
import pytest

from accord.base.crypto import bls
from accord.base.logbudget import LogBudget
from accord.net import Kind

from .support.genesis import make_genesis
from .support.mesh import Inbox, run, stop_all, until
from .support.mesh import start_tls as start
from .support.rawpeer import RawPeer

pytestmark = pytest.mark.timeout(120)

PER_KIND = 20  # LogBudget's default lines per kind per minute, what the transport uses


def test_a_flood_of_hostile_connections_logs_within_budget_and_honest_peers_still_connect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert LogBudget(logging.getLogger("x")).per_window == PER_KIND
    g = make_genesis(4)
    caplog.set_level(logging.INFO, logger="accord.net")

    async def main() -> None:
        inbox = Inbox()
        t1 = await start(g, 1, tmp_path, inbox)
        assert t1.bound_port
        port = t1.bound_port
        url = f"https://127.0.0.1:{port}/accord/p2p"
        tried = {"garbage": 0, "stranger_key": 0, "oversized": 0, "tls_garbage": 0}

        async def garbage() -> None:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GARBAGE " + os.urandom(200) + b"\r\n\r\n")
            await w.drain()
            await asyncio.wait_for(r.read(), 10)
            w.close()
            tried["garbage"] += 1

        async def tls_garbage() -> None:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"\x16\x03\x01\x00\x30" + os.urandom(48))  # a TLS record header, then junk
            await w.drain()
            await asyncio.wait_for(r.read(), 10)
            w.close()
            tried["tls_garbage"] += 1

        async def stranger_key(s: aiohttp.ClientSession) -> None:
            peer = RawPeer(s, url, t1.genesis_hash, 1)
            try:
                out = await peer.handshake(index=0, sk=bls.keygen())  # a key not in genesis
                assert not out["ready"]
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            finally:
                await peer.close()
            tried["stranger_key"] += 1

        async def oversized(s: aiohttp.ClientSession) -> None:
            peer = RawPeer(s, url, t1.genesis_hash, 1)
            try:
                ws = await peer.connect()
                await ws.send_bytes(os.urandom(64 * 1024))  # far past the handshake's 1 KB
                await asyncio.wait_for(ws.receive(), 10)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            finally:
                await peer.close()
            tried["oversized"] += 1

        async with aiohttp.ClientSession() as s:
            for _ in range(25):
                # four at a time: one address's share of the pending-handshake pool
                await asyncio.gather(garbage(), tls_garbage(), stranger_key(s), oversized(s))
                await asyncio.gather(garbage(), tls_garbage(), stranger_key(s), oversized(s))
                await asyncio.gather(garbage(), garbage(), stranger_key(s), oversized(s))
        attempts = sum(tried.values())
        assert attempts >= 300, tried

        # every hostile connection was refused and counted by reason
        fails = t1.m_hs_fail
        assert fails.get(reason="plaintext") >= tried["garbage"]
        assert fails.get(reason="tls_handshake") >= tried["tls_garbage"]
        assert fails.get(reason="oversized") >= tried["oversized"]
        assert (
            fails.get(reason="unknown_key") + fails.get(reason="bad_signature")
            >= (tried["stranger_key"])
        )

        lines = [r for r in caplog.records if r.name.startswith("accord.net")]
        by_text: dict[str, int] = {}
        for r in lines:
            key = " ".join(r.getMessage().split()[:4])  # "validator 1: refused a" etc.
            by_text[key] = by_text.get(key, 0) + 1
        # the budget's kinds hit here: plaintext, tls_handshake, refused (stranger + oversized)
        assert len(lines) <= 3 * PER_KIND + 3, (len(lines), by_text)
        assert not any(r.exc_info for r in lines)  # no traceback for a stranger
        held = t1.m_log_held.total()
        # what was not logged was counted: nothing vanished
        assert held >= attempts - len(lines), (held, attempts, len(lines))
        assert t1.m_log_held.get(kind="plaintext") > 0

        # an honest validator still authenticates and is heard
        t0 = await start(g, 0, tmp_path)
        try:
            t0.set_address(1, "127.0.0.1", port)
            await until(lambda: t0.is_connected(1) and t1.is_connected(0), 20, "0 and 1 linked")
            t0.send(1, Kind.CONSENSUS, b"honest")
            await until(
                lambda: inbox.of(Kind.CONSENSUS) == [(0, b"honest")], 10, "the honest message"
            )
        finally:
            await stop_all([t0, t1])

    run(main())
