"""``accord sim``: run the Gosig core in the deterministic simulator and print one JSON line.

Agreement time is measured per (honest validator, committed block) as the virtual time from the
nominal start of stage II of the round the block's certificate belongs to, to the moment that
validator commits it; ``agreement_s_p50``/``_p99`` are over all such pairs. Commit latency
(``commit_s_p50``/``_p99``) is measured from the nominal start of the round the block was
first proposed in: stage I (building and spreading the block) included, what a user waits.

The cost model (``--verify-cost measured``: signature checks by signer count as measured by
``accord bench aggverify``; ``--bandwidth-mbps``: each node's uplink; ``--block-txs`` and
``--tx-bytes``: block contents) is off by default, which keeps small simulations fast.

``--plot FILE.png`` sweeps node counts (``--sweep``, default 16 to 10,000) with the same
settings and draws agreement time and commit latency against node count.

``--adversary NAME`` runs the delivery-order adversary (:mod:`accord.sim.adversary`) on n = 4
(``--twins``: with one twin) instead: a seeded strategy once per seed (``--schedules`` seeds
from ``--seed``), or ``exhaustive``, the bounded Twins-style enumeration (``--schedules``
schedules from ``--start``; all by default). It prints schedules explored, violations found
and the reproducer of the first violation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

DEFAULT_SWEEP = "16,64,256,1000,3000,10000"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="simulate Gosig with a virtual network and adversaries")
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--byzantine", type=int, default=0, help="Byzantine validators (f < n/3)")
    p.add_argument(
        "--strategy", default="mixed", help="Byzantine strategy (see accord.sim.byzantine) or mixed"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rounds", type=int, default=None, help="rounds simulated (default 10; 4 with --adversary)"
    )
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument(
        "--verify-ms", type=float, default=0.0, help="virtual cost of one signature check"
    )
    p.add_argument(
        "--verify-cost",
        default="",
        help="checks charged by signer count: 'measured' "
        "(accord bench aggverify) or fixed,per_signer,weighted_fixed,per_weighted_signer,single in us",
    )
    p.add_argument(
        "--bandwidth-mbps",
        type=float,
        default=0.0,
        help="each node's uplink in Mbit/s (0: unlimited)",
    )
    p.add_argument(
        "--block-txs", type=int, default=0, help="transactions per simulated block (0: empty)"
    )
    p.add_argument(
        "--tx-bytes", type=int, default=250, help="encoded size of each simulated transaction"
    )
    p.add_argument(
        "--exec-ms", type=float, default=0.0, help="virtual time to build or validate a block"
    )
    p.add_argument(
        "--exec-us-per-tx",
        type=float,
        default=0.0,
        help="execution cost per transaction instead; leaders cut blocks by measured cost, "
        "as validators do",
    )
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--drift-ms", type=float, default=0.0)
    p.add_argument("--partition", default="none", choices=["none", "split", "isolate", "adaptive"])
    p.add_argument(
        "--heal-ms",
        type=int,
        default=0,
        help="partitions heal at this time (0: a third of the run)",
    )
    p.add_argument("--round-ms", type=int, default=0, help="0: derived from latency and node count")
    p.add_argument("--stage2-ms", type=int, default=0)
    p.add_argument("--fanout", type=int, default=3)
    p.add_argument(
        "--gossip-interval-ms",
        type=int,
        default=-1,
        help="aggregate forwarding interval (-1: the latency)",
    )
    p.add_argument(
        "--broadcast-max", type=int, default=64, help="gossip above this many validators"
    )
    p.add_argument("--crypto", default="model", choices=["model", "bls"])
    p.add_argument("--json", action="store_true", help="print only the JSON line (no progress bar)")
    p.add_argument("--plot", metavar="FILE.png", help="sweep node counts and plot agreement time")
    p.add_argument("--sweep", default=DEFAULT_SWEEP, help="node counts for --plot")
    p.add_argument(
        "--adversary",
        default=None,
        help="delivery-order adversary: late_prepare, split_order, partition, shuffle, mixed, exhaustive",
    )
    p.add_argument(
        "--schedules",
        type=int,
        default=None,
        help="--adversary: seeds to run (default 100), or exhaustive schedules (default all)",
    )
    p.add_argument(
        "--start", type=int, default=0, help="--adversary exhaustive: first schedule index"
    )
    p.add_argument(
        "--twins",
        action="store_true",
        help="--adversary: n = 4 with one twin (a Byzantine validator)",
    )
    p.add_argument(
        "--controlled-rounds", type=int, default=2, help="--adversary exhaustive: rounds enumerated"
    )
    p.add_argument(
        "--p-releases",
        default="now,end,next",
        help="--adversary exhaustive: release points of P votes",
    )
    p.add_argument(
        "--c-releases",
        default="now,later",
        help="--adversary exhaustive: release points of C votes",
    )
    p.add_argument("--sides", type=int, default=2, help="--adversary exhaustive: groups per round")
    p.add_argument(
        "--labelled",
        action="store_true",
        help="--adversary exhaustive: every labelled schedule, not one per symmetry orbit",
    )
    p.add_argument(
        "--stop-at-first", action="store_true", help="--adversary: stop at the first violation"
    )
    p.add_argument(
        "--members",
        type=_indices,
        default=[],
        metavar="I,J,...",
        help="the first validator set, as positions in the pool of --nodes (default: all)",
    )
    p.add_argument(
        "--set-change",
        type=_set_change,
        action="append",
        default=[],
        metavar="H:I,J,...",
        help="from height H on, validators I,J,... decide (repeatable; e.g. 6:0,1,2,4)",
    )
    p.add_argument(
        "--param-change",
        type=_param_change,
        action="append",
        default=[],
        metavar="H:NAME=V,...",
        help="from height H on, cores run these timing parameters (repeatable; round_ms, "
        "stage2_ms, ticket_wait_ms, gossip_fanout, skip_empty; e.g. 6:round_ms=800,stage2_ms=400)",
    )
    p.add_argument(
        "--rows",
        metavar="FILE.jsonl",
        help="with --plot: draw these saved JSON lines of accord sim "
        "(one run per line, e.g. runs made one at a time) instead of sweeping",
    )
    p.set_defaults(func=run)


def _indices(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of validator positions") from None


def _set_change(text: str) -> tuple[int, list[int]]:
    height, sep, members = text.partition(":")
    if not sep or not height.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHT:I,J,...")
    return int(height), _indices(members)


PARAM_FIELDS = ("round_ms", "stage2_ms", "ticket_wait_ms", "gossip_fanout", "skip_empty")


def _param_change(text: str) -> tuple[int, dict[str, Any]]:
    height, sep, rest = text.partition(":")
    if not sep or not height.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHT:NAME=VALUE,...")
    fields: dict[str, Any] = {}
    for item in rest.split(","):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or name not in PARAM_FIELDS:
            raise argparse.ArgumentTypeError(
                f"{item!r}: give NAME=VALUE with NAME one of {', '.join(PARAM_FIELDS)}"
            )
        if name == "skip_empty":
            if value.strip() not in ("true", "false"):
                raise argparse.ArgumentTypeError("skip_empty is true or false")
            fields[name] = value.strip() == "true"
        elif value.strip().isdigit():
            fields[name] = int(value)
        else:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, not {value!r}")
    return int(height), fields


def _config(args: argparse.Namespace, nodes: int, progress: Any = None) -> Any:
    from accord.sim import SimConfig

    return SimConfig(
        nodes=nodes,
        byzantine=args.byzantine,
        strategy=args.strategy if args.byzantine else "none",
        seed=args.seed,
        rounds=args.rounds or 10,
        latency_ms=args.latency_ms,
        verify_ms=args.verify_ms,
        exec_ms=args.exec_ms,
        exec_us_per_tx=args.exec_us_per_tx,
        loss=args.loss,
        duplicate=args.duplicate,
        drift_ms=args.drift_ms,
        partition=args.partition,
        heal_ms=args.heal_ms,
        round_ms=args.round_ms,
        stage2_ms=args.stage2_ms,
        fanout=args.fanout,
        broadcast_max=args.broadcast_max,
        gossip_interval_ms=args.gossip_interval_ms,
        verify_cost=args.verify_cost,
        bandwidth_mbps=args.bandwidth_mbps,
        block_txs=args.block_txs,
        tx_bytes=args.tx_bytes,
        crypto=args.crypto,
        progress=progress,
        members=args.members,
        set_changes=args.set_change,
        param_changes=args.param_change,
    )


def _run_one(args: argparse.Namespace, nodes: int) -> dict[str, Any]:
    from accord.sim import simulate

    t0 = time.monotonic()
    if args.json:
        result = simulate(_config(args, nodes))
    else:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn(f"sim n={nodes}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} virtual ms"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("sim", total=1)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = simulate(_config(args, nodes, progress))
    out = result.summary()
    out["wall_s"] = round(time.monotonic() - t0, 2)
    if result.violations:
        out["violations"] = result.violations
    return out


def _adversary(args: argparse.Namespace) -> int:
    from accord.sim import adversary as adv

    t0 = time.monotonic()
    name = args.adversary
    try:
        if name == "exhaustive":
            space = adv.Space(
                twins=args.twins,
                rounds=args.controlled_rounds,
                p_releases=_names(args.p_releases),
                c_releases=_names(args.c_releases),
                sides=args.sides,
                symmetric=not args.labelled,
            )
            report = adv.exhaustive(
                space,
                start=args.start,
                limit=args.schedules,
                crypto=args.crypto,
                stop_at_first=args.stop_at_first,
            )
        else:
            n = 100 if args.schedules is None else args.schedules
            report = adv.search(
                name,
                seeds=range(args.seed, args.seed + n),
                twins=args.twins,
                rounds=args.rounds or 4,
                crypto=args.crypto,
                stop_at_first=args.stop_at_first,
            )
    except ValueError as e:
        print(json.dumps({"error": str(e)}), file=sys.stderr)
        return 2
    out = report.to_obj()
    out["wall_s"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out, sort_keys=True))
    return 1 if report.violations else 0


def _names(text: str) -> tuple[str, ...]:
    from accord.sim.adversary import RELEASES

    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in names if x not in RELEASES]
    if bad or not names:
        raise ValueError(f"unknown release point(s) {bad}; choose from {', '.join(RELEASES)}")
    return names


def run(args: argparse.Namespace) -> int:
    if args.adversary:
        return _adversary(args)
    from accord.base.errors import AccordError
    from accord.sim.costs import parse_verify_cost

    try:
        parse_verify_cost(args.verify_cost)
        if args.bandwidth_mbps < 0 or args.block_txs < 0:
            raise AccordError("--bandwidth-mbps and --block-txs must not be negative")
    except AccordError as e:
        print(json.dumps({"error": str(e)}), file=sys.stderr)
        return 2
    if args.plot:
        return _plot(args)
    out = _run_one(args, args.nodes)
    print(json.dumps(out, sort_keys=True))
    return 1 if out["safety_violations"] else 0


def _plot(args: argparse.Namespace) -> int:
    from accord.benches.plotting import pyplot

    plt = pyplot()

    rows = []
    if args.rows:
        with open(args.rows) as f:
            rows = sorted(
                (json.loads(line) for line in f if line.strip()), key=lambda r: r["nodes"]
            )
    else:
        for n in [int(x) for x in args.sweep.split(",") if x.strip()]:
            row = _run_one(args, n)
            rows.append(row)
            print(json.dumps(row, sort_keys=True), file=sys.stderr)
    if not rows or any(r.get("commit_s_p50") is None for r in rows):
        print(
            json.dumps(
                {
                    "error": "a run committed nothing (or a row lacks commit latency): nothing to plot"
                }
            ),
            file=sys.stderr,
        )
        return 1
    xs = [r["nodes"] for r in rows]
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    ax.plot(
        xs,
        [r["commit_s_p50"] for r in rows],
        "o-",
        color="tab:red",
        label="commit from round start, p50",
    )
    ax.plot(
        xs,
        [r["commit_s_p99"] for r in rows],
        "s--",
        color="tab:red",
        label="commit from round start, p99",
    )
    ax.plot(
        xs,
        [r["agreement_s_p50"] for r in rows],
        "o-",
        color="tab:blue",
        label="agreement from stage II, p50",
    )
    ax.plot(
        xs,
        [r["agreement_s_p99"] for r in rows],
        "s--",
        color="tab:blue",
        label="agreement from stage II, p99",
    )
    ax.axhline(11.0, color="grey", linestyle=":", label="Gosig paper, 10,000 nodes (11 s)")
    ax.axhline(12.0, color="silver", linestyle="-.", label="Algorand, 10,000 nodes (12 s)")
    bmax = args.broadcast_max
    if any(n <= bmax for n in xs):
        ax.axvspan(min(xs) * 0.8, bmax * 1.1, color="tab:green", alpha=0.08)
        ax.text(
            min(xs),
            max(r["commit_s_p99"] or 0 for r in rows) * 0.5 + 1,
            f"broadcast mode\n(n <= {bmax})",
            fontsize=8,
            color="tab:green",
        )
    ax.set_xscale("log")
    ax.set_xlabel("validators")
    ax.set_ylabel("seconds (virtual)")
    if args.verify_cost:
        checks = f"checks by signer count ({args.verify_cost})"
    else:
        checks = f"{args.verify_ms:g} ms per signature check"
    net = f", {args.bandwidth_mbps:g} Mbit/s uplink" if args.bandwidth_mbps else ""
    blocks = (
        f", blocks of {args.block_txs} x {args.tx_bytes} B" if args.block_txs else ", empty blocks"
    )
    ax.set_title(f"latency {args.latency_ms:g} ms{net}{blocks}\n{checks}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(json.dumps({"plot": args.plot, "sweep": rows}, sort_keys=True))
    return 1 if any(r["safety_violations"] for r in rows) else 0
