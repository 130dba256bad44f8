"""``accord mpc``: run one MPC oracle server, or make a server key.

``accord mpc keygen --out KEY`` writes a fresh X25519 key (hex, mode 0600) and prints its
public half for the cluster file. ``accord mpc serve --index I --cluster FILE --key KEY``
starts server I of the cluster (a JSON file listing the three servers' host, port and
public key, and the registered ``clients``: name, public_key, optional quota_mb and
connections) and serves until interrupted; ``--data DIR`` keeps its shares in LMDB there
(reloaded when it restarts); with ``--node URL --account FILE`` it also follows
that validator's committed blocks and answers the oracle requests in them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from accord.base.errors import MpcError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mpc", help="run an MPC oracle server")
    cmds = p.add_subparsers(dest="mpc_command", metavar="CMD", required=True)
    s = cmds.add_parser("serve", help="run one of the three MPC servers")
    s.add_argument("--index", type=int, required=True, choices=[0, 1, 2])
    s.add_argument("--cluster", required=True, help="JSON file: servers [{host, port, public_key}]")
    s.add_argument("--key", required=True, help="this server's X25519 private key (hex file)")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a peer")
    s.add_argument("--frac-bits", type=int, default=16)
    s.add_argument("--node", help="also answer oracle requests: the node's API URL to follow")
    s.add_argument("--account", help="with --node: this server's account key file (signs answers)")
    s.add_argument(
        "--max-store-mb", type=int, default=2048, help="memory for stored shares, all clients"
    )
    s.add_argument(
        "--max-client-mb",
        type=int,
        default=512,
        help="memory for stored shares, per identity (unless its entry sets quota_mb)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=4,
        help="connections at once, per identity (unless its entry sets connections)",
    )
    s.add_argument(
        "--data",
        help="folder for stored shares and grants (LMDB); without it they "
        "live in memory only and a restart loses them",
    )
    s.add_argument(
        "--malicious",
        default=None,
        metavar="PROGRAMS",
        help="programs run with security with abort against a malicious server, comma-"
        "separated ('none': no program); default: anti_stacking",
    )
    s.set_defaults(func=serve)
    k = cmds.add_parser("keygen", help="create a server key")
    k.add_argument("--out", required=True)
    k.set_defaults(func=keygen)


def load_cluster(path: str | Path) -> list[Any]:
    from accord.mpc.server import ServerInfo

    data = json.loads(Path(path).read_text())
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, list) or len(servers) != 3:
        raise MpcError("the cluster file lists exactly three servers")
    return [
        ServerInfo(str(s["host"]), int(s["port"]), bytes.fromhex(s["public_key"])) for s in servers
    ]


def load_clients(path: str | Path, *, quota_bytes: int, max_connections: int) -> dict[bytes, Any]:
    """The identities the consortium registered (required: quotas are per identity)."""
    from accord.mpc.registry import parse_clients

    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "clients" not in data:
        raise MpcError(
            "the cluster file registers no clients: list the client identities "
            "(name, public_key) the servers may serve"
        )
    return parse_clients(data["clients"], quota_bytes=quota_bytes, max_connections=max_connections)


def keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from accord.mpc.channel import private_bytes, public_bytes

    key = X25519PrivateKey.generate()
    out = Path(args.out)
    out.write_text(private_bytes(key).hex())
    os.chmod(out, 0o600)
    print(public_bytes(key).hex())
    return 0


def malicious_programs(spec: str | None) -> list[str] | None:
    """``--malicious``: None keeps the default set, 'none' (or '') checks no program."""
    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    return [] if names == ["none"] else names


def serve(args: argparse.Namespace) -> int:
    from accord.base.heap import keep_freed_memory
    from accord.mpc.channel import private_from_bytes
    from accord.mpc.ring import FixedPoint
    from accord.mpc.server import MpcServer

    keep_freed_memory()  # the protocols' megabyte arrays reuse pages instead of faulting them in
    servers = load_cluster(args.cluster)
    clients = load_clients(
        args.cluster, quota_bytes=args.max_client_mb << 20, max_connections=args.max_connections
    )
    key = private_from_bytes(bytes.fromhex(Path(args.key).read_text().strip()))
    server = MpcServer(
        args.index,
        servers,
        key,
        fp=FixedPoint(args.frac_bits),
        timeout=args.timeout,
        max_store_bytes=args.max_store_mb << 20,
        max_client_bytes=args.max_client_mb << 20,
        malicious=malicious_programs(args.malicious),
        clients=clients,
        data_dir=args.data,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.start()
    print(
        f"mpc server {args.index} listening on {servers[args.index].host}:{servers[args.index].port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        if args.node:
            watch_node(server, args)
        else:
            server.serve_forever()
    finally:
        server.stop()
    return 0


def watch_node(server: Any, args: argparse.Namespace) -> None:
    """Answer the oracle requests of a node's committed blocks (see accord.mpc.oracle)."""
    from accord.base.crypto.ed25519 import AccountKey
    from accord.client import Client
    from accord.mpc.oracle import OracleWorker

    if not args.account:
        raise MpcError("--node needs --account (the key that signs this server's answers)")
    account = AccountKey.load(args.account)
    with Client(args.node) as client:
        worker = OracleWorker(server, account, client.genesis())
        worker.watch(client)
