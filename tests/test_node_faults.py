"""The node under faults: real validator processes on loopback, real SIGKILL.

Each test starts its own 4-validator network (``accord node DIR`` processes with their own
LMDB) in a temporary folder and stops everything it started in ``finally``. Rounds are 500 ms.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from accord.base.crypto import bls
from accord.base.errors import AccordError
from accord.client import AsyncClient
from accord.net.frames import Kind, encode_frame, kind_specs

from .support.faults import FaultNet, until
from .support.rawpeer import RawPeer

pytestmark = pytest.mark.timeout(240)


def test_sigkill_one_of_four_under_load_then_it_catches_up(tmp_path: Path) -> None:
    async def main() -> None:
        fn = FaultNet(tmp_path / "net")
        try:
            await fn.start()
            load = await fn.start_load(rate=150, watch=0)
            await fn.wait_height([0, 1, 2, 3], 3)
            fn.net.kill(3)  # SIGKILL: no clean shutdown, LMDB as the kernel left it
            killed_at = max(h or 0 for h in await fn.heights())
            # the other three are a quorum (2f+1 = 3): they keep committing under load
            await fn.wait_height([0, 1, 2], killed_at + 4)
            committed_while_down = load.stats.committed
            assert committed_while_down > 0
            fn.net.start(3)
            await fn.net.wait_ready(60.0, [3])
            top = max(h or 0 for h in await fn.heights())
            await fn.wait_height([3], top, timeout=60)  # caught up through certified blocks
            await asyncio.sleep(1.0)
            await fn.stop_load()
            height, head = await fn.converged([0, 1, 2, 3])
            assert height >= top
            # the chains are one chain: same block hash at every height on every validator
            heights = range(1, height + 1)
            chains = [await fn.block_hashes(i, heights) for i in range(4)]
            assert all(c == chains[0] for c in chains)
            assert chains[0][-1] == head
            # every transaction the client saw committed is in every validator's chain
            seen = set(load.stats.committed_hashes)
            assert len(seen) > 100
            await fn.all_committed_everywhere(seen, [0, 1, 2, 3])
            m = await fn.metrics(3)
            assert m["accord_sync_blocks_total"] >= 1  # it fetched the blocks it missed
        finally:
            await fn.close()

    asyncio.run(main())


def test_two_of_four_stopped_no_quorum_then_commits_resume(tmp_path: Path) -> None:
    async def main() -> None:
        fn = FaultNet(tmp_path / "net")
        try:
            await fn.start()
            load = await fn.start_load(rate=60, watch=0)
            await fn.wait_height([0, 1, 2, 3], 3)
            fn.net.kill(2)  # one crashes
            fn.net.kill(3, signal.SIGTERM)  # one stops cleanly
            # a commit already certified may still land; after that, nothing can commit
            await asyncio.sleep(2.0)
            before = await fn.heights()
            await asyncio.sleep(4.0)  # eight rounds without a quorum
            after = await fn.heights()
            assert after[0] == before[0] and after[1] == before[1], (before, after)
            # nothing diverged: the two survivors agree on every block they both hold
            common = min(after[0] or 0, after[1] or 0)
            assert common >= 3
            assert await fn.block_hashes(0, range(1, common + 1)) == await fn.block_hashes(
                1, range(1, common + 1)
            )
            stalled_committed = load.stats.committed
            # restart both: commits resume and all four converge
            fn.net.start(2)
            fn.net.start(3)
            await fn.net.wait_ready(60.0, [2, 3])
            await fn.wait_height([0, 1, 2, 3], common + 3, timeout=60)
            await asyncio.sleep(1.0)
            await fn.stop_load()
            height, _ = await fn.converged([0, 1, 2, 3])
            assert height >= common + 3
            chains = [await fn.block_hashes(i, range(1, height + 1)) for i in range(4)]
            assert all(c == chains[0] for c in chains)
            assert load.stats.committed > stalled_committed
        finally:
            await fn.close()

    asyncio.run(main())


def test_bad_peers_and_bad_requests_against_a_running_node(tmp_path: Path) -> None:
    """Unknown key, forged and replayed handshakes, garbage, oversized and replayed frames,
    malformed API requests: each refused or dropped, counted in /metrics, the node goes on."""

    async def main() -> None:
        fn = FaultNet(tmp_path / "net")
        try:
            await fn.start([0, 1, 2])  # validator 3's process never runs: the test speaks as it
            await fn.wait_height([0, 1, 2], 2)
            target = 1
            url = fn.p2p_url(target)
            gh = fn.genesis.hash
            sk3 = fn.secret(3)
            outsider = bls.keygen(b"o" * 32)
            async with aiohttp.ClientSession() as s:
                # a key that is not in genesis
                r = await RawPeer(s, url, gh, target, fn.genesis.validator_keys()).handshake(
                    index=3, sk=outsider
                )
                assert r["ready"] is False and "auth" not in r
                # validator 3's key, but an AUTH signature by someone else (forged)
                r = await RawPeer(s, url, gh, target, fn.genesis.validator_keys()).handshake(
                    index=3, sk=sk3, auth_sig=bls.sign(outsider, b"forged")
                )
                assert r["ready"] is False
                # a good handshake, recorded, then replayed on a new connection
                good = RawPeer(s, url, gh, target, fn.genesis.validator_keys())
                rec = await good.handshake(index=3, sk=sk3)
                assert rec["ready"] is True
                assert good.ws is not None
                # authenticated as validator 3: bad frames
                specs = kind_specs(fn.genesis.consensus)
                await good.ws.send_bytes(b"\xc1 garbage")
                await good.ws.send_bytes(
                    encode_frame(Kind.STATUS, b"x" * (specs[Kind.STATUS].max_bytes + 10))
                )
                junk_vote = encode_frame(Kind.CONSENSUS, b"\x92\x02not a vote")
                await good.ws.send_bytes(junk_vote)
                await good.ws.send_bytes(junk_vote)  # replayed frame: a duplicate
                await good.ws.send_bytes(encode_frame(Kind.TX_BATCH, [b"not a transaction"]))
                await good.close()
                replay = await RawPeer(s, url, gh, target, fn.genesis.validator_keys()).handshake(
                    index=3, sk=sk3, nonce=rec["hello"]["nonce"], auth_sig=rec["auth"]
                )
                assert replay["ready"] is False and "auth" not in replay

            async def counted() -> bool:
                m = await fn.metrics(target)
                return (
                    m.get('accord_net_handshake_failures_total{reason="unknown_key"}', 0) >= 1
                    and m.get('accord_net_handshake_failures_total{reason="bad_signature"}', 0) >= 1
                    and m.get('accord_net_handshake_failures_total{reason="replay"}', 0) >= 1
                    and m.get('accord_net_dropped_total{reason="garbage"}', 0) >= 1
                    and m.get('accord_net_dropped_total{reason="oversized"}', 0) >= 1
                    and m.get('accord_net_dropped_total{reason="duplicate"}', 0) >= 1
                    and m.get('accord_consensus_events{kind="garbage"}', 0) >= 1
                )

            await until(counted, 10, "bad peer traffic counted in /metrics")

            # malformed API requests: 4xx JSON with a stable code; nothing changes
            api = fn.urls[target]
            async with AsyncClient(api) as c:
                before = await c.status()
            async with aiohttp.ClientSession() as s:
                for method, path, body, ctype in [
                    ("POST", "/v1/txs", b"\xc1\xc1 not msgpack", "application/octet-stream"),
                    ("POST", "/v1/txs", b"{not json", "application/json"),
                    ("POST", "/v1/txs", json.dumps({"tx": "zz"}).encode(), "application/json"),
                    ("GET", "/v1/blocks/-3", None, None),
                    ("GET", "/v1/txs/nothex", None, None),
                    ("POST", "/v1/query/token/no_such_method", b"{}", "application/json"),
                ]:
                    headers = {"Content-Type": ctype} if ctype else {}
                    async with s.request(method, api + path, data=body, headers=headers) as resp:
                        assert 400 <= resp.status < 500, (path, resp.status)
                        doc = await resp.json(content_type=None)
                        assert isinstance(doc.get("error", doc).get("code"), str), doc
            async with AsyncClient(api) as c:
                after = await c.status()
            assert after["mempool"] == before["mempool"]

            # the node keeps running: its real peers still commit with it
            h = (await fn.heights())[target] or 0
            await fn.wait_height([0, 1, 2], h + 2)
            assert 3 not in (await fn.net.statuses())[target]["peers"]  # type: ignore[index]
        finally:
            await fn.close()

    asyncio.run(main())


def test_devnet_kill_restart_of_a_dead_process_is_reported(tmp_path: Path) -> None:
    """Killing an already-dead validator is a no-op; statuses show it down."""

    async def main() -> None:
        fn = FaultNet(tmp_path / "net")
        try:
            await fn.start([0])
            fn.net.kill(0)
            fn.net.kill(0)
            assert (await fn.net.statuses())[0] is None
            with pytest.raises(AccordError):
                await fn.net.wait_ready(1.0, [0])
        finally:
            await fn.close()

    asyncio.run(main())
