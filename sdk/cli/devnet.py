"""``accord devnet``: a local validator network doing real work.

Creates (or reuses) a network folder, starts each validator as its own OS process on loopback
with its own LMDB, drives signed token transfers at them and shows live height, throughput and
latency until Ctrl-C. With ``--blocks N --json`` it stops after N committed blocks and prints
one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from accord.base.errors import AccordError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devnet", help="run a local validator network with a demo workload")
    p.add_argument(
        "--dir", type=Path, default=Path(".devnet"), help="network folder (created if missing)"
    )
    p.add_argument(
        "--validators", type=int, default=4, help="validators in a new network (default 4)"
    )
    p.add_argument("--rate", type=float, default=200.0, help="transfers per second submitted")
    p.add_argument("--blocks", type=int, default=None, help="stop after this many committed blocks")
    p.add_argument(
        "--round-ms",
        type=int,
        default=1000,
        help="round length of a new network, ms (default 1000)",
    )
    p.add_argument(
        "--stage2-ms",
        type=int,
        default=500,
        help="length of a round's agreement stage in a new network, ms (default 500)",
    )
    p.add_argument("--fresh", action="store_true", help="delete the network folder first")
    p.add_argument(
        "--no-p2p-tls",
        dest="p2p_tls",
        action="store_false",
        help="plaintext validator links in a new network (default: TLS)",
    )
    p.add_argument(
        "--api-tls",
        action="store_true",
        help="serve each validator's client API over https (a self-signed certificate per "
        "validator; the devnet trusts the bundle it writes to DIR/api-ca.pem)",
    )
    p.add_argument(
        "--demo-governance",
        action="store_true",
        help="while the load runs, the members vote: deploy a contract, add a fifth "
        "validator (set up in a folder of its own), upgrade the contract, remove a genesis "
        "validator; then every head must agree (accord.devnet_governance)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.fresh and args.dir.exists():
        shutil.rmtree(args.dir)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from accord.devnet import Devnet, Load, _last_error, devnet_summary, ensure_network

    console = Console(stderr=True)
    genesis = ensure_network(
        args.dir,
        validators=args.validators,
        round_ms=args.round_ms,
        stage2_ms=args.stage2_ms,
        p2p_tls=args.p2p_tls,
        api_tls=args.api_tls,
    )
    if args.demo_governance:
        from accord.devnet_governance import prepare

        prepare(args.dir, genesis)  # code installed and the newcomer's folder, before any start
    net = Devnet(args.dir, genesis)
    console.print(
        f"[bold]Accord devnet[/] {genesis.chain_id}: {genesis.n} validators in {args.dir}"
    )
    console.print("client APIs: " + ", ".join(v.api_url for v in net.validators))
    if net.ca_file is not None:
        console.print(
            f"https: trust {net.ca_file} (e.g. curl --cacert {net.ca_file} URL/v1/status)"
        )
    demo_task: asyncio.Task[list[dict[str, Any]]] | None = None
    if args.demo_governance:
        from accord.devnet_governance import GovernanceDemo, run_demo

        demo = GovernanceDemo(net, genesis, lambda line: console.print(line))
        demo.add_newcomer()
    net.start()
    load: Load | None = None
    tasks: list[asyncio.Task[Any]] = []
    started = time.monotonic()
    try:
        await net.wait_ready()
        start_height = min(s["height"] for s in await net.statuses() if s)
        load = Load(
            genesis, [v.api_url for v in net.validators], rate=args.rate, ca_file=net.ca_file
        )
        await load.init_nonces()
        started = time.monotonic()
        if args.demo_governance:
            demo_task = asyncio.create_task(run_demo(demo))
        tasks = [
            asyncio.create_task(load.run()),
            asyncio.create_task(load.watch(net.validators[0].api_url)),
        ]

        def table(statuses: list[dict[str, Any] | None]) -> Table:
            t = Table(
                title=f"{genesis.chain_id} — {time.monotonic() - started:5.1f} s", expand=False
            )
            for col in ("validator", "height", "head", "round", "peers", "mempool"):
                t.add_column(col)
            for v, s in zip(net.validators, statuses, strict=True):
                if s is None:
                    t.add_row(v.name, "down", "", "", "", "")
                else:
                    t.add_row(
                        v.name,
                        str(s["height"]),
                        s["head_hash"][:12],
                        str(s["round"]),
                        str(len(s["peers"])),
                        str(s["mempool"]),
                    )
            summary = load.stats.summary(max(time.monotonic() - started, 1e-9)) if load else {}
            t.caption = (
                f"committed {summary.get('txs_committed', 0)} txs · {summary.get('tps', 0)} tps · "
                f"p50 latency {summary.get('p50_latency_s')} s · submitted {summary.get('submitted', 0)}"
            )
            return t

        height = start_height
        with Live(
            table(await net.statuses()), console=console, refresh_per_second=4, transient=args.json
        ) as live:
            while True:
                await asyncio.sleep(0.5)
                statuses = await net.statuses()
                live.update(table(statuses))
                heights = [s["height"] for s in statuses if s]
                if heights:
                    height = max(heights)
                blocks_done = args.blocks is not None and height - start_height >= args.blocks
                if demo_task is not None and demo_task.done():
                    demo_task.result()  # a failed step stops the devnet, named
                    if blocks_done or args.blocks is None:
                        break
                elif demo_task is None and blocks_done:
                    break
                for v in net.validators:
                    if not v.alive:
                        raise RuntimeError(
                            f"{v.name} exited{_last_error(v.dir / 'node.log')}; "
                            f"see {v.dir / 'node.log'}"
                        )
        load.stop()
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # let the watcher see the last commits of submitted txs
        heads = await net.converged_heads()
        statuses = await net.statuses()
        height = max(s["height"] for s in statuses if s)
        result = devnet_summary(genesis, heads, height, load.stats, elapsed)
        result.pop("pid", None)
        if demo_task is not None:
            result["governance"] = demo_task.result()
            result["heads_agree"] = len(set(heads.values())) == 1
        if args.json:
            print(json.dumps(result))
        else:
            console.print(result)
        return 0 if len(set(heads.values())) == 1 else 1
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, AccordError) as e:
        print(f"accord devnet: {e}", file=sys.stderr)
        return 1
    finally:
        if load is not None:
            load.stop()
        if demo_task is not None and not demo_task.done():
            demo_task.cancel()
        for t in tasks:
            t.cancel()
        for t in tasks:
            # shutting down: the tasks' errors were reported already
            with contextlib.suppress(BaseException):
                await t
        net.stop()
