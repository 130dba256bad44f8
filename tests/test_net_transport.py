"""accord.net transport: real WebSocket connections on 127.0.0.1 with ephemeral ports.

Every test starts its transports inside one ``asyncio.run`` and stops all of them in a
``finally``; raw aiohttp clients play the misbehaving peers (unknown key, forged handshakes,
garbage, oversized and replayed frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.metrics import parse_text
from accord.net import Kind, NetConfig, Transport, encode_frame
from accord.net import handshake as hs
from accord.net.frames import kind_specs

from .support.genesis import make_genesis
from .support.mesh import Inbox, RawPeer, run, secret, start_mesh, stop_all, until

pytestmark = pytest.mark.timeout(120)


# --- the happy path ---------------------------------------------------------------------------


def test_four_transports_connect_and_exchange() -> None:
    g = make_genesis(4)

    async def main() -> None:
        inboxes = {i: Inbox() for i in range(4)}
        ts = await start_mesh(g, [0, 1, 2, 3], inboxes)
        try:
            for t in ts:
                await t.wait_connected()
            assert all(t.peers() == [j for j in range(4) if j != t.index] for t in ts)
            # broadcast reaches all three others, exactly once
            for t in ts:
                assert t.broadcast(Kind.CONSENSUS, {"vote": t.index}) == 3
            await until(lambda: all(len(inboxes[i].of(Kind.CONSENSUS)) == 3 for i in range(4)))
            for i in range(4):
                assert sorted(f for f, _ in inboxes[i].of(Kind.CONSENSUS)) == [
                    j for j in range(4) if j != i
                ]
                assert all(p == {"vote": f} for f, p in inboxes[i].of(Kind.CONSENSUS))
            # send to one
            assert ts[2].send(1, Kind.BLOCK_REQUEST, {"from_height": 5, "id": 1})
            await until(
                lambda: inboxes[1].of(Kind.BLOCK_REQUEST) == [(2, {"from_height": 5, "id": 1})]
            )
            assert inboxes[0].of(Kind.BLOCK_REQUEST) == []
            # fanout limits the number of targets
            assert ts[0].broadcast(Kind.STATUS, {"h": 1}, fanout=2) == 2
            assert ts[0].broadcast(Kind.STATUS, {"h": 2}, exclude=[1, 2]) == 1
            # transactions are batched: many per frame, all arrive
            txs = [os.urandom(250) for _ in range(3000)]
            frames_before = ts[3].m_frames_out.get(kind="tx_batch")
            for tx in txs:
                ts[3].gossip_tx(tx)
            ts[3].flush_txs()

            def got_all(i: int) -> bool:
                return sum(len(p) for _, p in inboxes[i].of(Kind.TX_BATCH)) == len(txs)

            await until(lambda: all(got_all(i) for i in range(3)), what="tx batches")
            for i in range(3):
                assert [tx for _, p in inboxes[i].of(Kind.TX_BATCH) for tx in p] == txs
            batches = ts[3].m_frames_out.get(kind="tx_batch") - frames_before
            assert 3 <= batches <= 3 * 10  # 3 peers x a few 256 KiB batches, not 3 x 3000 frames
            # metrics exposition carries the counters
            text = parse_text(ts[0].metrics.render())
            assert text["accord_net_connected_peers"] == 3
            assert text['accord_net_frames_out_total{kind="consensus"}'] == 3
            assert text['accord_net_handshakes_total{role="dialer"}'] == 3
            assert 'accord_net_queue_frames{peer="v1",lane="gossip"}' in text
        finally:
            await stop_all(ts)
        assert all(t.peers() == [] for t in ts)

    run(main())


def test_wrong_secret_is_refused_at_construction() -> None:
    g = make_genesis(4)
    with pytest.raises(Exception, match="not validator 1"):
        Transport(g, 1, secret(2))
    with pytest.raises(Exception, match="not in genesis"):
        Transport(g, 4, secret(2))


# --- refused handshakes -------------------------------------------------------------------------


def test_unknown_key_and_forged_handshakes_are_refused() -> None:
    g = make_genesis(4)

    async def main() -> None:
        inboxes = {1: Inbox(), 2: Inbox()}
        ts = await start_mesh(g, [1, 2], inboxes)
        t1 = ts[0]
        fails = t1.m_hs_fail
        try:
            await t1.wait_connected(1)
            async with aiohttp.ClientSession() as s:
                # 1. a key that is not in genesis
                outsider = bls.keygen(b"x" * 32)
                r = await RawPeer(s, t1).handshake(index=0, sk=outsider)
                assert r["ready"] is False and "auth" not in r
                assert fails.get(reason="unknown_key") == 1
                # 2. a genesis key (validator 0) but a signature by someone else
                r = await RawPeer(s, t1).handshake(
                    index=0, auth_sig=bls.sign(outsider, b"whatever")
                )
                assert r["ready"] is False
                assert fails.get(reason="bad_signature") == 1
                # 2b. a right key signing the wrong transcript (claims to be validator 3)
                r = await RawPeer(s, t1).handshake(index=3, sk=secret(0))
                assert r["ready"] is False
                assert fails.get(reason="bad_signature") == 2
                # 3. another chain's genesis
                r = await RawPeer(s, t1).handshake(
                    index=0, genesis_hash=make_genesis(4, chain_id="other").hash
                )
                assert r["ready"] is False and "auth" not in r
                assert fails.get(reason="wrong_genesis") == 1
                # 4. replay: record a good handshake of validator 0, then replay it
                good = RawPeer(s, t1)
                rec = await good.handshake(index=0)
                assert rec["ready"] is True
                assert 0 in t1.peers()
                await good.close()
                await until(lambda: 0 not in t1.peers())
                replay = await RawPeer(s, t1).handshake(
                    index=0, nonce=rec["hello"]["nonce"], auth_sig=rec["auth"]
                )
                assert replay["ready"] is False and "auth" not in replay
                assert fails.get(reason="replay") == 1
                # 4b. fresh nonce, recorded AUTH: the signature no longer covers the challenge
                replay = await RawPeer(s, t1).handshake(index=0, auth_sig=rec["auth"])
                assert replay["ready"] is False
                assert fails.get(reason="bad_signature") == 3
                # 5. a duplicate connection for a validator already connected (2 -> 1 is live)
                r = await RawPeer(s, t1).handshake(index=2)
                assert r["ready"] is False
                assert fails.get(reason="duplicate") == 1
                # 6. garbage instead of HELLO
                raw = RawPeer(s, t1)
                ws = await raw.connect()
                await ws.send_bytes(b"\xc1garbage")
                assert await raw.recv() is None
                assert fails.get(reason="malformed") == 1
            assert (
                parse_text(t1.metrics.render())[
                    'accord_net_handshake_failures_total{reason="replay"}'
                ]
                == 1
            )
            # the node kept running: its real peer still talks to it
            assert t1.peers() == [2]
            ts[1].send(1, Kind.STATUS, {"alive": True})
            await until(lambda: inboxes[1].of(Kind.STATUS) == [(2, {"alive": True})])
        finally:
            await stop_all(ts)

    run(main())


def test_dialer_refuses_an_impostor_acceptor() -> None:
    """Validator 0 dials 'validator 1', but the listener there cannot sign as validator 1."""
    g = make_genesis(4)

    async def main() -> None:
        from aiohttp import web

        async def impostor(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            msg = await ws.receive()
            hello = encoding.decode(msg.data)[1]
            n_a = hs.new_nonce()
            # signs with validator 2's key, claiming the role of validator 1
            sig = hs.sign(secret(2), hello["genesis"], hello["nonce"], n_a, 1, 0)
            await ws.send_bytes(encode_frame(Kind.CHALLENGE, {"nonce": n_a, "sig": sig}))
            await ws.receive()
            return ws

        app = web.Application()
        app.router.add_get("/accord/p2p", impostor)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        t0 = Transport(
            g, 0, secret(0), host="127.0.0.1", port=0, addresses={1: ("127.0.0.1", port)}
        )
        await t0.start()
        try:
            await until(lambda: t0.m_hs_fail.get(reason="bad_signature") >= 1)
            assert t0.peers() == []
        finally:
            await t0.stop()
            await runner.cleanup()

    run(main())


# --- bad frames after the handshake ----------------------------------------------------------------


def test_garbage_oversized_and_replayed_frames_are_dropped() -> None:
    g = make_genesis(4)

    async def main() -> None:
        inboxes = {1: Inbox(), 2: Inbox()}
        ts = await start_mesh(g, [1, 2], inboxes, max_bad_frames=10, misbehaving_ban=1.0)
        t1 = ts[0]
        dropped = t1.m_dropped
        specs = kind_specs(g.consensus)
        try:
            await t1.wait_connected(1)
            async with aiohttp.ClientSession() as s:
                peer = RawPeer(s, t1)  # authenticates as validator 0 (its transport is not running)
                assert (await peer.handshake(index=0))["ready"]
                ws = peer.ws
                assert ws is not None
                good = encode_frame(Kind.CONSENSUS, {"vote": 1})
                await ws.send_bytes(good)
                await ws.send_bytes(good)  # replayed: dropped
                await ws.send_bytes(b"\x92\x11")  # truncated msgpack
                await ws.send_bytes(b"\x92\x11\xc0" + b"trailing")
                # non-canonical: a map with unsorted keys (hand-built msgpack)
                await ws.send_bytes(b"\x92\x11\x82\xa1b\x01\xa1a\x02")
                await ws.send_bytes(encode_frame(Kind.HELLO, {}))  # handshake kind after auth
                await ws.send_bytes(encoding.encode([99, None]))  # unknown kind
                await ws.send_bytes(encoding.encode({"kind": 17}))  # wrong shape
                await ws.send_str("text frames are not allowed")
                # over its kind's limit but under the WebSocket limit: dropped, connection stays
                await ws.send_bytes(
                    encode_frame(Kind.STATUS, b"x" * (specs[Kind.STATUS].max_bytes + 10))
                )
                after = encode_frame(Kind.CONSENSUS, {"vote": 2})
                await ws.send_bytes(after)
                await until(lambda: len(inboxes[1].of(Kind.CONSENSUS)) == 2, what="good frames")
                assert inboxes[1].of(Kind.CONSENSUS) == [(0, {"vote": 1}), (0, {"vote": 2})]
                assert dropped.get(reason="duplicate") == 1
                assert dropped.get(reason="garbage") == 5
                assert dropped.get(reason="unexpected_kind") == 1
                assert dropped.get(reason="unknown_kind") == 1
                assert dropped.get(reason="oversized") == 1
                assert 0 in t1.peers()
                # a frame above the WebSocket limit: the connection is closed and counted
                with contextlib.suppress(ConnectionError):  # the acceptor may hang up mid-frame
                    await ws.send_bytes(b"\x00" * (t1.max_frame + 1))
                await until(lambda: 0 not in t1.peers(), what="oversized close")
                assert dropped.get(reason="oversized") == 2
                assert t1.m_disconnects.get(reason="oversized") == 1
                # too many bad frames: the connection is closed as misbehaving
                peer2 = RawPeer(s, t1)
                assert (await peer2.handshake(index=0))["ready"]
                assert peer2.ws is not None
                for _ in range(11):
                    await peer2.ws.send_bytes(b"\xc1")
                await until(
                    lambda: t1.m_disconnects.get(reason="misbehaving") == 1, what="misbehaving"
                )
                assert 0 not in t1.peers()
                # and is refused for a while (misbehaving_ban) before it may come back
                assert (await RawPeer(s, t1).handshake(index=0))["ready"] is False
                assert t1.m_hs_fail.get(reason="banned") == 1
                await asyncio.sleep(1.0)
                # the same replayed frame over a new connection is still a duplicate
                peer3 = RawPeer(s, t1)
                assert (await peer3.handshake(index=0))["ready"]
                assert peer3.ws is not None
                await peer3.ws.send_bytes(good)
                await until(lambda: dropped.get(reason="duplicate") == 2, what="duplicate")
                await peer3.close()
            # the node keeps running with its real peer
            assert t1.peers() == [2]
            ts[1].broadcast(Kind.CONSENSUS, {"vote": 3})
            await until(lambda: (2, {"vote": 3}) in inboxes[1].of(Kind.CONSENSUS))
            text = parse_text(t1.metrics.render())
            assert text['accord_net_dropped_total{reason="garbage"}'] >= 5
        finally:
            await stop_all(ts)

    run(main())


def test_gossip_echoes_are_dropped_as_duplicates() -> None:
    """A relayed message that comes back to its origin (or arrives twice) reaches the node once."""
    g = make_genesis(4)

    async def main() -> None:
        inboxes = {i: Inbox() for i in range(3)}
        ts = await start_mesh(g, [0, 1, 2], inboxes)

        def relay(t: Transport, inbox: Inbox) -> Callable[[int, Kind, Any], Awaitable[None]]:
            async def handler(frm: int, kind: Kind, payload: Any) -> None:
                await inbox(frm, kind, payload)
                t.broadcast(kind, payload, exclude=[frm])  # naive flooding relay

            return handler

        for t in ts:
            t.on_message = relay(t, inboxes[t.index])
        try:
            for t in ts:
                await t.wait_connected(2)
            ts[0].broadcast(Kind.CONSENSUS, {"block": "b1"})
            await until(lambda: all(inboxes[i].of(Kind.CONSENSUS) for i in (1, 2)))
            await asyncio.sleep(0.2)
            assert inboxes[0].of(Kind.CONSENSUS) == []  # its own message never comes back
            assert len(inboxes[1].of(Kind.CONSENSUS)) == 1
            assert len(inboxes[2].of(Kind.CONSENSUS)) == 1
            assert sum(t.m_dropped.get(reason="duplicate") for t in ts) >= 2
        finally:
            await stop_all(ts)

    run(main())


# --- reconnection ----------------------------------------------------------------------------


def test_reconnects_after_peer_restart() -> None:
    g = make_genesis(4)

    async def main() -> None:
        inbox0 = Inbox()
        ts = await start_mesh(
            g, [0, 1, 2], {0: inbox0}, backoff_base=0.05, backoff_max=0.5, connect_timeout=1.0
        )
        t0, t1, t2 = ts
        restarted: Transport | None = None
        events: list[tuple[int, bool]] = []
        t0.on_peer = lambda j, up: events.append((j, up))
        try:
            for t in ts:
                await t.wait_connected(2)
            await until(lambda: len(events) == 2, what="connect events")
            events.clear()
            port = t1.bound_port
            assert port is not None
            await t1.stop()
            await until(lambda: 1 not in t0.peers() and 1 not in t2.peers(), what="disconnect")
            await until(lambda: (1, False) in events, what="disconnect event")
            # the dialer keeps retrying (and failing) meanwhile
            await until(lambda: t0.m_dial_fail.get(reason="connect") >= 2, what="dial failures")
            restarted = Transport(
                g,
                1,
                secret(1),
                host="127.0.0.1",
                port=port,
                config=NetConfig(backoff_base=0.05, backoff_max=0.5),
            )
            restarted.set_address(2, "127.0.0.1", t2.bound_port or 0)
            await restarted.start()
            await until(lambda: 1 in t0.peers() and 1 in t2.peers(), what="reconnect")
            await until(lambda: events == [(1, False), (1, True)], what="reconnect event")
            restarted.send(0, Kind.STATUS, {"height": 7})
            await until(lambda: inbox0.of(Kind.STATUS) == [(1, {"height": 7})])
        finally:
            await stop_all([t0, t2] + ([restarted] if restarted else []))

    run(main())


# --- back-pressure ----------------------------------------------------------------------------


def test_bounded_queues_under_a_slow_consumer() -> None:
    g = make_genesis(4)
    bound = 32

    async def main() -> None:
        slow = Inbox(delay=0.002)
        ts = await start_mesh(g, [0, 1], {1: slow}, queue_frames=bound, queue_bytes=1 << 20)
        t0, t1 = ts
        try:
            await t0.wait_connected(1)
            # gossip lane: flood 3,000 x 16 KiB batches at a consumer handling ~500 frames/s
            blob = [os.urandom(16 * 1024)]
            for n in range(3000):
                t0.broadcast(Kind.TX_BATCH, blob + [n.to_bytes(4, "big")])
                stats = t0.peer_stats()[1]
                assert stats["queue_frames"]["gossip"] <= bound  # type: ignore[index]
                assert stats["queue_bytes"]["gossip"] <= 1 << 20  # type: ignore[index]
                if n % 100 == 0:
                    await asyncio.sleep(0)
            assert t0.m_dropped.get(reason="queue_drop_oldest") > 0
            # the newest batch is never the one dropped
            await until(
                lambda: any(p[-1] == (2999).to_bytes(4, "big") for _, p in slow.of(Kind.TX_BATCH)),
                timeout=30,
                what="newest batch",
            )
            assert len(slow.of(Kind.TX_BATCH)) < 3000

            # reliable lane: send_wait blocks the producer instead of dropping; all arrive in order
            before = len(slow.of(Kind.CONSENSUS))
            for n in range(300):
                assert await t0.send_wait(1, Kind.CONSENSUS, {"seq": n, "pad": b"y" * 2048})
                assert t0.peer_stats()[1]["queue_frames"]["reliable"] <= bound  # type: ignore[index]
            await until(
                lambda: len(slow.of(Kind.CONSENSUS)) - before == 300, timeout=30, what="reliable"
            )
            assert [p["seq"] for _, p in slow.of(Kind.CONSENSUS)] == list(range(300))
            # the non-blocking send refuses (and counts) when the reliable lane is full
            refused = 0
            for n in range(300, 300 + 4 * bound):
                if not t0.send(1, Kind.CONSENSUS, {"seq": n, "pad": b"z" * 2048}):
                    refused += 1
            assert refused > 0
            assert t0.m_dropped.get(reason="queue_full") == refused
            stats = t0.peer_stats()[1]
            assert stats["queue_frames_max"]["reliable"] <= bound  # type: ignore[index]
            # and send_wait gives up after its timeout while the lane stays full
            assert await t0.send_wait(1, Kind.CONSENSUS, {"seq": -1}, timeout=0.0) is False
            assert t0.m_dropped.get(reason="send_timeout") == 1
        finally:
            await stop_all(ts)

    run(main())


def test_send_to_disconnected_peer_and_oversized_send() -> None:
    g = make_genesis(4)

    async def main() -> None:
        t = Transport(g, 0, secret(0), host="127.0.0.1", port=0)
        await t.start()
        try:
            assert t.send(3, Kind.STATUS, {"h": 1}) is False
            assert await t.send_wait(3, Kind.CONSENSUS, {"h": 1}) is False
            assert t.m_dropped.get(reason="not_connected") == 2
            with pytest.raises(Exception, match="exceeds its limit"):
                t.send(3, Kind.BLOCK_REQUEST, b"x" * 10_000)
            with pytest.raises(Exception, match="handshake kinds"):
                t.send(3, Kind.HELLO, {})
        finally:
            await t.stop()

    run(main())


async def fill_handshake_slots(s: aiohttp.ClientSession, t: Transport, k: int) -> list[RawPeer]:
    """Open ``k`` connections that never authenticate, then check one more is turned away."""
    idle = [RawPeer(s, t) for _ in range(k)]
    for p in idle:
        await p.connect()
    await until(lambda: t._pending_handshakes == k, what="pending handshakes")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await RawPeer(s, t).connect()
    return idle


def test_idle_and_excess_handshakes_are_bounded() -> None:
    """Unauthenticated connections cannot pile up: they time out, and beyond a few pending
    handshakes new ones are turned away before any signing work."""
    g = make_genesis(4)

    async def main() -> None:
        # peer_handshake_slots=0: the test client dials from a validator's configured address
        ts = await start_mesh(
            g, [1], handshake_timeout=0.5, max_pending_handshakes=2, peer_handshake_slots=0
        )
        t1 = ts[0]
        try:
            async with aiohttp.ClientSession() as s:
                idle = await fill_handshake_slots(s, t1, 2)
                assert t1.m_hs_fail.get(reason="busy") == 1
                for p in idle:  # silent peers are dropped after the handshake timeout
                    assert await p.recv() is None
                assert t1.m_hs_fail.get(reason="timeout") == 2
                # and a real validator still gets in afterwards
                ok = RawPeer(s, t1)
                assert (await ok.handshake(index=3))["ready"]
                await ok.close()
        finally:
            await stop_all(ts)

    run(main())


def test_one_host_cannot_take_every_handshake_slot() -> None:
    """Pending handshakes are also bounded per remote address: a host that opens connections
    and never authenticates is turned away at its own limit ("busy_ip"), while a validator
    dialing from another address still gets in."""
    g = make_genesis(4)

    async def main() -> None:
        ts = await start_mesh(
            g,
            [1],
            handshake_timeout=3.0,
            max_pending_handshakes=6,
            max_pending_handshakes_per_ip=2,
            peer_handshake_slots=0,
        )
        t1 = ts[0]
        try:
            async with aiohttp.ClientSession() as s:
                idle = await fill_handshake_slots(s, t1, 2)
                assert (
                    t1.m_hs_fail.get(reason="busy_ip") == 1 and t1.m_hs_fail.get(reason="busy") == 0
                )
                other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
                async with aiohttp.ClientSession(connector=other) as s2:
                    ok = RawPeer(s2, t1)
                    assert (await ok.handshake(index=3))["ready"]
                    await ok.close()
                for p in idle:
                    await p.close()
                await until(lambda: not t1._pending_by_ip, what="per-address counts released")
        finally:
            await stop_all(ts)

    run(main())


def test_loadtest_runs_real_processes() -> None:
    """The transport load test (separate OS processes on loopback, TLS links) delivers every transaction."""
    import argparse

    from accord.net import loadtest

    args = argparse.Namespace(
        validators=2, duration=1.0, rate=2000, tx_size=250, fanout=3, tls=True
    )
    res = loadtest.run(args)
    assert res["validators"] == 2 and len(res["workers"]) == 2
    for w in res["workers"]:
        other = res["workers"][1 - w["index"]]
        assert w["complete"] and w["received"] == other["sent"] > 0
        assert w["dropped"] == {}


def test_request_response_for_catch_up() -> None:
    from accord.base.errors import NetError, NotFound

    g = make_genesis(4)

    async def main() -> None:
        ts = await start_mesh(g, [0, 1, 2])
        t0, t1, t2 = ts
        chain = {h: {"height": h, "block": os.urandom(64)} for h in range(1, 6)}
        slow_gate = asyncio.Event()

        async def serve(frm: int, body: Any) -> Any:
            if body.get("slow"):
                await slow_gate.wait()
            if body["from"] not in chain:
                raise NotFound("no such height")
            return [chain[h] for h in range(body["from"], body["to"] + 1) if h in chain]

        t1.on_request = serve
        try:
            for t in ts:
                await t.wait_connected(2)
            got = await t0.request(1, {"from": 2, "to": 4})
            assert got == [chain[2], chain[3], chain[4]]
            with pytest.raises(NetError) as e:
                await t0.request(1, {"from": 99, "to": 100})
            assert e.value.reason == "remote_error" and "not_found" in e.value.message
            # a peer without a request handler never answers: timeout
            with pytest.raises(NetError) as e:
                await t0.request(2, {"from": 1, "to": 1}, timeout=0.3)
            assert e.value.reason == "timeout"
            with pytest.raises(NetError) as e:
                await t0.request(3, {"from": 1, "to": 1})
            assert e.value.reason == "not_connected"
            # answers from the wrong peer, unknown ids and replays are dropped
            pending = asyncio.create_task(t0.request(1, {"from": 1, "to": 1, "slow": True}))
            await until(lambda: len(t0._requests) == 1, what="pending request")
            rid = next(iter(t0._requests))
            t2.send(0, Kind.BLOCK_RESPONSE, {"id": rid, "body": "forged"})  # t2 was not asked
            t1.send(0, Kind.BLOCK_RESPONSE, {"id": rid + 1, "body": "unknown id"})
            await until(lambda: t0.m_dropped.get(reason="unsolicited") == 2, what="unsolicited")
            slow_gate.set()
            assert await pending == [chain[1]]
            t1.send(0, Kind.BLOCK_RESPONSE, {"id": rid, "body": "replayed"})
            await until(lambda: t0.m_dropped.get(reason="unsolicited") == 3, what="replayed answer")
            # the connections are fine afterwards
            assert t0.peers() == [1, 2]
            assert await t0.request(1, {"from": 5, "to": 5}) == [chain[5]]
        finally:
            await stop_all(ts)

    run(main())
