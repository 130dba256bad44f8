"""Silent connections cannot starve the validators of handshake slots.

Before: 64 silent TCP connections from two source addresses (8 each = the per-address cap,
16 = every slot, re-opened the moment they were dropped after 5 s) kept restarting validators
from ever reconnecting. Now the configured validator addresses have reserved slots, other
addresses must send their first byte within ``first_byte_timeout``, and the per-address share
of the shared pool is smaller; every refusal is counted.
"""

from __future__ import annotations

import asyncio

import aiohttp

from .support.genesis import make_genesis
from .support.mesh import RawPeer, run, start_mesh, stop_all, until


async def _silent(src: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))


def test_two_hosts_of_silent_connections_cannot_lock_a_validator_out() -> None:
    """The review's attack with the default limits: a validator (dialing from its configured
    address, 127.0.0.1) still authenticates while two other hosts hold every slot they can get.
    Fails on the old code (16 of 16 slots taken: the validator's connection is closed)."""
    g = make_genesis(4)

    async def main() -> None:
        ts = await start_mesh(g, [1], first_byte_timeout=30.0, handshake_timeout=30.0)
        t1 = ts[0]
        assert t1.bound_port
        held = []
        try:
            for src in ("127.0.0.2", "127.0.0.3"):
                for _ in range(8):
                    held.append(await _silent(src, t1.bound_port))
            await until(lambda: t1.m_hs_fail.get(reason="busy_ip") == 8, 10.0, "the excess refused")
            assert len(t1._opening) == 8
            async with aiohttp.ClientSession() as s:
                ok = RawPeer(s, t1)
                assert (await ok.handshake(index=3))["ready"]
                await ok.close()
        finally:
            for _, w in held:
                w.close()
            await stop_all(ts)

    run(main())


def test_a_full_shared_pool_leaves_the_reserved_slots_to_configured_validators() -> None:
    """Enough attacking addresses to fill the whole shared pool: a validator still gets in on
    its reserved slots (counted), an unknown address is refused (counted). Fails on the old code."""
    g = make_genesis(4)

    async def main() -> None:
        ts = await start_mesh(
            g,
            [1],
            first_byte_timeout=30.0,
            handshake_timeout=30.0,
            max_pending_handshakes=4,
            max_pending_handshakes_per_ip=2,
            peer_handshake_slots=2,
        )
        t1 = ts[0]
        assert t1.bound_port
        held = []
        try:
            for src in ("127.0.0.2", "127.0.0.3"):
                for _ in range(2):
                    held.append(await _silent(src, t1.bound_port))
            await until(lambda: len(t1._opening) == 4, 10.0, "the shared pool full")
            r, w = await _silent("127.0.0.4", t1.bound_port)
            held.append((r, w))
            assert await asyncio.wait_for(r.read(), 10.0) == b""  # refused: closed at once
            assert t1.m_hs_fail.get(reason="busy") == 1
            async with aiohttp.ClientSession() as s:
                ok = RawPeer(s, t1)
                assert (await ok.handshake(index=3))["ready"]
                await ok.close()
            assert t1.m_hs_reserved.get(stage="open") == 1
            # the reserved slots are bounded too: the validator's address gets two, not more
            extra = [await _silent("127.0.0.1", t1.bound_port) for _ in range(3)]
            held.extend(extra)
            await until(
                lambda: t1.m_hs_fail.get(reason="busy") == 2, 10.0, "the third reserved refused"
            )
        finally:
            for _, w in held:
                w.close()
            await stop_all(ts)

    run(main())


def test_a_silent_connection_from_an_unknown_address_is_dropped_at_the_first_byte_deadline() -> (
    None
):
    """Fails on the old code (no first-byte deadline: such a connection held a slot for the
    whole handshake timeout)."""
    g = make_genesis(4)

    async def main() -> None:
        ts = await start_mesh(g, [1], first_byte_timeout=0.3, handshake_timeout=60.0)
        t1 = ts[0]
        assert t1.bound_port
        try:
            r, w = await _silent("127.0.0.2", t1.bound_port)
            assert await asyncio.wait_for(r.read(), 30.0) == b""
            w.close()
            assert t1.m_hs_fail.get(reason="first_byte_timeout") == 1
            assert not t1._opening_by_ip
        finally:
            await stop_all(ts)

    run(main())
