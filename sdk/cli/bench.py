"""``accord bench AREA``: run a benchmark and print one JSON line of its figures.

Benchmarks live in :mod:`accord.benches`; each module has ``add_arguments(parser)`` and
``run(args) -> dict``. The machine they ran on, and how fast it was just before and after
(:func:`speed_probe`), is added to every result.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import timeit
from typing import Any

AREAS = {
    "storage": "execute and commit signed transfers over a large state",
    "consensus": "a 4-validator network on loopback under open-loop load",
    "net": "the validator transport alone: transaction gossip between processes, TLS or plaintext",
    "zk": "constraints, proving and verification per circuit",
    "mpc": "three MPC servers on loopback: mul, cmp, matmul, logistic regression",
    "light": "light-client header, state-proof and tx-proof checks",
    "aggverify": "BLS vote-aggregate verification cost by signer count (the simulator's cost model)",
    "statesync": "a joining node takes a state of N accounts by snapshot: build, transfer, verify and install",
}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
    }


def speed_probe() -> dict[str, int]:
    """How fast this machine is right now, in two single-core operations every benchmark
    leans on: SHA-256 of 100 bytes and an Ed25519 check, per second.

    Machines of the same kind here have differed by 2-4x between days and drifted by a
    quarter within an hour (a shared host), so a figure means little without the speed it
    was taken at. The probe runs before and after each benchmark; it uses one core briefly
    (``timeit``'s autorange: at least 0.2 s per operation)."""
    from accord.base.crypto.ed25519 import AccountKey, verify

    data = b"\x5a" * 100
    key = AccountKey.from_name("speed-probe")
    sig, public_key = key.sign(data), key.public_key

    def rate(fn: Any) -> int:
        n, seconds = timeit.Timer(fn).autorange()
        return round(n / seconds)

    return {
        "sha256_100b_per_s": rate(lambda: hashlib.sha256(data).digest()),
        "ed25519_verify_per_s": rate(lambda: verify(public_key, data, sig)),
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
        before = speed_probe()
        result = {"bench": area, **mod.run(args)}
        after = speed_probe()
        # A bench whose figure only means something against the machine's speed derives it
        # from the probes here (e.g. consensus: its signature-check limit).
        relate = getattr(mod, "relate_to_probe", None)
        if relate is not None:
            result.update(relate(result, before, after))
        result["machine"] = {**machine(), "speed_before": before, "speed_after": after}
        print(json.dumps(result, sort_keys=False))
        return 0

    return run
