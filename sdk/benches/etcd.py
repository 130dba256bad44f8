"""The replicated log a trusting user would pick instead: a 3-member etcd on loopback, and
an open-loop write load against it, for ``accord bench consensus --vs etcd``.

etcd (Raft, crash faults only) is what a consortium that trusts its members would run for an
ordered, replicated record. To compare like with like, the load here is shaped as the Accord
bench's own (:class:`accord.devnet.Load`): open loop at ``rate`` writes per second in 20 ms
ticks, each write a value of the Accord transfer's size under its own key, whatever the
cluster does; a write counts when etcd acknowledged it, which it does only once a quorum of
members has it in its log (committed). Writes go over etcd's v3 HTTP/JSON gateway
(``POST /v3/kv/put``), one per request as an etcd client issues them, spread over the three
members, at most ``concurrency`` in flight (a write due while all are busy waits for one:
queueing shows as latency, as in the Accord load).

Nothing here is needed to build or test Accord: ``etcd`` is found on the ``PATH`` (Debian:
``etcd-server``) or the bench refuses with :class:`EtcdMissing`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.base.errors import AccordError
from accord.base.processes import stop_processes
from accord.devnet import free_ports

MEMBERS = 3


class EtcdMissing(AccordError):
    """``--vs etcd`` was asked for on a machine without an ``etcd`` binary on the PATH."""

    code = "etcd_missing"


class EtcdFailed(AccordError):
    """The local etcd cluster did not start or stopped answering."""

    code = "etcd_failed"


def etcd_binary() -> str:
    """The ``etcd`` on the PATH, or :class:`EtcdMissing` saying how to get one."""
    path = shutil.which("etcd")
    if path is None:
        raise EtcdMissing(
            "--vs etcd needs an etcd server on the PATH (Debian/Ubuntu: apt-get install "
            "etcd-server); nothing else in Accord needs it"
        )
    return path


@dataclass
class EtcdCluster:
    """Three etcd members on 127.0.0.1, each with its own data folder under ``root``.

    Ports come from :func:`accord.devnet.free_ports` (outside the kernel's ephemeral range,
    so no outgoing connection can take one between the check and the bind)."""

    root: Path
    binary: str
    client_urls: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        ports = free_ports(2 * MEMBERS)
        client, peer = ports[:MEMBERS], ports[MEMBERS:]
        names = [f"m{i}" for i in range(MEMBERS)]
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer, strict=True))
        self.client_urls = [f"http://127.0.0.1:{p}" for p in client]
        for i, name in enumerate(names):
            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            log = (folder / "etcd.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        self.binary,
                        "--name",
                        name,
                        "--data-dir",
                        str(folder / "data"),
                        "--listen-client-urls",
                        self.client_urls[i],
                        "--advertise-client-urls",
                        self.client_urls[i],
                        "--listen-peer-urls",
                        f"http://127.0.0.1:{peer[i]}",
                        "--initial-advertise-peer-urls",
                        f"http://127.0.0.1:{peer[i]}",
                        "--initial-cluster",
                        initial,
                        "--initial-cluster-token",
                        "accord-bench",
                        "--initial-cluster-state",
                        "new",
                        "--logger",
                        "zap",
                        "--log-level",
                        "warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every member answers ``/health`` with ``"health": "true"`` (a leader elected)."""
        import aiohttp

        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            for url in self.client_urls:
                while True:
                    for i, p in enumerate(self.procs):
                        if p.poll() is not None:
                            raise EtcdFailed(f"etcd member m{i} exited: {self._log_tail(i)}")
                    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                        async with s.get(f"{url}/health", timeout=aiohttp.ClientTimeout(2)) as r:
                            # etcd 3.4 answers text/plain: aiohttp's json() would refuse it
                            if r.status == 200 and '"health":"true"' in await r.text():
                                break
                    if time.monotonic() > deadline:
                        i = self.client_urls.index(url)
                        raise EtcdFailed(
                            f"etcd at {url} not healthy after {timeout:g} s: {self._log_tail(i)}"
                        )
                    await asyncio.sleep(0.2)

    def _log_tail(self, i: int, lines: int = 5) -> str:
        """The end of member ``i``'s log, for an error message (the folder is deleted after)."""
        try:
            text = (self.root / f"m{i}" / "etcd.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        stop_processes(self.procs)
        self.procs = []


@contextlib.contextmanager
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A fresh 3-member cluster in a temporary folder, stopped and deleted on exit."""
    binary = etcd_binary()
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-etcd-"))
    cluster = EtcdCluster(tmp, binary)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def put_load(
    urls: list[str],
    *,
    rate: float,
    duration: float,
    value_bytes: int,
    concurrency: int,
    drain: float,
) -> dict[str, Any]:
    """Open-loop puts at ``rate`` for ``duration`` s; figures as the Accord load's.

    ``writes_per_s`` counts the writes acknowledged within the window over the window (a
    cluster that falls behind is not flattered by its backlog); latencies are due-to-ack over
    every acknowledged write, those of the drain included."""
    import aiohttp

    value = base64.b64encode(b"v" * value_bytes).decode()
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    acked_at: list[float] = []
    failed = 0
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    tick = 0.02
    cpu0 = time.process_time()  # this process is the load generator: its CPU is the client's
    async with aiohttp.ClientSession(connector=connector) as session:

        async def put(k: int, due: float) -> None:
            nonlocal failed
            body = {"key": base64.b64encode(b"bench/%012d" % k).decode(), "value": value}
            async with sem:
                try:
                    async with session.post(f"{urls[k % len(urls)]}/v3/kv/put", json=body) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, OSError, TimeoutError):
                    ok = False
            if ok:
                now = time.monotonic()
                latencies.append(now - due)
                acked_at.append(now - start)
            else:
                failed += 1

        start = time.monotonic()
        sent = 0
        pending: set[asyncio.Task[None]] = set()
        while (now := time.monotonic()) - start < duration:
            due = int(rate * (now - start + tick)) - sent  # the same ticks as accord.devnet.Load
            for _ in range(due):
                t = asyncio.create_task(put(sent, now))
                pending.add(t)
                t.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(
                max(0.0, start + tick * (int((now - start) / tick) + 1) - time.monotonic())
            )
        if pending:
            await asyncio.wait(pending, timeout=drain)
        unanswered = len(pending)
        for t in list(pending):
            t.cancel()
    in_window = sum(1 for t in acked_at if t <= duration)
    latencies.sort()
    return {
        "writes_per_s": round(in_window / duration, 1),
        "p50_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_latency_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3)
        if latencies
        else None,
        "submitted": sent,
        "acked": len(latencies),
        "failed": failed,
        "unanswered": unanswered,
        "client_cpu_s": round(time.process_time() - cpu0, 1),
    }
