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
import collections
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError, CodeMismatch, Unavailable
from accord.base.genesis import ConsensusParams, Genesis
from accord.base.metrics import parse_text
from accord.base.types import Tx
from accord.client import AsyncClient
from accord.node.config import (
    NodeConfig,
    builtin_contract_entries,
    demo_account,
    enable_api_tls,
    init_network,
)
from accord.storage.lock import FolderInUse, FolderLock

T = TypeVar("T")

REFERENCE_BYTES = 72
"""Payment reference length of the demo workload's transfers (see ``Load._tx``)."""

RETRYABLE = frozenset({"mempool_full", "rate_limited", "unavailable", "bad_nonce"})
"""Refusals a client answers by sending the same transaction again later (``bad_nonce``: an
earlier nonce of the account was refused; it is sent again first)."""
MAX_ATTEMPTS = 200
"""A transfer refused this many times is given up (counted as rejected)."""


PORT_FLOOR = 10_000
"""Listening ports are chosen at or above this (below are well-known and registered services)."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux: 32768-60999)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """Distinct ports free right now, outside the kernel's ephemeral range.

    A listening port inside that range can be taken at any time by an outgoing connection's
    local port (a validator's own dial to a peer, a client): a validator restarted later would
    then fail to bind. So ports are drawn at random from below the range (or above it), each
    one checked by binding it; they are held together until all are found, so they differ."""
    import random

    lo, hi = ephemeral_range()
    pool = list(range(PORT_FLOOR, lo)) if lo - PORT_FLOOR >= 1000 else list(range(hi + 1, 65536))
    random.shuffle(pool)
    socks: list[socket.socket] = []
    try:
        for port in pool:
            if len(socks) == count:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < count:
            raise AccordError(
                f"found only {len(socks)} free ports of {count} outside the ephemeral range"
            )
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
    expected_leaders: float | None = None,
    ticket_wait_ms: int | None = None,
    p2p_tls: bool = True,
    api_tls: bool = False,
) -> Genesis:
    """Reuse the network in ``root`` or create one (fresh keys, ports that are free now;
    encrypted validator links unless ``p2p_tls`` is False). ``api_tls`` serves every
    validator's client API over https with a self-signed certificate of its own (added to the
    validators of a reused network that have none; see :func:`api_ca_bundle`).

    A folder this version cannot reuse (another store schema, a genesis it reads differently)
    is refused here with a clear message, instead of showing up as validators that exit.
    """
    if (root / "genesis.json").exists():
        from accord.storage import Store

        try:
            genesis = Genesis.load(root / "genesis.json")
            ours = {e.name: e.code_hash for e in builtin_contract_entries()}
            stale = sorted(
                e.name for e in genesis.contracts if ours.get(e.name, e.code_hash) != e.code_hash
            )
            if stale:  # the validators would refuse to start (CodeMismatch)
                raise CodeMismatch(f"its genesis registers other code for {', '.join(stale)}")
            for data in sorted(root.glob("*/data")):
                with FolderLock(data):  # a validator still running here is named, not opened twice
                    Store(data).close()
            if api_tls:
                for v in genesis.validators:
                    _add_api_tls(root / v.name)
        except FolderInUse as e:
            raise AccordError(f"a validator of {root} is still running: {e.message}") from None
        except AccordError as e:
            raise AccordError(
                f"{root} holds a network this version cannot reuse ({e.message}); "
                f"start from a fresh folder (accord devnet --fresh)"
            ) from None
        return genesis
    ports = free_ports(2 * validators)
    return init_network(
        root,
        validators=validators,
        chain_id="accord-devnet",
        genesis_time_ms=int(time.time() * 1000),
        base_port=0,
        base_api_port=0,
        demo_accounts=accounts,
        consensus=ConsensusParams(
            round_ms=round_ms,
            stage2_ms=stage2_ms,
            max_block_txs=max_block_txs,
            expected_leaders=ConsensusParams().expected_leaders
            if expected_leaders is None
            else expected_leaders,
            ticket_wait_ms=ConsensusParams().ticket_wait_ms
            if ticket_wait_ms is None
            else ticket_wait_ms,
        ),
        ports=ports[:validators],
        api_ports=ports[validators:],
        p2p_tls=p2p_tls,
        api_tls=api_tls,
    )


def _add_api_tls(node_dir: Path) -> None:
    """Turn https on for one validator's client API (a local matter: nothing in genesis)."""
    cfg = NodeConfig.load(node_dir)
    if cfg.api_tls is not None:
        return
    enable_api_tls(node_dir, cfg)
    cfg.save(node_dir)


