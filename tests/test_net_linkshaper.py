"""The link shaper's guarantees (accord.net.linkshaper): bytes arrive in order and never
early, a "lost" chunk stalls what follows it, a receiver that stops reading gets back-pressure
instead of a relay buffering without bound, partitions hold or drop.

Timing assertions are lower bounds only (a relay may be late on a busy machine, never early)."""

from __future__ import annotations

import asyncio
import os
import random
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.errors import ValidationError
from accord.net.linkshaper import LinkProfile, Relay, Schedule, ShapedNetwork

pytestmark = pytest.mark.timeout(60)

profiles = st.builds(
    LinkProfile,
    delay_s=st.floats(0, 0.2),
    jitter_s=st.floats(0, 0.1),
    loss=st.floats(0, 1),
    rto_s=st.floats(0.2, 1.0),
    rate=st.one_of(st.none(), st.floats(1e3, 1e7)),
)


@given(
    profiles,
    st.lists(st.tuples(st.floats(0, 0.05), st.integers(1, 65536)), min_size=1, max_size=200),
    st.integers(0, 2**32),
)
def test_the_schedule_keeps_order_and_never_delivers_before_the_delay(
    p: LinkProfile, chunks: list[tuple[float, int]], seed: int
) -> None:
    s = Schedule(p, random.Random(seed))
    t, prev = 0.0, float("-inf")
    wire = 0.0
    for gap, size in chunks:
        t += gap
        at = s.deliver_at(t, size)
        assert at >= prev  # in order
        wire = max(t, wire) + (size / p.rate if p.rate else 0.0)
        assert at >= wire + max(0.0, p.delay_s - p.jitter_s) - 1e-9  # never early
        if p.loss == 0:
            # without loss a chunk is late only behind an earlier one
            assert at <= max(prev, wire + p.delay_s + p.jitter_s) + 1e-9
        prev = at
    if p.loss == 0:
        assert s.stalls == 0
    if p.loss == 1:
        assert s.stalls == len(chunks)


def test_every_stall_adds_a_retransmission_timeout_to_what_follows() -> None:
    p = LinkProfile(delay_s=0.01, loss=1.0, rto_s=0.25)
    s = Schedule(p, random.Random(1))
    assert s.deliver_at(0.0, 10) == pytest.approx(0.26)
    # sent right behind it, the next chunk waits for the first and stalls on its own
    assert s.deliver_at(0.001, 10) == pytest.approx(0.261)


def test_bad_profiles_are_refused() -> None:
    with pytest.raises(ValidationError):
        LinkProfile(loss=1.5)
    with pytest.raises(ValidationError):
        LinkProfile(delay_s=-1)
    with pytest.raises(ValidationError):
        LinkProfile.parse(delay="fast")
    assert LinkProfile.parse("30ms", "10ms", "1%", "1mbit") == LinkProfile(
        delay_s=0.03, jitter_s=0.01, loss=0.01, rate=125000.0
    )


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def test_bytes_cross_a_jittery_lossy_relay_whole_and_in_order() -> None:
    async def main() -> None:
        server, port = await _echo_server()
        relay = Relay(
            ("127.0.0.1", port), LinkProfile(delay_s=0.005, jitter_s=0.005, loss=0.05), seed=3
        )
        await relay.start()
        try:
            r, w = await asyncio.open_connection(*relay.address)
            sent = os.urandom(1_500_000)
            rng = random.Random(5)

            async def send() -> None:
                i = 0
                while i < len(sent):
                    n = rng.randint(1, 40_000)
                    w.write(sent[i : i + n])
                    await w.drain()
                    i += n

            got = bytearray()

            async def receive() -> None:
                while len(got) < len(sent):
                    data = await r.read(65536)
                    assert data, "the relay closed early"
                    got.extend(data)

            await asyncio.wait_for(asyncio.gather(send(), receive()), 40)
            assert bytes(got) == sent
            assert relay.stats.forward.stalls > 0 and relay.stats.backward.stalls > 0
            w.close()
        finally:
            await relay.stop()
            server.close()

    asyncio.run(main())


