"""``accord light sync|header|tx|state|shielded``: the light client from the command line.

Every command prints what it verified and against which certified header (``--json``: one
JSON document). The trusted state lives in ``--store`` (default
``~/.cache/accord/light/<chain id>.json``), so ``accord light tx`` after ``accord light sync``
does not re-sync. Nodes default to the validators' API addresses in the genesis file; they are
untrusted: a node that serves something false is reported, with the failed check, and skipped.
Exit status: 0 verified, 1 an error (a lying node only, or no node could answer), 3 fork
evidence (the client has stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from accord.base.errors import ForkDetected, NodeLied, ValidationError
from accord.base.genesis import Genesis


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("light", help="a light client that verifies everything it is told")
    cmds = p.add_subparsers(dest="light_cmd", metavar="ACTION", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--genesis", type=Path, default=Path("genesis.json"), help="the trusted genesis file"
        )
        sp.add_argument(
            "--node",
            action="append",
            default=[],
            metavar="URL",
            help="an untrusted node's API URL (repeat for several; default: the validator folders next to genesis.json, as accord init makes them)",
        )
        sp.add_argument("--store", type=Path, default=None, help="the trusted-state file")
        sp.add_argument("--timeout", type=float, default=10.0, help="seconds per request to a node")
        sp.add_argument(
            "--ca-file",
            type=Path,
            default=None,
            help="for https nodes: the CA (or the node's own certificate) to check them against",
        )
        sp.add_argument(
            "--cert-sha256",
            default=None,
            metavar="HEX",
            help="for https nodes: the SHA-256 pin of their certificate (instead of a CA)",
        )
        sp.add_argument("--json", action="store_true", help="print one JSON document")

    s = cmds.add_parser("sync", help="verify headers up to the nodes' newest certified one")
    common(s)
    s.add_argument(
        "--skip",
        action="store_true",
        help="check only the newest header's certificate (assumes a fixed validator set)",
    )
    s.set_defaults(func=_sync)

    h = cmds.add_parser("header", help="verify the header at HEIGHT")
    common(h)
    h.add_argument("height", type=int)
    h.set_defaults(func=_header)

    t = cmds.add_parser("tx", help="verify a committed transaction and its receipt")
    common(t)
    t.add_argument("hash", help="transaction hash (hex)")
    t.set_defaults(func=_tx)

    st = cmds.add_parser("state", help="verify a contract state value, or that it is absent")
    common(st)
    st.add_argument("contract")
    st.add_argument("key")
    st.add_argument(
        "--key-type",
        choices=["hex", "str"],
        default="hex",
        help="KEY is hex bytes (default) or a str key",
    )
    st.set_defaults(func=_state)

    z = cmds.add_parser(
        "shielded", help="verify a shielded-pool transaction and re-check its Groth16 proof"
    )
    common(z)
    z.add_argument("hash", help="transaction hash (hex)")
    z.add_argument(
        "--vk",
        action="append",
        default=[],
        metavar="FILE",
        help="a verification key JSON governance registered after genesis (register_circuit); "
        "repeat for more: the proof is checked against the key in force at its height",
    )
    z.set_defaults(func=_shielded)


def _local_nodes(path: Path, genesis: Genesis) -> list[str]:
    """Default nodes when none is named: genesis names no address, so those of a network
    folder ``accord init`` made (validator folders next to genesis.json), else an older
    genesis's legacy API addresses. The client trusts none of them either way."""
    from accord.node.config import NodeConfig

    urls = []
    for v in genesis.validators:
        folder = path.parent / v.name
        if (folder / "node.json").exists():
            cfg = NodeConfig.load(folder)
            if cfg.api_port:
                scheme = "https" if cfg.api_tls is not None else "http"
                urls.append(f"{scheme}://{cfg.api_host}:{cfg.api_port}")
        elif v.api_port:
            urls.append(f"http://{v.host or '127.0.0.1'}:{v.api_port}")
    return urls


