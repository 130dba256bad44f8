"""``accord bench consensus``: a validator network on loopback under open-loop load.

What it does: creates a fresh network in a temporary folder (or ``--dir``), starts each
validator as its own ``accord node`` process with its own LMDB, and runs the load generator
as a *separate* process (``python -m accord.devnet load``) that submits presigned token
transfers at ``--rate`` per second, whatever the network does (open loop: queueing shows up
as latency instead of slowing the generator down). Commit times come from one validator's
WebSocket stream of committed blocks.

Figures (one JSON line): ``tps`` is transactions committed within the ``--duration`` window
divided by the window (so a network that falls behind is not flattered by its backlog);
``p50_latency_s`` / ``p99_latency_s`` are submit-to-commit over every committed transaction
(those committed while draining too); ``rate``, ``submitted``, ``rejected``, ``uncommitted``
(submitted but not committed when the drain ended), ``height`` and ``validators``;
``validators_cpu_s`` (CPU time of all validator processes from the load's start to the end of
the drain) and ``cpu_ms_per_tx`` (that over the transactions committed): on a shared machine
the cost per transaction is steadier than the throughput; ``validator_cpu_us_per_tx`` is
that per validator in microseconds (each validator handles every transaction); ``executions_per_block``: blocks each
validator executed (built or validated) per committed block, which ``--expected-leaders``
(leaders per round, a sortition parameter of the fresh genesis) moves.
``rounds_without_commit``: rounds during the run in which no block committed.
``signature_limit_tps``: what signature checks alone would allow on this machine, from the
bench's own speed probe (Ed25519 checks per second on one core, the mean of the probes before
and after, times the cores, over the validators: each validator checks every transaction's
signature), and ``limit_ratio = tps / signature_limit_tps``, a figure that the machine's
drift between days moves much less than ``tps``.
``--vs etcd`` (needs ``etcd`` on the PATH; see :mod:`accord.benches.etcd`): ``--pairs`` times,
a fresh 3-member etcd on loopback under the same open-loop rate of writes of the transfer's
size, then a fresh Accord network; ``etcd_writes_per_s`` (acknowledged, i.e. committed, writes
within the window over the window), ``tps`` and ``vs_etcd_ratio`` are means over the pairs,
each pair's figures in ``pairs``.
``--plot FILE.png`` draws committed throughput and latency per second.

Everything shares this machine's cores: the load process and the validators compete, as
they would not on a real deployment of one validator per host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from accord.base.errors import AccordError
from accord.cli.node import resolve_event_loop
from accord.devnet import Devnet, ensure_network
from accord.node.config import NodeConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--validators", type=int, default=4)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--rate", type=float, default=5000.0, help="transfers submitted per second")
    p.add_argument("--accounts", type=int, default=1000, help="demo accounts sending transfers")
    p.add_argument("--round-ms", type=int, default=1000)
    p.add_argument("--stage2-ms", type=int, default=500)
    p.add_argument("--max-block-txs", type=int, default=5000)
    p.add_argument(
        "--expected-leaders",
        type=float,
        default=None,
        help="sortition: leaders per round on average (default: the genesis default)",
    )
    p.add_argument(
        "--ticket-wait-ms",
        type=int,
        default=None,
        help="leaders announce tickets and wait this long before building (default: genesis default)",
    )
    p.add_argument(
        "--drain", type=float, default=10.0, help="seconds to wait for commits after the load"
    )
    p.add_argument(
        "--dir", type=Path, default=None, help="network folder (default: a fresh temporary one)"
    )
    p.add_argument(
        "--p2p-tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="encrypted validator links in a new network (default: on)",
    )
    p.add_argument(
        "--api-tls",
        action="store_true",
        help="serve the validators' client API over https (added to a --dir network that has "
        "none); the bench's clients trust the folder's api-ca.pem, as with accord devnet "
        "--api-tls. A --dir network already on https is used as it is",
    )
    p.add_argument(
        "--plot", type=Path, default=None, help="draw throughput and latency to this PNG"
    )
    p.add_argument(
        "--event-loop",
        choices=["auto", "asyncio", "uvloop"],
        default=None,
        help="the validators' event loop (accord node --event-loop; default: theirs)",
    )
    p.add_argument(
        "--vs",
        choices=["etcd"],
        default=None,
        help="also run a 3-member etcd on loopback under the same load, alternating with "
        "Accord, and print both figures and their ratio (needs etcd on the PATH)",
    )
    p.add_argument(
        "--pairs", type=int, default=1, help="with --vs: alternating (etcd, Accord) runs"
    )
    p.add_argument(
        "--etcd-concurrency",
        type=int,
        default=500,
        help="with --vs etcd: writes in flight at most (etcdctl check perf --load=l uses 500 "
        "clients)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.event_loop is not None:
        os.environ["ACCORD_EVENT_LOOP"] = args.event_loop  # the validators inherit it
    if args.vs == "etcd":
        from accord.benches.etcd import etcd_binary

        etcd_binary()  # refused before anything starts when there is none
        return asyncio.run(_vs_etcd(args))
    return asyncio.run(_run(args))


async def _vs_etcd(args: argparse.Namespace) -> dict[str, Any]:
    """``--vs etcd``: ``--pairs`` times an etcd run then an Accord run, same offered rate and
    write size (the Accord transfer's), each on a fresh cluster; one line with both.

    ``etcd_writes_per_s`` and ``tps`` are the means over the pairs and ``vs_etcd_ratio`` is
    their ratio; ``pairs`` keeps each run's figures (a pair's own ratio is the one to trust
    on a machine that drifts between pairs)."""
    from accord.benches.etcd import etcd_cluster, put_load

    runs: list[dict[str, Any]] = []
    accord: dict[str, Any] = {}
    value_bytes = 251  # until the first Accord run says what its transfers weigh
    for _ in range(max(1, args.pairs)):
        with etcd_cluster() as cluster:
            await cluster.wait_ready()
            cpu0 = _cpu_seconds(cluster.pids)
            etcd = await put_load(
                cluster.client_urls,
                rate=args.rate,
                duration=args.duration,
                value_bytes=value_bytes,
                concurrency=args.etcd_concurrency,
                drain=args.drain,
            )
            cpu_s = _cpu_seconds(cluster.pids) - cpu0
        etcd["members_cpu_s"] = round(cpu_s, 1)
        etcd["cpu_ms_per_write"] = round(1000 * cpu_s / etcd["acked"], 3) if etcd["acked"] else None
        accord = await _run(args)
        value_bytes = accord["tx_bytes"] or value_bytes
        runs.append(
            {
                "etcd": etcd,
                "accord": {
                    k: accord[k]
                    for k in ("tps", "p50_latency_s", "p99_latency_s", "cpu_ms_per_tx", "rejected")
                },
                "ratio": round(accord["tps"] / etcd["writes_per_s"], 3)
                if etcd["writes_per_s"]
                else None,
            }
        )
    etcd_mean = statistics.fmean(r["etcd"]["writes_per_s"] for r in runs)
    accord_mean = statistics.fmean(r["accord"]["tps"] for r in runs)
    return {
        **accord,
        "tps": round(accord_mean, 1),
        "vs": "etcd",
        "etcd_members": 3,
        "etcd_concurrency": args.etcd_concurrency,
        "write_bytes": value_bytes,
        "etcd_writes_per_s": round(etcd_mean, 1),
        "vs_etcd_ratio": round(accord_mean / etcd_mean, 3) if etcd_mean else None,
        "pairs": runs,
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(stderr=True)
    tmp = None
    root: Path = args.dir
    if root is None:
        tmp = tempfile.mkdtemp(prefix="accord-bench-consensus-")
        root = Path(tmp) / "net"
    genesis = ensure_network(
        root,
        validators=args.validators,
        round_ms=args.round_ms,
        stage2_ms=args.stage2_ms,
        accounts=args.accounts,
        max_block_txs=args.max_block_txs,
        expected_leaders=args.expected_leaders,
        ticket_wait_ms=args.ticket_wait_ms,
        p2p_tls=args.p2p_tls,
        api_tls=args.api_tls,
    )
    net = Devnet(root, genesis)  # reads each validator's node.json: https where it says so
    load: subprocess.Popen[bytes] | None = None
    try:
        net.start()
        await net.wait_ready()
        start_height = max(s["height"] for s in await net.statuses() if s)
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accord.devnet",
                "load",
                "--root",
                str(root),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--accounts",
                str(args.accounts),
                "--drain",
                str(args.drain),
            ],
            stdout=subprocess.PIPE,
            stderr=None,
        )
        assert load.stdout is not None
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, load.stdout.readline)  # after presigning
        if not first:
            raise RuntimeError("the load process exited before starting")
        started = time.monotonic()
        cpu0 = _cpu_seconds([v.proc.pid for v in net.validators if v.proc is not None])
        total = args.duration + args.drain
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"load at {args.rate:g} tx/s", total=total, info="")
            reader = loop.run_in_executor(None, load.stdout.read)
            while not reader.done():
                await asyncio.wait({reader}, timeout=1.0)
                sts = await net.statuses()
                heights = [s["height"] for s in sts if s]
                pool = sum(s["mempool"] for s in sts if s)
                progress.update(
                    task,
                    completed=min(total, time.monotonic() - started),
                    info=f"height {max(heights, default=0)}  mempools {pool}",
                )
                for v in net.validators:
                    if not v.alive:
                        raise RuntimeError(f"{v.name} exited; see {v.dir / 'node.log'}")
            out = reader.result()
        cpu_s = _cpu_seconds([v.proc.pid for v in net.validators if v.proc is not None]) - cpu0
        if load.wait() != 0:
            raise RuntimeError(f"the load process failed (exit {load.returncode})")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        heads = await net.converged_heads(timeout=20.0)  # a commit may still be landing somewhere
        sts = await net.statuses()
        ops = await net.metric_sums(
            [f'accord_chain_op_seconds_count{{op="{op}"}}' for op in ("build", "validate")]
        )
        blocks = max(s["height"] for s in sts if s) - start_height
        missed = await _rounds_without_commit(net, start_height)
        log = result.pop("commit_log")
        if args.plot is not None:
            plot(log, args.duration, args.rate, args.plot)
        return {
            "validators": genesis.n,
            "p2p_tls": NodeConfig.load(root / genesis.validators[0].name).p2p_tls is not None,
            "api_tls": net.validators[0].api_url.startswith("https:"),
            "tps": result["tps"],
            "p50_latency_s": result["p50_latency_s"],
            "p99_latency_s": result["p99_latency_s"],
            "rate": args.rate,
            "duration_s": args.duration,
            "submitted": result["submitted"],
            "rejected": result["rejected"],
            "txs_committed": result["txs_committed"],
            "txs_committed_in_window": result["txs_committed_in_window"],
            "uncommitted": result["uncommitted"],
            "tx_bytes": result["tx_bytes"],
            "blocks": blocks,
            # Blocks executed (built or validated) per validator per committed block: every
            # leader of a round builds its own, and each validator validates the best one.
            "executions_per_block": round(sum(ops.values()) / genesis.n / blocks, 2)
            if blocks
            else None,
            # Rounds that ended without a commit (from the committed headers' round numbers):
            # each one costs a round of latency and leaves a double-sized backlog behind it.
            "rounds_without_commit": missed,
            "validators_cpu_s": round(cpu_s, 1),
            "cpu_ms_per_tx": round(1000 * cpu_s / result["txs_committed"], 3)
            if result["txs_committed"]
            else None,
            # The same per validator: what one validator's process spends on a transaction
            # (compare with one signature check, 1e6 / ed25519_verify_per_s microseconds).
            "validator_cpu_us_per_tx": round(1e6 * cpu_s / genesis.n / result["txs_committed"], 1)
            if result["txs_committed"]
            else None,
            "event_loop": resolve_event_loop(os.environ.get("ACCORD_EVENT_LOOP", "asyncio")),
            "heads_agree": len(heads) == genesis.n and len(set(heads.values())) == 1,
            "round_ms": args.round_ms,
            "expected_leaders": genesis.consensus.expected_leaders,
            "ticket_wait_ms": genesis.consensus.ticket_wait_ms,
            "max_block_txs": args.max_block_txs,
            **({"plot": str(args.plot)} if args.plot is not None else {}),
        }
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        net.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def relate_to_probe(
    result: dict[str, Any], before: dict[str, int], after: dict[str, int]
) -> dict[str, Any]:
    """``signature_limit_tps`` and ``limit_ratio`` (see the module docstring)."""
    import os

    per_core = (before["ed25519_verify_per_s"] + after["ed25519_verify_per_s"]) / 2
    limit = per_core * (os.cpu_count() or 1) / max(1, int(result["validators"]))
    tps = result.get("tps")
    return {
        "signature_limit_tps": round(limit, 1),
        "limit_ratio": round(tps / limit, 3) if isinstance(tps, int | float) and limit else None,
    }


async def _rounds_without_commit(net: Devnet, start_height: int) -> int | None:
    """Rounds between the first and the last block committed during the run that committed
    nothing, read from one validator's headers (every round commits at most one block)."""
    from accord.client import AsyncClient

    rounds: list[int] = []
    try:
        v = net.validators[0]
        async with AsyncClient(v.api_url, timeout=10.0, ca_file=v.ca_file) as c:
            h = start_height + 1
            while True:
                page = await c.headers(h, limit=100)
                rounds += [x.header.round for x in page]
                if len(page) < 100:
                    break
                h += len(page)
    except (OSError, TimeoutError, AccordError):
        return None
    return rounds[-1] - rounds[0] + 1 - len(rounds) if rounds else 0


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux ``/proc``; 0 elsewhere).

    CPU per committed transaction is the figure that other work on a shared machine
    disturbs least: throughput and latency move with whatever else runs, CPU cost much less."""
    import os

    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def plot(log: list[tuple[float, float]], duration: float, rate: float, path: Path) -> None:
    """Committed transactions per second and their median/p99 latency, per one-second bin."""
    import numpy as np

    from accord.benches.plotting import pyplot

    plt = pyplot()

    if not log:
        return
    t = np.array([x[0] for x in log])
    lat = np.array([x[1] for x in log])
    bins = np.arange(0, int(np.ceil(t.max())) + 1)
    idx = np.digitize(t, bins) - 1
    counts = np.bincount(idx, minlength=len(bins))
    p50 = [
        float(np.median(lat[idx == b])) if (idx == b).any() else np.nan for b in range(len(bins))
    ]
    p99 = [
        float(np.percentile(lat[idx == b], 99)) if (idx == b).any() else np.nan
        for b in range(len(bins))
    ]
    fig, ax1 = plt.subplots(figsize=(9, 4.5))
    ax1.bar(
        bins, counts, width=1.0, align="edge", color="#4c72b0", alpha=0.7, label="committed tx/s"
    )
    ax1.axhline(rate, color="#4c72b0", linestyle=":", label=f"offered {rate:g} tx/s")
    ax1.axvline(duration, color="grey", linestyle="--", linewidth=0.8)
    ax1.set_xlabel("seconds since the load started (dashed: load stops)")
    ax1.set_ylabel("transactions committed per second")
    ax2 = ax1.twinx()
    ax2.plot(bins + 0.5, p50, color="#dd8452", label="p50 latency")
    ax2.plot(bins + 0.5, p99, color="#c44e52", linestyle="--", label="p99 latency")
    ax2.set_ylabel("submit-to-commit latency (s)")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    ax1.set_title("accord bench consensus: 4 validators on loopback, 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