def test_each_direction_is_delayed_at_least_its_delay_and_loss_stalls_it() -> None:
    async def main() -> None:
        server, port = await _echo_server()
        plain = Relay(("127.0.0.1", port), LinkProfile(delay_s=0.04, jitter_s=0.01))
        lossy = Relay(("127.0.0.1", port), LinkProfile(delay_s=0.0, loss=1.0, rto_s=0.2))
        await plain.start()
        await lossy.start()
        try:
            for relay, floor in ((plain, 2 * 0.03), (lossy, 2 * 0.2)):
                r, w = await asyncio.open_connection(*relay.address)
                for k in range(5):
                    t0 = time.monotonic()
                    w.write(struct.pack(">I", k))
                    await w.drain()
                    echoed = await asyncio.wait_for(r.readexactly(4), 10)
                    assert struct.unpack(">I", echoed)[0] == k
                    # a round trip crosses both directions: at least twice the floor
                    assert time.monotonic() - t0 >= floor - 0.002
                w.close()
        finally:
            await plain.stop()
            await lossy.stop()
            server.close()

    asyncio.run(main())


def test_a_receiver_that_stops_reading_gets_back_pressure_not_an_unbounded_buffer() -> None:
    async def main() -> None:
        stalled: list[asyncio.StreamWriter] = []

        async def never_reads(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            stalled.append(w)
            await asyncio.sleep(3600)

        server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        relay = Relay(("127.0.0.1", port), LinkProfile(), chunk_size=16384, max_chunks=8)
        await relay.start()
        try:
            _r, w = await asyncio.open_connection(*relay.address)
            block = b"x" * 65536
            written = 0
            peak = 0
            total = 256 * 1024 * 1024

            async def flood() -> None:
                nonlocal written, peak
                while written < total:
                    w.write(block)
                    await w.drain()
                    written += len(block)
                    peak = max(peak, relay.buffered())

            with pytest.raises(TimeoutError):
                await asyncio.wait_for(flood(), 4.0)
            peak = max(peak, relay.buffered())
            # the sender was blocked long before 256 MB (kernel buffers hold a few MB), and the
            # relay itself held at most its queue, one read and its sockets' write buffers
            assert written < total // 4, written
            bound = 8 * 16384 + 16384 + 2 * 64 * 1024 + 65536
            assert peak <= bound, (peak, bound)
            w.transport.abort()
        finally:
            await relay.stop()
            server.close()

    asyncio.run(main())


def test_partitions_hold_or_drop_then_heal() -> None:
    async def main() -> None:
        server, port = await _echo_server()
        relay = Relay(("127.0.0.1", port), LinkProfile())
        await relay.start()
        try:
            r, w = await asyncio.open_connection(*relay.address)
            relay.partition("hold")
            w.write(b"held")
            await w.drain()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.readexactly(4), 0.5)
            relay.heal()
            assert await asyncio.wait_for(r.readexactly(4), 10) == b"held"  # late, not lost

            relay.partition("drop")
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(r.readexactly(1), 10)
            r2, w2 = await asyncio.open_connection(*relay.address)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                w2.write(b"x")
                await w2.drain()
                await asyncio.wait_for(r2.readexactly(1), 10)
            assert relay.stats.refused >= 1
            relay.heal()
            r3, w3 = await asyncio.open_connection(*relay.address)
            w3.write(b"back")
            assert await asyncio.wait_for(r3.readexactly(4), 10) == b"back"
            w3.close()
        finally:
            await relay.stop()
            server.close()

    asyncio.run(main())


def test_a_shaped_network_has_one_relay_per_pair_dialled_by_the_lower_index() -> None:
    net = ShapedNetwork({i: ("127.0.0.1", 1000 + i) for i in range(4)}, LinkProfile())
    assert sorted(net.relays) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert net.relays[(1, 3)].target == ("127.0.0.1", 1003)
    assert sorted(net.dial_map(1)) == [2, 3] and net.dial_map(3) == {}
    assert len(net.links_of(2)) == 3
