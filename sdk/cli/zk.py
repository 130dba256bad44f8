"""``accord zk ...``: build circuits, run the ceremony, prove and verify.

    accord zk build [--circuit shielded_transfer|anti_stacking|all] [--file my.circom]
                    [--depth 32] [--lenders 6]
    accord zk ceremony --power 15 --members bank-a,bank-b,regulator [--circuit ...]
                       [--file my.circom] [--beacon HEX] [--dir FOLDER] [--seed S]
                       [--genesis genesis.json] [--regulator-public X,Y]
    accord zk prove --circuit NAME --input input.json --out proof.json  (same key options)
    accord zk verify --vk vk.json|--genesis genesis.json --circuit NAME --proof proof.json
                     --public public.json [--fast]

The ceremony writes each circuit's verification key into genesis (``zk_circuits``) when given
``--genesis``, together with the tree depth and the regulator's public key (``zk_params``).
Everything slow is cached (``$ACCORD_CACHE`` or ``~/.cache/accord``) and resumable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ValidationError


def _circuit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--circuit", default="all",
                   help="shielded_transfer, anti_stacking or all (default)")
    p.add_argument("--file", action="append", default=[],
                   help="a .circom file of your own with `component main` (repeatable)")
    p.add_argument("--depth", type=int, default=None, help="tree depth (default 32)")
    p.add_argument("--lenders", type=int, default=None, help="anti-stacking slots (default 6)")


def _ceremony_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--power", type=int, default=15, help="2^power constraints (default 15)")
    p.add_argument("--members", default="member-1,member-2,member-3",
                   help="comma-separated contributors, in order")
    p.add_argument("--beacon", default=None, help="32-byte hex beacon (a public random value)")
    p.add_argument("--seed", default=None, help="deterministic entropy: tests and demos ONLY")
    p.add_argument("--dir", default=None, help="ceremony folder (default: in the cache)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zk", help="build circuits, run the trusted-setup ceremony, prove, verify")
    cmds = p.add_subparsers(dest="zk_cmd", metavar="CMD", required=True)

    b = cmds.add_parser("build", help="compile circuits (r1cs + wasm) into the cache")
    _circuit_args(b)
    b.set_defaults(func=_build)

    c = cmds.add_parser("ceremony", help="phase 1 + phase 2 with several members, resumable")
    _circuit_args(c)
    _ceremony_args(c)
    c.add_argument("--genesis", help="write the verification keys into this genesis.json")
    c.add_argument("--regulator-public", help="the regulator's key X,Y (accord regulator keygen)")
    c.set_defaults(func=_ceremony)

    pr = cmds.add_parser("prove", help="prove with a circuit's keys from the ceremony")
    _circuit_args(pr)
    _ceremony_args(pr)
    pr.add_argument("--input", required=True, help="circuit input JSON")
    pr.add_argument("--out", required=True, help="proof JSON (proof, public, compressed hex)")
    pr.set_defaults(func=_prove)

    v = cmds.add_parser("verify", help="verify a proof (pure Python, or --fast with snarkjs)")
    v.add_argument("--circuit", required=True)
    v.add_argument("--vk", help="verification key JSON")
    v.add_argument("--genesis", help="take the verification key from this genesis")
    v.add_argument("--proof", required=True, help="proof JSON (from prove) or snarkjs proof")
    v.add_argument("--public", help="public inputs JSON (default: from the proof file)")
    v.add_argument("--fast", action="store_true", help="use the snarkjs worker")
    v.set_defaults(func=_verify)


def specs(args: argparse.Namespace) -> list[Any]:
    from ..zk import build as zb

    out = []
    names = [] if args.circuit in ("", "none") else (
        ["shielded_transfer", "anti_stacking"] if args.circuit == "all" else args.circuit.split(","))
    if args.file and args.circuit == "all":
        names = []
    for n in names:
        if n == "shielded_transfer":
            out.append(zb.transfer_spec(args.depth or zb.TRANSFER_DEPTH))
        elif n == "anti_stacking":
            out.append(zb.anti_stacking_spec(args.lenders or zb.ANTI_STACKING_LENDERS))
        else:
            raise ValidationError(f"unknown circuit {n!r}: use --file for your own circuits")
    for f in args.file:
        out.append(zb.file_spec(Path(f)))
    return out


def _build(args: argparse.Namespace) -> int:
    from ..zk import build as zb

    for spec in specs(args):
        built = zb.build(spec)
        info = built.info
        print(json.dumps({"circuit": spec.name, "constraints": info["constraints"],
                          "public_inputs": info["public_inputs"],
                          "power": zb.power_for(info["constraints"], info["public_inputs"]),
                          "r1cs": str(built.r1cs), "wasm": str(built.wasm)}))
    return 0


def _params(args: argparse.Namespace) -> Any:
    from ..zk.ceremony import DEFAULT_BEACON, CeremonyParams

    members = tuple(m.strip() for m in args.members.split(",") if m.strip())
    return CeremonyParams(power=args.power, members=members, beacon=args.beacon or DEFAULT_BEACON,
                          seed=args.seed)


def _keys(args: argparse.Namespace, progress: Any = None) -> list[Any]:
    from ..zk.artifacts import setup_circuit

    params = _params(args)
    folder = Path(args.dir) if args.dir else None
    return [setup_circuit(s, params, folder=folder, progress=progress) for s in specs(args)]


def _ceremony(args: argparse.Namespace) -> int:
    from ..zk.ceremony import RichProgress

    with RichProgress() as progress:
        keys = _keys(args, progress)
    for k in keys:
        print(json.dumps({"circuit": k.name, "constraints": k.constraints, "zkey": str(k.zkey)}))
    if args.genesis:
        from ..genesis import Genesis

        g = Genesis.load(args.genesis)
        circuits = dict(g.zk_circuits)
        params = dict(g.zk_params)
        for k in keys:
            circuits[k.name] = k.vk
            extra = k.built.spec.extra
            if k.name == "shielded_transfer":
                params["shielded_pool"] = {**dict(params.get("shielded_pool") or {}),
                                           "depth": extra["depth"]}
            if k.name == "anti_stacking":
                params["loans"] = {**dict(params.get("loans") or {}), "slots": extra["lenders"]}
        if args.regulator_public:
            from ..zk.babyjub import check_key

            x, y = (int(v) for v in args.regulator_public.split(","))
            check_key((x, y), "the regulator key")
            params["regulator"] = [str(x), str(y)]
        g.model_copy(update={"zk_circuits": circuits, "zk_params": params}).save(args.genesis)
        print(f"verification keys written to {args.genesis}", file=sys.stderr)
    return 0


def _prove(args: argparse.Namespace) -> int:
    from ..zk import groth16

    keys = _keys(args)
    if len(keys) != 1:
        raise ValidationError("prove one circuit: pass --circuit NAME or one --file")
    try:
        inputs = json.loads(Path(args.input).read_text())
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read {args.input}: {e}") from None
    proof, public = keys[0].prove(inputs)
    Path(args.out).write_text(json.dumps({
        "circuit": keys[0].name, "proof": proof, "public": [str(x) for x in public],
        "compressed": groth16.compress_proof(proof).hex()}, indent=2) + "\n")
    print(json.dumps({"circuit": keys[0].name, "public": len(public), "out": args.out}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..zk.verifier import FastProofVerifier, PyProofVerifier

    if args.genesis:
        from ..genesis import Genesis

        vks = dict(Genesis.load(args.genesis).zk_circuits)
    elif args.vk:
        vks = {args.circuit: json.loads(Path(args.vk).read_text())}
    else:
        raise ValidationError("pass --vk or --genesis")
    try:
        doc = json.loads(Path(args.proof).read_text())
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read {args.proof}: {e}") from None
    proof = doc.get("proof", doc) if isinstance(doc, dict) else doc
    if args.public:
        public = json.loads(Path(args.public).read_text())
    else:
        public = doc.get("public") if isinstance(doc, dict) else None
        if public is None:
            raise ValidationError("no public inputs: pass --public")
    verifier = FastProofVerifier(vks) if args.fast else PyProofVerifier(vks)
    ok = verifier.verify(args.circuit, proof, public)
    print(json.dumps({"circuit": args.circuit, "valid": ok}))
    return 0 if ok else 1
