"""A local validator network: one OS process per validator on loopback, plus a load generator.

Used by ``accord devnet`` (the main job), ``accord bench consensus`` and the fault tests. Each
validator is ``accord node DIR`` with its own LMDB; this module only starts, watches, kills and
restarts those processes and drives signed token transfers at them through the client API.

The load generator is open-loop: it submits at a fixed rate whatever the network does, so that
latency is measured honestly (a closed loop would slow down with the system and hide queueing).
Each demo account always submits to the same validator: nonces must arrive in order, and one
validator's mempool sees each account's transactions in sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import AsyncClient
from .config import NodeConfig, demo_account, init_network
from .crypto.ed25519 import AccountKey
from .errors import AccordError
from .genesis import ConsensusParams, Genesis
from .types import Tx


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free right now (bound together so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ensure_network(
    root: Path,
    *,
    validators: int = 4,
    round_ms: int = 1000,
    stage2_ms: int = 500,
    accounts: int = 100,
    max_block_txs: int = 5000,
) -> Genesis:
    """Reuse the network in ``root`` or create one (fresh keys, ports that are free now)."""
    if (root / "genesis.json").exists():
        return Genesis.load(root / "genesis.json")
    ports = free_ports(2 * validators)
    return init_network(
        root, validators=validators, chain_id="accord-devnet",
        genesis_time_ms=int(time.time() * 1000), base_port=0, base_api_port=0,
        demo_accounts=accounts,
        consensus=ConsensusParams(round_ms=round_ms, stage2_ms=stage2_ms, max_block_txs=max_block_txs),
        ports=ports[:validators], api_ports=ports[validators:],
    )


@dataclass
class Validator:
    name: str
    dir: Path
    api_url: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Devnet:
    """Start, watch, kill and restart the validator processes of a network folder."""

    def __init__(self, root: str | Path, genesis: Genesis | None = None) -> None:
        self.root = Path(root)
        self.genesis = genesis or Genesis.load(self.root / "genesis.json")
        self.validators: list[Validator] = []
        for v in self.genesis.validators:
            cfg = NodeConfig.load(self.root / v.name)
            self.validators.append(Validator(v.name, self.root / v.name, f"http://{cfg.api_host}:{cfg.api_port}"))

    def start(self, i: int | None = None) -> None:
        """Start validator ``i`` (or all) as ``accord node DIR``; output goes to node.log."""
        for j, v in enumerate(self.validators):
            if (i is None or i == j) and not v.alive:
                log = open(v.dir / "node.log", "ab")
                v.proc = subprocess.Popen(
                    [sys.executable, "-m", "accord.cli.main", "node", str(v.dir), "--log-level", "WARNING"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
                log.close()

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        v = self.validators[i]
        if v.proc is not None and v.proc.poll() is None:
            v.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                v.proc.wait(30)
            if v.proc.poll() is None:
                v.proc.kill()
                v.proc.wait()

    def stop(self) -> None:
        """SIGTERM every validator (clean shutdown), SIGKILL any that hangs."""
        for v in self.validators:
            if v.alive:
                v.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for i in range(len(self.validators)):
            self.kill(i, signal.SIGTERM)

    async def wait_ready(self, timeout: float = 60.0, which: list[int] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for j in which if which is not None else range(len(self.validators)):
            v = self.validators[j]
            async with AsyncClient(v.api_url, timeout=2.0) as c:
                while True:
                    try:
                        await c.status()
                        break
                    except (AccordError, OSError, asyncio.TimeoutError):
                        if not v.alive:
                            raise AccordError(f"{v.name} exited; see {v.dir / 'node.log'}") from None
                        if time.monotonic() > deadline:
                            raise AccordError(f"{v.name} did not answer in {timeout:g} s") from None
                        await asyncio.sleep(0.2)

    async def statuses(self) -> list[dict[str, Any] | None]:
        async def one(v: Validator) -> dict[str, Any] | None:
            if not v.alive:
                return None
            try:
                async with AsyncClient(v.api_url, timeout=2.0) as c:
                    return await c.status()
            except (AccordError, OSError, asyncio.TimeoutError):
                return None

        return list(await asyncio.gather(*(one(v) for v in self.validators)))

    async def converged_heads(self, timeout: float = 20.0) -> dict[str, str]:
        """Poll until every running validator reports the same head; name -> head hash."""
        deadline = time.monotonic() + timeout
        heads: dict[str, str] = {}
        while True:
            sts = await self.statuses()
            heads = {v.name: s["head_hash"] for v, s in zip(self.validators, sts, strict=True) if s}
            if heads and len(set(heads.values())) == 1:
                return heads
            if time.monotonic() > deadline:
                return heads
            await asyncio.sleep(0.05)


@dataclass
class LoadStats:
    submitted: int = 0
    rejected: int = 0
    committed: int = 0
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int, float]] = field(default_factory=list)  # (t, committed, p50)
    committed_hashes: set[bytes] = field(default_factory=set)

    def summary(self, elapsed: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

        return {
            "submitted": self.submitted,
            "rejected": self.rejected,
            "txs_committed": self.committed,
            "tps": round(self.committed / elapsed, 1) if elapsed > 0 else 0.0,
            "p50_latency_s": pct(0.5),
            "p99_latency_s": pct(0.99),
            "mean_latency_s": round(statistics.fmean(lat), 3) if lat else None,
        }


class Load:
    """Open-loop signed token transfers from the demo accounts, spread over validators.

    ``accounts[i]`` submits to validator ``i % n``. Nonces come from the node at start, so a
    reused network continues where it stopped.
    """

    def __init__(self, genesis: Genesis, urls: list[str], *, rate: float, accounts: int = 100,
                 presign_s: float = 0.0) -> None:
        self.genesis = genesis
        self.urls = urls
        self.rate = rate
        self.keys = [demo_account(i) for i in range(accounts)]
        self.nonces: dict[bytes, int] = {}
        self.stats = LoadStats()
        self.sent_at: dict[bytes, float] = {}
        self._stop = asyncio.Event()
        self.presign_s = presign_s

    def _tx(self, key: AccountKey, to: bytes) -> Tx:
        nonce = self.nonces[key.address]
        self.nonces[key.address] = nonce + 1
        return Tx.create(key, chain_id=self.genesis.chain_id, contract="token", method="transfer",
                         args={"to": to, "amount": 1}, nonce=nonce, gas_limit=100_000)

    async def init_nonces(self) -> None:
        clients = [AsyncClient(u) for u in self.urls]
        try:
            for i, k in enumerate(self.keys):
                acct = await clients[i % len(clients)].account(k.address)
                self.nonces[k.address] = int(acct["next_nonce"])
        finally:
            for c in clients:
                await c.close()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration: float | None = None) -> None:
        """Submit at ``rate`` tx/s in 20 ms ticks until stopped (or ``duration`` passes)."""
        n = len(self.urls)
        clients = [AsyncClient(u, timeout=30.0) for u in self.urls]
        tick = 0.02
        per_tick = self.rate * tick
        carry = 0.0
        k = 0
        start = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration is not None and now - start >= duration:
                    break
                carry += per_tick
                count, carry = int(carry), carry - int(carry)
                batches: dict[int, list[Tx]] = {}
                for _ in range(count):
                    key = self.keys[k % len(self.keys)]
                    to = self.keys[(k + 1) % len(self.keys)].address
                    batches.setdefault((k % len(self.keys)) % n, []).append(self._tx(key, to))
                    k += 1
                for node, txs in batches.items():
                    t = asyncio.create_task(self._send(clients[node], txs))
                    pending.add(t)
                    t.add_done_callback(pending.discard)
                await asyncio.sleep(max(0.0, start + tick * (int((now - start) / tick) + 1) - time.monotonic()))
            if pending:
                await asyncio.wait(pending, timeout=10)
        finally:
            for c in clients:
                await c.close()

    async def _send(self, client: AsyncClient, txs: list[Tx]) -> None:
        t = time.monotonic()
        for tx in txs:
            self.sent_at[tx.hash] = t
        try:
            results = await client.submit_many(txs)
        except (AccordError, OSError, asyncio.TimeoutError):
            self.stats.rejected += len(txs)
            for tx in txs:
                self.sent_at.pop(tx.hash, None)
            return
        for tx, r in zip(txs, results, strict=True):
            if isinstance(r, AccordError):
                self.stats.rejected += 1
                self.sent_at.pop(tx.hash, None)
            else:
                self.stats.submitted += 1

    async def watch(self, url: str) -> None:
        """Follow committed blocks on one validator and account latency of our transactions."""
        from .client import BlockCommitted

        started = time.monotonic()
        async with AsyncClient(url) as c:
            async for item in c.stream(events=False):
                if not isinstance(item, BlockCommitted):
                    continue
                now = time.monotonic()
                for h in item.tx_hashes:
                    at = self.sent_at.pop(h, None)
                    if at is not None:
                        self.stats.latencies.append(now - at)
                        self.stats.committed += 1
                        self.stats.committed_hashes.add(h)
                lat = self.stats.latencies[-2000:]
                self.stats.timeline.append(
                    (round(now - started, 3), self.stats.committed, statistics.median(lat) if lat else 0.0)
                )


def devnet_summary(genesis: Genesis, heads: dict[str, str], height: int, stats: LoadStats,
                   elapsed: float) -> dict[str, Any]:
    return {
        "validators": genesis.n,
        "height": height,
        **stats.summary(elapsed),
        "elapsed_s": round(elapsed, 2),
        "head_hashes": heads,
        "pid": os.getpid(),
    }