API_CA_FILE = "api-ca.pem"


def api_ca_bundle(root: Path, genesis: Genesis) -> Path | None:
    """Write ``root/api-ca.pem``: the API certificates of every validator serving https, the
    one file the devnet's clients (and ``curl --cacert``, or ``Client(ca_file=...)``) trust.
    None (and no file) when no validator serves https. Rewritten at each start, so a
    certificate replaced in a validator folder is trusted from the next run on."""
    pems: list[str] = []
    for v in genesis.validators:
        cfg = NodeConfig.load(root / v.name)
        if cfg.api_tls is not None:
            pems.append((root / v.name / cfg.api_tls.cert).read_text())
    path = root / API_CA_FILE
    if not pems:
        path.unlink(missing_ok=True)
        return None
    path.write_text("".join(p if p.endswith("\n") else p + "\n" for p in pems))
    return path


def _last_error(log: Path) -> str:
    """The last line a validator wrote (its one-line reason for exiting), as ': <line>'."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [
                ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()
            ]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


@dataclass
class Validator:
    name: str
    dir: Path
    api_url: str
    proc: subprocess.Popen[bytes] | None = None
    ca_file: Path | None = None
    """What its API's certificate is checked against (https only)."""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Devnet:
    """Start, watch, kill and restart the validator processes of a network folder."""

    def __init__(
        self, root: str | Path, genesis: Genesis | None = None, *, log_level: str = "WARNING"
    ) -> None:
        self.root = Path(root)
        self.log_level = log_level
        self.genesis = genesis or Genesis.load(self.root / "genesis.json")
        self.validators: list[Validator] = []
        # The lifeline (see accord.storage.lock): children get the read end, this process keeps
        # the only write end, so when it dies (SIGKILL included) every validator stops.
        self._lifeline_r, self._lifeline_w = os.pipe()
        self.ca_file = api_ca_bundle(self.root, self.genesis)
        """The devnet's trust file for https APIs (None: every API is plain http)."""
        for v in self.genesis.validators:
            cfg = NodeConfig.load(self.root / v.name)
            scheme = "http" if cfg.api_tls is None else "https"
            self.validators.append(
                Validator(
                    v.name,
                    self.root / v.name,
                    f"{scheme}://{cfg.api_host}:{cfg.api_port}",
                    ca_file=None if cfg.api_tls is None else self.ca_file,
                )
            )

    def start(self, i: int | None = None) -> None:
        """Start validator ``i`` (or all) as ``accord node DIR``; output goes to node.log."""
        for j, v in enumerate(self.validators):
            if (i is None or i == j) and not v.alive:
                with open(v.dir / "node.log", "ab") as log:  # the child keeps its own descriptor
                    v.proc = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "accord.cli.main",
                            "node",
                            str(v.dir),
                            "--log-level",
                            self.log_level,
                            "--lifeline",
                            str(self._lifeline_r),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        pass_fds=(self._lifeline_r,),
                    )

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
            async with AsyncClient(v.api_url, timeout=2.0, ca_file=v.ca_file) as c:
                while True:
                    try:
                        await c.status()
                        break
                    except (TimeoutError, AccordError, OSError):
                        if not v.alive:
                            raise AccordError(
                                f"{v.name} exited{_last_error(v.dir / 'node.log')}; "
                                f"see {v.dir / 'node.log'}"
                            ) from None
                        if time.monotonic() > deadline:
                            raise AccordError(f"{v.name} did not answer in {timeout:g} s") from None
                        await asyncio.sleep(0.2)

    async def _ask_each(
        self, fn: Callable[[AsyncClient], Awaitable[T]], timeout: float
    ) -> list[T | None]:
        """``fn`` on each validator's API at once; None for a validator that is down or silent."""

        async def one(v: Validator) -> T | None:
            if not v.alive:
                return None
            try:
                async with AsyncClient(v.api_url, timeout=timeout, ca_file=v.ca_file) as c:
                    return await fn(c)
            except (TimeoutError, AccordError, OSError):
                return None

        return list(await asyncio.gather(*(one(v) for v in self.validators)))

    async def statuses(self) -> list[dict[str, Any] | None]:
        return await self._ask_each(lambda c: c.status(), 2.0)

    async def metric_sums(self, names: list[str]) -> dict[str, float]:
        """Each named Prometheus series (name with labels, as in ``/metrics``) summed over the
        running validators."""
        sums = dict.fromkeys(names, 0.0)
        for text in await self._ask_each(lambda c: c.metrics(), 5.0):
            for series, value in parse_text(text or "").items():
                if series in sums:
                    sums[series] += value
        return sums

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
    commit_log: list[tuple[float, float]] = field(default_factory=list)
    """(commit time since the load started, latency) per committed transaction, for plots"""

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

    def __init__(
        self,
        genesis: Genesis,
        urls: list[str],
        *,
        rate: float,
        accounts: int = 100,
        presign_s: float = 0.0,
        ca_file: Path | None = None,
    ) -> None:
        self.genesis = genesis
        self.urls = urls
        self.ca_file = ca_file
        """Trust file for https URLs (the devnet's ``api-ca.pem``)."""
        self.rate = rate
        self.keys = [demo_account(i) for i in range(accounts)]
        self.nonces: dict[bytes, int] = {}
        self.stats = LoadStats()
        self.sent_at: dict[bytes, float] = {}
        self._stop = asyncio.Event()
        self.presign_s = presign_s
        self.t0 = time.monotonic()
        self._queues: dict[int, collections.deque[Tx]] = {}
        self._presigned_count = 0
        self._acct = {k.public_key: i for i, k in enumerate(self.keys)}
        self._attempts: collections.Counter[bytes] = collections.Counter()

    def _tx(self, key: AccountKey, to: bytes) -> Tx:
        """A transfer with a payment reference: ~250 bytes signed, the size of the Gosig
        paper's benchmark transactions (a bare transfer is ~170)."""
        nonce = self.nonces[key.address]
        self.nonces[key.address] = nonce + 1
        reference = f"devnet payment {key.address.hex()[:16]} #{nonce:010d}".encode().ljust(
            REFERENCE_BYTES, b"."
        )
        return Tx.create(
            key,
            chain_id=self.genesis.chain_id,
            contract="token",
            method="remit",
            args={"to": to, "amount": 1, "reference": reference},
            nonce=nonce,
            gas_limit=100_000,
        )

    async def init_nonces(self) -> None:
        clients = [AsyncClient(u, ca_file=self._ca(u)) for u in self.urls]
        try:
            for i, k in enumerate(self.keys):
                acct = await clients[i % len(clients)].account(k.address)
                self.nonces[k.address] = int(acct["next_nonce"])
        finally:
            for c in clients:
                await c.close()

    def stop(self) -> None:
        self._stop.set()

    def _ca(self, url: str) -> Path | None:
        return self.ca_file if url.startswith("https:") else None

    def presign(self, count: int, progress: Any = None) -> None:
        """Sign the next ``count`` transfers now, in submission order.

        Signing a transfer costs ~160 us in Python; at thousands per second that would eat the
        core the validators need. A benchmark measures the ledger, not its load generator."""
        task = progress.add_task("signing transfers", total=count) if progress is not None else None
        for k in range(count):
            acct = k % len(self.keys)
            to = self.keys[(k + 1) % len(self.keys)].address
            tx = self._tx(self.keys[acct], to)
            _ = tx.hash  # hashed now too: the load's bookkeeping is keyed by it
            self._queues.setdefault(acct, collections.deque()).append(tx)
            self._presigned_count += 1
            if task is not None and k % 1000 == 999:
                progress.update(task, advance=1000)
        if task is not None:
            progress.update(task, completed=count)

    def _next_tx(self, k: int) -> Tx:
        """The next transfer of account ``k % accounts``: a refused one again first (see _send),
        then a presigned one, else one signed now."""
        acct = k % len(self.keys)
        q = self._queues.get(acct)
        if q:
            return q.popleft()
        return self._tx(self.keys[acct], self.keys[(k + 1) % len(self.keys)].address)

    def _requeue(self, txs: list[Tx]) -> None:
        """Put refused transfers back into their accounts' queues, in nonce order.

        A node that sheds load refuses with ``mempool_full`` (503), and the mempool admits
        each account's nonces only in sequence, so the account's later transfers then fail
        with ``bad_nonce``. A client sends them all again, in order; without that, one refusal
        would strand the account for good. Latency still counts from the first attempt."""
        by_acct: dict[int, list[Tx]] = {}
        for tx in txs:
            by_acct.setdefault(self._acct[tx.public_key], []).append(tx)
        for acct, more in by_acct.items():
            q = self._queues.get(acct) or collections.deque()
            merged = {t.hash: t for t in [*q, *more]}
            self._queues[acct] = collections.deque(sorted(merged.values(), key=lambda t: t.nonce))

    async def run(self, duration: float | None = None) -> None:
        """Submit at ``rate`` tx/s in 20 ms ticks until stopped (or ``duration`` passes).

        Open loop, and honest about it: each tick sends every transaction due by then
        (``rate`` times the time since the start, less those sent), so a tick that runs late
        (this process starved of CPU) sends more instead of silently lowering the rate, and
        latency counts from the tick's time, not from when the request got written."""
        n = len(self.urls)
        clients = [AsyncClient(u, timeout=30.0, ca_file=self._ca(u)) for u in self.urls]
        tick = 0.02
        k = 0
        start = time.monotonic()
        self.t0 = start
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration is not None and now - start >= duration:
                    break
                count = int(self.rate * (now - start + tick)) - k  # due by the end of this tick
                batches: dict[int, list[Tx]] = {}
                for _ in range(count):
                    batches.setdefault((k % len(self.keys)) % n, []).append(self._next_tx(k))
                    k += 1
                for node, txs in batches.items():
                    t = asyncio.create_task(self._send(clients[node], txs, now))
                    pending.add(t)
                    t.add_done_callback(pending.discard)
                await asyncio.sleep(
                    max(0.0, start + tick * (int((now - start) / tick) + 1) - time.monotonic())
                )
            if pending:
                await asyncio.wait(pending, timeout=10)
            for q in self._queues.values():  # refused and never accepted: not "submitted"
                for tx in q:
                    self.sent_at.pop(tx.hash, None)
        finally:
            for c in clients:
                await c.close()

    async def _send(self, client: AsyncClient, txs: list[Tx], t: float) -> None:
        """Submit ``txs`` (due at ``t``); a refused one goes back to its account's queue."""
        for tx in txs:
            self.sent_at.setdefault(tx.hash, t)  # a retried transfer keeps its first time
            self._attempts[tx.hash] += 1
        try:
            results: list[bytes | AccordError] = await client.submit_many(txs)
        except (TimeoutError, AccordError, OSError) as e:
            results = [e if isinstance(e, AccordError) else Unavailable(str(e))] * len(txs)
        retry: list[Tx] = []
        for tx, r in zip(txs, results, strict=True):
            if not isinstance(r, AccordError) or r.code == "duplicate_tx":
                self.stats.submitted += 1
            elif (
                r.code in RETRYABLE
                and not self._stop.is_set()
                and self._attempts[tx.hash] < MAX_ATTEMPTS
            ):
                self.stats.rejected += 1
                retry.append(tx)
            else:
                self.stats.rejected += 1
                self.sent_at.pop(tx.hash, None)
        if retry:
            self._requeue(retry)

    async def watch(self, url: str) -> None:
        """Follow committed blocks on one validator and account latency of our transactions."""
        from accord.client import BlockCommitted

        async with AsyncClient(url, ca_file=self._ca(url)) as c:
            async for item in c.stream(events=False):
                if not isinstance(item, BlockCommitted):
                    continue
                now = time.monotonic()
                rel = now - self.t0
                for h in item.tx_hashes:
                    at = self.sent_at.pop(h, None)
                    if at is not None:
                        self.stats.latencies.append(now - at)
                        self.stats.committed += 1
                        self.stats.committed_hashes.add(h)
                        self.stats.commit_log.append((rel, now - at))
                lat = self.stats.latencies[-2000:]
                self.stats.timeline.append(
                    (round(rel, 3), self.stats.committed, statistics.median(lat) if lat else 0.0)
                )