def _client(args: argparse.Namespace) -> Any:
    from accord.light import LightClient

    genesis = Genesis.load(args.genesis)
    nodes = list(args.node) or _local_nodes(Path(args.genesis), genesis)
    if not nodes:
        raise ValidationError("genesis names no node addresses: pass --node URL (repeat)")
    store = args.store
    if store is None:
        base = Path(os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord")
        store = base / "light" / f"{genesis.chain_id}.json"
    return LightClient(
        genesis,
        nodes,
        store=store,
        timeout=args.timeout,
        ca_file=args.ca_file,
        cert_sha256=args.cert_sha256,
        verification_keys=[_load_vk(path) for path in getattr(args, "vk", [])],
    )


def _load_vk(path: str) -> Any:
    try:
        vk = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read the verification key {path}: {e}") from None
    if not isinstance(vk, dict):
        raise ValidationError(f"{path} is not a verification key (a JSON object)")
    return vk


def _hash(text: str) -> bytes:
    from accord.base.errors import DecodeError

    try:
        h = bytes.fromhex(text)
    except ValueError:
        raise DecodeError("the hash must be hex") from None
    if len(h) != 32:
        raise DecodeError("a hash has 32 bytes")
    return h


def _run(args: argparse.Namespace, work: Any) -> int:
    """Run ``work(client) -> dict`` and print it; lies and forks print as errors."""
    try:
        with _client(args) as lc:
            doc = work(lc)
            doc["faults"] = [
                {"node": f.node, "check": f.check, "message": f.message} for f in lc.faults
            ]
    except ForkDetected as e:
        print(
            json.dumps({"error": e.to_json(), "evidence": e.evidence})
            if args.json
            else f"FORK: {e.message}\nevidence: {json.dumps(e.evidence, indent=2)}",
            file=sys.stderr,
        )
        return 3
    except NodeLied as e:
        print(
            json.dumps({"error": {**e.to_json(), "node": e.node, "check": e.check}})
            if args.json
            else f"NOT VERIFIED: {e.message}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(doc))
    else:
        _print_human(doc)
    return 0


def _print_human(doc: dict[str, Any]) -> None:
    faults = doc.pop("faults", [])
    verified = doc.pop("verified", None)
    for k, v in doc.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        print(f"{k:<22} {v}")
    if verified:
        print(f"{'verified':<22} " + ", ".join(verified))
    for f in faults:
        print(f"LYING NODE {f['node']}: {f['check']}: {f['message']}")


def _sync(args: argparse.Namespace) -> int:
    def work(lc: Any) -> dict[str, Any]:
        report = lc.sync(skip=args.skip)
        head = lc.head
        doc = report.to_json()
        if head is not None:
            doc.update(head_hash=head.hash.hex(), state_root=head.header.state_root.hex())
        doc["verified"] = (
            ["certificate"]
            if args.skip
            else ["certificate", "header_chain", "header_height", "header_time"]
        )
        return doc

    return _run(args, work)


def _header(args: argparse.Namespace) -> int:
    def work(lc: Any) -> dict[str, Any]:
        t = lc.header(args.height)
        h = t.header
        signers = None
        if t.certificate is not None:
            from accord.consensus import certificate_signers

            signers = len(certificate_signers(t.certificate, lc.inner.genesis.n))
        return {
            "height": h.height,
            "hash": h.hash.hex(),
            "parent_hash": h.parent_hash.hex(),
            "state_root": h.state_root.hex(),
            "tx_root": h.tx_root.hex(),
            "tx_count": h.tx_count,
            "time_ms": h.time_ms,
            "certificate_signers": signers,
            "verified": ["certificate"] if signers is not None else ["header_chain"],
        }

    return _run(args, work)


def _tx(args: argparse.Namespace) -> int:
    return _run(args, lambda lc: lc.verify_tx(_hash(args.hash)).to_json())


def _state(args: argparse.Namespace) -> int:
    from accord.base.errors import DecodeError

    key: str | bytes = args.key
    if args.key_type == "hex":
        try:
            key = bytes.fromhex(args.key)
        except ValueError:
            raise DecodeError("KEY must be hex (or pass --key-type str)") from None
    return _run(args, lambda lc: lc.verify_state(args.contract, key).to_json())


def _shielded(args: argparse.Namespace) -> int:
    return _run(args, lambda lc: lc.verify_shielded(_hash(args.hash)).to_json())
