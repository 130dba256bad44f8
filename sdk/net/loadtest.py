"""Transport load test: N validator processes on loopback gossiping transaction batches.

``python -m accord.net.loadtest --validators 4 --duration 10 --rate 5000`` starts one OS
process per validator (each with its own :class:`~accord.net.Transport`), lets each submit
``rate`` transactions per second of ``tx_size`` random bytes through ``gossip_tx`` (open loop:
a fixed schedule, whatever the receivers manage), and prints one JSON line: transactions
offered and delivered per second per validator, frames, bytes and drops. It measures the
network layer alone (no signature checks, no consensus), i.e. the ceiling the node's
transaction gossip works under. ``add_arguments``/``run`` follow the ``accord bench``
convention so that ``accord.benches`` can expose it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from accord.base.crypto import bls
from accord.base.genesis import ConsensusParams, Genesis, ValidatorInfo
from accord.net.frames import Kind
from accord.net.transport import NetConfig, Transport


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _genesis(n: int, fanout: int) -> Genesis:
    ports = _free_ports(n)
    vals = []
    for i in range(n):
        sk = bls.demo_secret(f"load-{i}")
        vals.append(
            ValidatorInfo(
                name=f"load-{i}",
                bls_public_key=bls.public_key(sk).hex(),
                pop=bls.pop_prove(sk).hex(),
                host="127.0.0.1",
                port=ports[i],
            )
        )
    return Genesis(
        chain_id="accord-net-load",
        genesis_time_ms=0,
        validators=vals,
        consensus=ConsensusParams(gossip_fanout=fanout),
    )


async def _worker(
    genesis: Genesis,
    index: int,
    duration: float,
    rate: int,
    tx_size: int,
    tls_dir: str | None = None,
) -> dict[str, Any]:
    n = genesis.n
    per_sender = [0] * n  # transactions received from each validator (no relaying here)
    ready: set[int] = set()
    done: dict[int, int] = {}
    finished: set[int] = set()

    def on_message(frm: int, kind: Kind, payload: Any) -> None:
        if kind is Kind.TX_BATCH and isinstance(payload, list):
            per_sender[frm] += len(payload)
        elif kind is Kind.CONSENSUS and isinstance(payload, dict):
            # control messages ride the reliable lane so that load cannot drop them
            if "ready" in payload:
                ready.add(frm)
            if "done" in payload and isinstance(payload["done"], int):
                done[frm] = payload["done"]
            if "finished" in payload:
                finished.add(frm)

    async def wait(cond: Any, timeout: float) -> bool:
        end = loop.time() + timeout
        while not cond():
            if loop.time() > end:
                return False
            await asyncio.sleep(0.01)
        return True

    config = NetConfig()
    if tls_dir is not None:
        config = NetConfig(
            tls_cert=f"{tls_dir}/load-{index}.crt", tls_key=f"{tls_dir}/load-{index}.key"
        )
    t = Transport(
        genesis, index, bls.demo_secret(f"load-{index}"), on_message=on_message, config=config
    )
    loop = asyncio.get_running_loop()
    await t.start()
    try:
        await t.wait_connected(timeout=30)
        t.broadcast(Kind.CONSENSUS, {"ready": index})
        if not await wait(lambda: len(ready) == n - 1, 30):
            raise RuntimeError("peers did not get ready")
        base = os.urandom(tx_size)
        start = loop.time()
        cpu0 = time.process_time()
        sent = 0
        while (now := loop.time()) - start < duration:
            due = int((now - start) * rate)
            while sent < due:
                # distinct transactions: sender and counter in the first bytes of a random body
                t.gossip_tx(index.to_bytes(2, "big") + sent.to_bytes(6, "big") + base[8:])
                sent += 1
            await asyncio.sleep(0.01)
        t.flush_txs()
        t.broadcast(Kind.CONSENSUS, {"done": sent, "from": index})
        # delivered means: every peer's transactions that fanout sends us have arrived
        full = t.config.fanout is None and genesis.consensus.gossip_fanout >= n - 1
        complete = await wait(
            lambda: (
                len(done) == n - 1 and (not full or all(per_sender[j] >= done[j] for j in done))
            ),
            30,
        )
        elapsed = loop.time() - start
        cpu_s = time.process_time() - cpu0  # this validator's CPU over the load (TLS included)
        # stop only once every peer has what we sent: a worker that stopped as soon as it had
        # its own share cut off frames still in flight toward slower peers
        t.broadcast(Kind.CONSENSUS, {"finished": index})
        await wait(lambda: len(finished) == n - 1, 30)
        await t.drain(10)
        got = sum(per_sender)
        return {
            "index": index,
            "sent": sent,
            "received": got,
            "complete": complete,
            "elapsed_s": round(elapsed, 3),
            "offered_window_s": duration,
            "received_tps": got / elapsed,
            "cpu_s": round(cpu_s, 3),
            "frames_out": t.m_frames_out.total(),
            "bytes_out": t.m_bytes_out.total(),
            "dropped": {k: v for k, v in _dropped(t).items() if v},
            "disconnects": t.m_disconnects.samples(),
            "drop_reasons": t.m_dropped.samples(),
        }
    finally:
        await t.stop()


def _dropped(t: Transport) -> dict[str, float]:
    out = {}
    for reason in ("queue_drop_oldest", "queue_full", "not_connected", "duplicate"):
        out[reason] = t.m_dropped.get(reason=reason)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--validators", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument(
        "--rate", type=int, default=5000, help="transactions per second offered by EACH validator"
    )
    p.add_argument("--tx-size", type=int, default=250)
    p.add_argument("--fanout", type=int, default=3)
    p.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="encrypted links (TLS 1.3, as validators of a new network run them; default: on)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    genesis = _genesis(args.validators, args.fanout)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "genesis.json"
        genesis.save(path)
        tls_args: list[str] = []
        if args.tls:
            from accord.net.tls import make_self_signed

            for i in range(args.validators):
                make_self_signed(
                    Path(d) / f"load-{i}.crt", Path(d) / f"load-{i}.key", name=f"load-{i}"
                )
            tls_args = ["--tls-dir", d]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "accord.net.loadtest",
                    "--worker",
                    str(i),
                    "--genesis",
                    str(path),
                    "--duration",
                    str(args.duration),
                    "--rate",
                    str(args.rate),
                    "--tx-size",
                    str(args.tx_size),
                    *tls_args,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(args.validators)
        ]
        _progress(procs, args.duration)
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=args.duration + 120)
            if p.returncode != 0:
                raise RuntimeError(f"load worker exited with {p.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    offered = args.rate * args.validators
    received = sum(r["received"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return {
        "bench": "net",
        "validators": args.validators,
        "tls": args.tls,
        "tx_size": args.tx_size,
        "fanout": args.fanout,
        "offered_tps_total": offered,
        "min_received_tps": min(r["received_tps"] for r in results),
        "mean_received_tps": sum(r["received_tps"] for r in results) / len(results),
        "cpu_s_total": round(cpu, 2),
        "cpu_us_per_tx_received": round(1e6 * cpu / received, 2) if received else None,
        "workers": results,
    }


def _progress(procs: list[subprocess.Popen[str]], duration: float) -> None:
    """A progress bar on stderr while the workers run (their JSON comes on stdout at the end)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.monotonic()
    with Progress(
        TextColumn("[bold]net load"),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("load", total=duration)
        while any(p.poll() is None for p in procs) and time.monotonic() - started < duration + 120:
            progress.update(task, completed=min(duration, time.monotonic() - started))
            time.sleep(0.25)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m accord.net.loadtest", description=__doc__.split("\n")[0]
    )
    add_arguments(p)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--genesis", help=argparse.SUPPRESS)
    p.add_argument("--tls-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        g = Genesis.load(args.genesis)
        res = asyncio.run(
            _worker(g, args.worker, args.duration, args.rate, args.tx_size, args.tls_dir)
        )
        print(json.dumps(res))
        return
    started = time.time()
    res = run(args)
    res["wall_s"] = round(time.time() - started, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
