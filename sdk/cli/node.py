"""``accord node DIR``: run one validator from its folder until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from accord.base.errors import ValidationError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run one validator from its folder")
    p.add_argument(
        "dir",
        type=Path,
        help="the validator's folder (node.json, validator.key); or `backup` "
        "(then: DIR DEST, a consistent copy of DIR's data folder, running or not) or `restore` "
        "(then: BACKUP DIR, into DIR's empty data folder, checked, then verified)",
    )
    p.add_argument(
        "paths",
        type=Path,
        nargs="*",
        metavar="PATH",
        help="for backup: the validator's folder and the new backup folder; for restore: the "
        "backup folder and the validator's folder",
    )
    p.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    p.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=os.environ.get("ACCORD_EVENT_LOOP", "asyncio"),
        help="the validator's event loop: asyncio's own, uvloop (the `fast` extra), or auto "
        "(uvloop when installed); default $ACCORD_EVENT_LOOP or asyncio (uvloop: about 10% "
        "less validator CPU per transaction at moderate load, docs/benchmarks.md)",
    )
    p.add_argument(
        "--lifeline",
        type=int,
        default=None,
        metavar="FD",
        help="stop cleanly when this inherited pipe closes (used by supervisors such as "
        "accord devnet, so that a validator never outlives the process that started it)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="do not start: check the stopped validator's data folder (every block against its "
        "header, certificate and receipts, every state entry against the state root), print one "
        "JSON line and exit 0 if it is intact, 1 if damaged",
    )
    p.set_defaults(func=_run)


def _verify(path: Path) -> int:
    """``accord node DIR --verify``: a full check of a validator's store (see accord.storage.verify)."""
    import json

    from accord.base.genesis import Genesis
    from accord.consensus import verify_certificate
    from accord.node.config import NodeConfig
    from accord.storage import Store
    from accord.storage.lock import FolderLock
    from accord.storage.verify import verify_store

    config = NodeConfig.load(path)
    genesis = Genesis.load(path / config.genesis)
    keys = genesis.validator_keys()
    data = path / config.data_dir
    if not (data / "data.mdb").exists():
        print(json.dumps({"ok": False, "problems": [f"{data} holds no store"]}))
        return 1
    with FolderLock(data), Store(data, sync=False) as store:  # refused while the validator runs
        report = verify_store(
            store, lambda c: verify_certificate(keys, genesis.chain_id, c, genesis.quorum)
        )
    print(json.dumps(report.to_json()))
    return 0 if report.ok else 1


def _run(args: argparse.Namespace) -> int:
    if str(args.dir) in ("backup", "restore") and not (args.dir / "node.json").exists():
        from accord.cli.backup import run

        return run(str(args.dir), args.paths)
    if args.paths:
        raise ValidationError(
            f"unexpected arguments {' '.join(map(str, args.paths))} (see accord node --help)"
        )
    if args.verify:
        return _verify(args.dir)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    return run_loop(_serve(args.dir, args.lifeline), args.event_loop)


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def resolve_event_loop(choice: str) -> str:
    """``asyncio`` or ``uvloop``: what ``--event-loop CHOICE`` runs on this machine."""
    if choice not in EVENT_LOOPS:
        raise ValidationError(f"unknown event loop {choice!r} (one of {', '.join(EVENT_LOOPS)})")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ValidationError(
                "--event-loop uvloop needs uvloop (pip install 'accord[fast]')"
            ) from None
        return "asyncio"
    return "uvloop"


def run_loop(main: Coroutine[Any, Any, int], event_loop: str) -> int:
    """Run the validator on the chosen event loop.

    The loop is only the scheduler of the node's callbacks and sockets: what runs, and in
    which order each connection's bytes arrive, is the same on both, and nothing the
    consensus core decides depends on the loop (it has no clock or I/O of its own). uvloop
    (libuv) spends less CPU per socket event and timer than asyncio's pure-Python loop."""
    if resolve_event_loop(event_loop) == "uvloop":
        import uvloop

        return int(uvloop.run(main))
    return asyncio.run(main)


HARD_STOP_S = 30.0
"""After the supervisor is gone, a clean stop that takes longer than this ends the process."""


async def _serve(path: Path, lifeline: int | None = None) -> int:
    from accord.node import Node
    from accord.node.collector import tune_collector
    from accord.storage.lock import watch_lifeline

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if lifeline is not None:

        def orphaned() -> None:
            logging.getLogger("accord.node").warning("supervisor gone (lifeline closed): stopping")
            loop.call_soon_threadsafe(stop.set)
            timer = threading.Timer(HARD_STOP_S, os._exit, (1,))
            timer.daemon = True
            timer.start()

        watch_lifeline(lifeline, orphaned)
    node = Node.from_dir(path)  # node.json's peers apply there
    await node.start()
    tune_collector()  # this process is the validator's own: rare full collections
    try:
        await stop.wait()
    finally:
        await node.stop()  # clean shutdown: LMDB closed after the last commit
    return 0
