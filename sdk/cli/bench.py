"""``accord bench AREA``: run a benchmark and print one JSON line of its figures.

Benchmarks live in :mod:`accord.benches`; each module has ``add_arguments(parser)`` and
``run(args) -> dict``. The machine they ran on is added to every result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from typing import Any

AREAS = {
    "storage": "execute and commit signed transfers over a large state",
    "consensus": "a 4-validator network on loopback under open-loop load",
    "zk": "constraints, proving and verification per circuit",
    "mpc": "three MPC servers on loopback: mul, cmp, matmul, logistic regression",
    "light": "light-client header, state-proof and tx-proof checks",
}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print one JSON line of figures")
    areas = p.add_subparsers(dest="area", metavar="AREA", required=True)
    for area, help_text in AREAS.items():
        ap = areas.add_parser(area, help=help_text)
        ap.add_argument("--json", action="store_true", help="print only the JSON line")
        try:
            mod = importlib.import_module(f"accord.benches.{area}")
        except ModuleNotFoundError:
            continue
        mod.add_arguments(ap)
        ap.set_defaults(func=_runner(area))


def _runner(area: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        mod = importlib.import_module(f"accord.benches.{area}")
        result = {"bench": area, **mod.run(args), "machine": machine()}
        print(json.dumps(result, sort_keys=False))
        return 0

    return run
