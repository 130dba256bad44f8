"""``accord node DIR``: run one validator from its folder until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run one validator from its folder")
    p.add_argument("dir", type=Path, help="the validator's folder (node.json, validator.key)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(_serve(args.dir))


async def _serve(path: Path) -> int:
    from accord.node import Node
    from accord.node.collector import tune_collector

    node = Node.from_dir(path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    tune_collector()  # this process is the validator's own: rare full collections
    try:
        await stop.wait()
    finally:
        await node.stop()  # clean shutdown: LMDB closed after the last commit
    return 0
