"""The ``accord`` command.

Each command group lives in its own module under :mod:`accord.cli` and is imported only when
used, so that ``accord keys`` does not pay for NumPy or the network stack. A module provides
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the parsed
arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from accord.base.errors import AccordError

# command -> (module, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("accord.cli.init", "create genesis and node folders for N validators"),
    "keys": ("accord.cli.keys", "create and show account keys"),
    "genesis": (
        "accord.cli.genesis",
        "build genesis from member cards, check its hash, configure a member's node",
    ),
    "node": ("accord.cli.node", "run one validator from its folder"),
    "devnet": ("accord.cli.devnet", "run a local validator network with a demo workload"),
    "bench": ("accord.cli.bench", "run a benchmark and print one JSON line of figures"),
    "sim": ("accord.cli.sim", "simulate Gosig with a virtual network and adversaries"),
    "zk": ("accord.cli.zk", "build circuits, run the trusted-setup ceremony, prove and verify"),
    "regulator": ("accord.cli.regulator", "audit shielded transfers with the regulator key"),
    "mpc": ("accord.cli.mpc", "run an MPC oracle server"),
    "light": ("accord.cli.light", "a light client that verifies everything it is told"),
    "status": ("accord.cli.status", "show a node's height, head, peers and health"),
    "query": (
        "accord.cli.query",
        "read contract views, transactions, blocks and accounts from a node",
    ),
    "send": (
        "accord.cli.send",
        "sign a transaction with a key file, submit it and wait for its receipt",
    ),
    "gov": ("accord.cli.gov", "propose, approve and list governance decisions"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accord", description="Accord consortium ledger SDK")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Import only the module of the command asked for; list the rest by their help line.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if name == wanted:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except AccordError as e:
        print(f"accord: error: {e.code}: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