def devnet_summary(
    genesis: Genesis, heads: dict[str, str], height: int, stats: LoadStats, elapsed: float
) -> dict[str, Any]:
    return {
        "validators": genesis.n,
        "height": height,
        **stats.summary(elapsed),
        "elapsed_s": round(elapsed, 2),
        "head_hashes": heads,
        "pid": os.getpid(),
    }


# --- the load generator as its own process (``python -m accord.devnet load ...``) -----------------


async def _load_process(args: Any) -> dict[str, Any]:
    """Drive a running network in ``args.root`` and return what the benchmark needs."""
    from rich.console import Console
    from rich.progress import Progress

    root = Path(args.root)
    genesis = Genesis.load(root / "genesis.json")
    net = Devnet(root, genesis)
    urls = [v.api_url for v in net.validators]
    load = Load(genesis, urls, rate=args.rate, accounts=args.accounts, ca_file=net.ca_file)
    await load.init_nonces()
    with Progress(console=Console(stderr=True), transient=True) as progress:
        load.presign(int(args.rate * args.duration * 1.02) + 100, progress)
    watcher = asyncio.create_task(load.watch(urls[args.watch]))
    await asyncio.sleep(0.5)  # the stream is open before the first transaction can commit
    t_start = time.monotonic()
    print(json.dumps({"started": True}), flush=True)  # the parent starts its clock and bar here
    await load.run(args.duration)
    submit_s = time.monotonic() - t_start
    drain_until = time.monotonic() + args.drain
    while load.sent_at and time.monotonic() < drain_until:
        await asyncio.sleep(0.1)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await watcher
    st = load.stats
    in_window = sum(1 for t, _ in st.commit_log if t <= args.duration)
    return {
        **st.summary(args.duration),
        "tps": round(in_window / args.duration, 1),
        "txs_committed_in_window": in_window,
        "submit_s": round(submit_s, 2),
        "uncommitted": len(load.sent_at),
        "tx_bytes": len(load._queues[0][0].encode()) if load._queues.get(0) else None,
        "commit_log": [(round(t, 3), round(lat, 4)) for t, lat in st.commit_log],
    }


def load_main(argv: list[str] | None = None) -> int:
    """``python -m accord.devnet load --root DIR --rate R --duration S``: one JSON line out."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m accord.devnet load")
    p.add_argument("command", choices=["load"])
    p.add_argument("--root", required=True, help="the network folder (validators already running)")
    p.add_argument("--rate", type=float, default=1000.0, help="transfers per second (open loop)")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--watch", type=int, default=0, help="validator whose stream times commits")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for the last commits")
    args = p.parse_args(argv)
    result = asyncio.run(_load_process(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(load_main())
