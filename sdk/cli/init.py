"""``accord init``: genesis and node folders for N validators, keys included."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from accord.base.genesis import ConsensusParams
from accord.node.config import init_network


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create genesis and node folders for N validators")
    p.add_argument("dir", type=Path, help="network folder to create")
    p.add_argument(
        "--validators", type=int, default=4, help="members of the consortium (default 4)"
    )
    p.add_argument(
        "--chain-id", default="accord-devnet", help="the chain's name, in every signature"
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=26650,
        help="validator transport port of the first member (+1 each)",
    )
    p.add_argument(
        "--base-api-port",
        type=int,
        default=8650,
        help="client API port of the first member (+1 each)",
    )
    p.add_argument("--accounts", type=int, default=100, help="demo accounts funded in genesis")
    p.add_argument("--round-ms", type=int, default=1000, help="round length, ms (default 1000)")
    p.add_argument(
        "--stage2-ms", type=int, default=500, help="agreement stage of each round, ms (default 500)"
    )
    p.add_argument("--genesis-time-ms", type=int, default=None, help="default: now")
    p.add_argument(
        "--skip-empty-blocks",
        action="store_true",
        help="leaders propose only with transactions pending: an idle chain makes no empty "
        "blocks (consensus.skip_empty_blocks in genesis)",
    )
    p.add_argument(
        "--no-p2p-tls",
        dest="p2p_tls",
        action="store_false",
        help="plaintext validator links (default: TLS, with a link certificate per validator)",
    )
    p.add_argument(
        "--api-tls",
        action="store_true",
        help="serve each client API over https with a self-signed certificate (api-tls.crt)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import time

    g = init_network(
        args.dir,
        validators=args.validators,
        chain_id=args.chain_id,
        genesis_time_ms=args.genesis_time_ms
        if args.genesis_time_ms is not None
        else int(time.time() * 1000),
        base_port=args.base_port,
        base_api_port=args.base_api_port,
        demo_accounts=args.accounts,
        consensus=ConsensusParams(
            round_ms=args.round_ms,
            stage2_ms=args.stage2_ms,
            skip_empty_blocks=args.skip_empty_blocks,
        ),
        p2p_tls=args.p2p_tls,
        api_tls=args.api_tls,
    )
    print(
        json.dumps(
            {
                "dir": str(args.dir),
                "chain_id": g.chain_id,
                "validators": g.n,
                "genesis_hash": g.hash.hex(),
                "p2p_tls": args.p2p_tls,
                "api_tls": args.api_tls,
            }
        )
    )
    return 0
