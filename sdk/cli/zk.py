"""``accord zk ...``: build circuits, run the ceremony, prove and verify.

    accord zk setup                  install the pinned npm tools into the cache (no checkout needed)
    accord zk build [--circuit shielded_transfer|anti_stacking|all] [--file my.circom]
                    [--depth 32] [--lenders 6]
    accord zk ceremony --power 15 --members bank-a,bank-b,regulator [--circuit ...]
                       [--file my.circom] [--beacon HEX] [--dir FOLDER] [--seed S]
                       [--genesis genesis.json] [--regulator-public X,Y]
        (one process plays every member: tests and demos only, see accord.zk.ceremony)

    The ceremony across machines (accord.zk.transcript), each member on its own machine:
    accord zk ceremony init --out DIR --power 15 --members a=PUBKEY,b=PUBKEY,c=PUBKEY \
                            --circuit ... --beacon-chain genesis.json --beacon-height H
    accord zk ceremony contribute --in PREV_DIR --out MY_DIR --name a --key a.key --circuit ...
                                                                          (phase 1, then 2)
    accord zk ceremony prepare --in PREV_DIR --out DIR --circuit ...     (after phase 1)
    accord zk ceremony beacon --in PREV_DIR --out DIR --certificate CERT --beacon-chain G \
                              --circuit ...                              (after phase 2)
    accord zk ceremony verify --dir DIR [--dir DIR2 ...] --circuit ... --beacon-chain G
                              [--genesis genesis.json]
                              [--member NAME --hash H ... [--key KEY --attest]]
    (every step compiles the circuits from the sources it is given and refuses a ceremony
    whose r1cs they do not compile to; PUBKEY is `accord keys show`'s public key)
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

from accord.base.errors import ValidationError


def _circuit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--circuit", default="all", help="shielded_transfer, anti_stacking or all (default)"
    )
    p.add_argument(
        "--file",
        action="append",
        default=[],
        help="a .circom file of your own with `component main` (repeatable)",
    )
    p.add_argument("--depth", type=int, default=None, help="tree depth (default 32)")
    p.add_argument("--lenders", type=int, default=None, help="anti-stacking slots (default 6)")


def _ceremony_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--power", type=int, default=15, help="2^power constraints (default 15)")
    p.add_argument(
        "--members",
        default="member-1,member-2,member-3",
        help="comma-separated contributors, in order",
    )
    p.add_argument("--beacon", default=None, help="32-byte hex beacon (a public random value)")
    p.add_argument("--seed", default=None, help="deterministic entropy: tests and demos ONLY")
    p.add_argument("--dir", default=None, help="ceremony folder (default: in the cache)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zk", help="build circuits, run the trusted-setup ceremony, prove, verify")
    cmds = p.add_subparsers(dest="zk_cmd", metavar="CMD", required=True)

    su = cmds.add_parser(
        "setup",
        help="install the pinned npm tools (circom2, snarkjs, "
        "circomlib) into the cache, from the lock file in the package",
    )
    su.add_argument("--force", action="store_true", help="install again even if present")
    su.set_defaults(func=_setup)

    b = cmds.add_parser("build", help="compile circuits (r1cs + wasm) into the cache")
    _circuit_args(b)
    b.set_defaults(func=_build)

    c = cmds.add_parser("ceremony", help="phase 1 + phase 2 with several members, resumable")
    _circuit_args(c)
    _ceremony_args(c)
    c.add_argument("--genesis", help="write the verification keys into this genesis.json")
    c.add_argument("--regulator-public", help="the regulator's key X,Y (accord regulator keygen)")
    c.set_defaults(func=_ceremony)
    steps = c.add_subparsers(dest="ceremony_cmd", metavar="STEP", required=False)
    ci = steps.add_parser("init", help="start a ceremony across machines (coordinator)")
    _circuit_args(ci)
    ci.add_argument("--out", required=True, help="folder to publish")
    ci.add_argument("--power", type=int, required=True, help="2^power constraints")
    ci.add_argument(
        "--members",
        required=True,
        help="comma-separated NAME=PUBLIC_KEY (hex Ed25519, `accord keys show`), "
        "in contribution order",
    )
    ci.add_argument(
        "--beacon-chain",
        required=True,
        help="genesis.json of the chain whose block hash will be the beacon",
    )
    ci.add_argument(
        "--beacon-height",
        type=int,
        required=True,
        help="that block's height: later than every contribution will be",
    )
    ci.add_argument("--iterations", type=int, default=None, help="beacon hash iterations 2^N")
    ci.set_defaults(func=_ceremony_init)
    cc = steps.add_parser("contribute", help="add this member's contribution (own machine)")
    cc.add_argument("--in", dest="src", required=True, help="the previous step's folder")
    cc.add_argument("--out", required=True, help="folder to publish")
    cc.add_argument("--name", required=True, help="this member's name in the ceremony")
    cc.add_argument("--key", required=True, help="this member's key file (accord keys new)")
    _circuit_args(cc)
    cc.set_defaults(func=_ceremony_contribute)
    cp = steps.add_parser("prepare", help="after phase 1: prepare phase 2, set up every circuit")
    cp.add_argument("--in", dest="src", required=True, help="the last phase-1 folder")
    cp.add_argument("--out", required=True, help="folder to publish")
    _circuit_args(cp)
    cp.set_defaults(func=_ceremony_prepare)
    cb = steps.add_parser("beacon", help="close the ceremony with the certified beacon block")
    cb.add_argument("--in", dest="src", required=True, help="the last contribution's folder")
    cb.add_argument("--out", required=True, help="folder to publish")
    cb.add_argument(
        "--certificate",
        required=True,
        help="file with the hex of the beacon block's commit certificate "
        "(Certificate.encode(), e.g. from client.header(H).certificate)",
    )
    cb.add_argument("--beacon-chain", required=True, help="genesis.json of the beacon chain")
    _circuit_args(cb)
    cb.set_defaults(func=_ceremony_beacon)
    cv = steps.add_parser("verify", help="re-check a finished ceremony, every step")
    cv.add_argument(
        "--dir",
        action="append",
        required=True,
        help="folder(s) holding the transcript and the step files",
    )
    cv.add_argument("--genesis", help="write the keys and the transcript record into it")
    cv.add_argument("--regulator-public", help="the regulator's key X,Y")
    cv.add_argument("--beacon-chain", required=True, help="genesis.json of the beacon chain")
    cv.add_argument("--member", help="check this member's own contributions are in it")
    cv.add_argument(
        "--hash",
        action="append",
        default=[],
        help="a contribution hash `contribute` printed to --member (repeatable)",
    )
    cv.add_argument(
        "--attest",
        action="store_true",
        help="after the checks pass, sign the transcript as --member with --key: its "
        "attestation goes into the first --dir's transcript.json (validators need every "
        "member's)",
    )
    cv.add_argument("--key", help="--member's key file (accord keys new), for --attest")
    _circuit_args(cv)
    cv.set_defaults(func=_ceremony_verify)

    pr = cmds.add_parser("prove", help="prove with a circuit's keys from the ceremony")
    _circuit_args(pr)
    _ceremony_args(pr)
    pr.add_argument("--input", required=True, help="circuit input JSON")
    pr.add_argument("--out", required=True, help="proof JSON (proof, public, compressed hex)")
    pr.add_argument(
        "--zkey",
        help="the circuit's final zkey from the ceremony across machines "
        "(default: the one-process dev ceremony's, insecure-dev)",
    )
    pr.add_argument(
        "--genesis",
        help="refuse a proving key whose verification key is not the "
        "one this genesis names for the circuit",
    )
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
    from accord.zk import build as zb

    out = []
    names = (
        []
        if args.circuit in ("", "none")
        else (
            ["shielded_transfer", "anti_stacking"]
            if args.circuit == "all"
            else args.circuit.split(",")
        )
    )
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


def _setup(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from accord.zk import npm, tools

    with Progress(
        TextColumn("npm ci (pinned circom2, snarkjs, circomlib)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=tools.stderr_console(),  # type: ignore[arg-type]
    ) as bar:
        task = bar.add_task("npm", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        folder = npm.install(progress, force=args.force)
    print(
        json.dumps(
            {
                "installed": str(folder),
                "used": str(tools.project_root()),
                **{n: tools.package_version(n) for n in ("circom2", "snarkjs", "circomlib")},
            }
        )
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    from accord.zk import build as zb

    for spec in specs(args):
        built = zb.build(spec)
        info = built.info
        print(
            json.dumps(
                {
                    "circuit": spec.name,
                    "constraints": info["constraints"],
                    "public_inputs": info["public_inputs"],
                    "power": zb.power_for(info["constraints"], info["public_inputs"]),
                    "r1cs": str(built.r1cs),
                    "wasm": str(built.wasm),
                }
            )
        )
    return 0


def _params(args: argparse.Namespace) -> Any:
    from accord.zk.ceremony import DEFAULT_BEACON, CeremonyParams

    members = tuple(m.strip() for m in args.members.split(",") if m.strip())
    return CeremonyParams(
        power=args.power, members=members, beacon=args.beacon or DEFAULT_BEACON, seed=args.seed
    )


def _keys(args: argparse.Namespace, progress: Any = None) -> list[Any]:
    from accord.zk.artifacts import setup_circuit

    params = _params(args)
    folder = Path(args.dir) if args.dir else None
    return [setup_circuit(s, params, folder=folder, progress=progress) for s in specs(args)]


def _ceremony_init(args: argparse.Namespace) -> int:
    from accord.zk import transcript as zt

    members = []
    for item in (m.strip() for m in args.members.split(",") if m.strip()):
        name, _, key = item.partition("=")
        try:
            pub = bytes.fromhex(key)
        except ValueError:
            pub = b""
        if len(pub) != 32:
            raise ValidationError(f"member {name!r}: give NAME=PUBLIC_KEY (64 hex digits)")
        members.append((name, pub))
    from accord.base.genesis import Genesis

    t = zt.init(
        Path(args.out),
        args.power,
        members,
        specs(args),
        Genesis.load(args.beacon_chain).hash.hex(),
        args.beacon_height,
        args.iterations or zt.DEFAULT_ITERATIONS,
    )
    print(json.dumps({"transcript": t.hash, "next": t.next_step(), "out": args.out}))
    return 0


def _ceremony_contribute(args: argparse.Namespace) -> int:
    from accord.base.crypto.ed25519 import AccountKey
    from accord.zk import transcript as zt

    t = zt.contribute(
        Path(args.src), Path(args.out), args.name, AccountKey.load(args.key), specs(args)
    )
    mine = [
        e["contribution"]
        for e in t.entries
        if e["step"] == "contribute" and e["member"] == args.name
    ]
    print(
        f"{args.name}: keep your contribution hashes and check them in the final ceremony "
        "with `accord zk ceremony verify --member NAME --hash H`",
        file=sys.stderr,
    )
    # The beacon is unpredictable only if its block is still to come: init cannot check
    # that, so each member does before publishing (an unpublished contribution is no risk).
    print(
        f"{args.name}: the beacon will be the hash of block {t.params.beacon_height} of the "
        f"chain whose genesis hash is {t.params.beacon_chain}: publish your folder only if "
        "that chain has not reached that height yet",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "transcript": t.hash,
                "next": t.next_step(),
                "out": args.out,
                "contributions": mine,
                "beacon_chain": t.params.beacon_chain,
                "beacon_height": t.params.beacon_height,
            }
        )
    )
    return 0


def _ceremony_prepare(args: argparse.Namespace) -> int:
    from accord.zk import transcript as zt

    t = zt.prepare(Path(args.src), Path(args.out), specs(args))
    print(json.dumps({"transcript": t.hash, "next": t.next_step(), "out": args.out}))
    return 0


def _ceremony_beacon(args: argparse.Namespace) -> int:
    from accord.base.genesis import Genesis
    from accord.zk import transcript as zt

    try:
        cert = Path(args.certificate).read_text().strip()
    except OSError as e:
        raise ValidationError(f"cannot read {args.certificate}: {e}") from None
    t = zt.beacon(
        Path(args.src), Path(args.out), cert, Genesis.load(args.beacon_chain), specs(args)
    )
    print(json.dumps({"transcript": t.hash, "next": t.next_step(), "out": args.out}))
    return 0


def _ceremony_verify(args: argparse.Namespace) -> int:
    from accord.base.genesis import Genesis
    from accord.zk import transcript as zt

    if args.attest and not (args.member and args.key):
        raise ValidationError("--attest needs --member and --key")
    v = zt.verify([Path(d) for d in args.dir], specs(args), Genesis.load(args.beacon_chain))
    if args.member:
        zt.check_member(v, args.member, args.hash)
    attested: list[str] = []
    if args.attest:
        from accord.base.crypto.ed25519 import AccountKey

        t = zt.attest(Path(args.dir[0]), v, args.member, AccountKey.load(args.key))
        attested = [a["member"] for a in t.attestations]
    print(
        json.dumps(
            {
                "ok": True,
                "transcript": v.transcript_hash,
                "circuits": sorted(v.vks),
                "contributions": v.contributions,
                **({"attested_by": attested} if args.attest else {}),
            }
        )
    )
    if args.genesis:
        g = Genesis.load(args.genesis)
        params = dict(g.zk_params)
        params["ceremony"] = zt.genesis_record(v)
        if args.regulator_public:
            from accord.zk.babyjub import check_key

            x, y = (int(c) for c in args.regulator_public.split(","))
            check_key((x, y), "the regulator key")
            params["regulator"] = [str(x), str(y)]
        g.model_copy(
            update={"zk_circuits": {**dict(g.zk_circuits), **v.vks}, "zk_params": params}
        ).save(args.genesis)
        print(
            f"verification keys and the transcript hash written to {args.genesis}", file=sys.stderr
        )
    return 0


def _ceremony(args: argparse.Namespace) -> int:
    from accord.zk.ceremony import RichProgress

    print(
        "accord zk ceremony: one process plays every member (tests and demos only); a real "
        "chain runs `accord zk ceremony init|contribute|beacon|verify`",
        file=sys.stderr,
    )

    with RichProgress() as progress:
        keys = _keys(args, progress)
    for k in keys:
        print(json.dumps({"circuit": k.name, "constraints": k.constraints, "zkey": str(k.zkey)}))
    if args.genesis:
        from accord.base.genesis import Genesis

        g = Genesis.load(args.genesis)
        circuits = dict(g.zk_circuits)
        params = dict(g.zk_params)
        for k in keys:
            circuits[k.name] = k.vk
            extra = k.built.spec.extra
            if k.name == "shielded_transfer":
                params["shielded_pool"] = {
                    **dict(params.get("shielded_pool") or {}),
                    "depth": extra["depth"],
                }
            if k.name == "anti_stacking":
                params["loans"] = {**dict(params.get("loans") or {}), "slots": extra["lenders"]}
        # One process made these keys: validators accept them only as such (see transcript.py).
        params["ceremony"] = "insecure-dev"
        if args.regulator_public:
            from accord.zk.babyjub import check_key

            x, y = (int(v) for v in args.regulator_public.split(","))
            check_key((x, y), "the regulator key")
            params["regulator"] = [str(x), str(y)]
        g.model_copy(update={"zk_circuits": circuits, "zk_params": params}).save(args.genesis)
        print(f"verification keys written to {args.genesis}", file=sys.stderr)
    return 0


def _zkey_keys(spec: Any, zkey: Path) -> Any:
    """A circuit's keys from a ceremony's final zkey (its verification key exported again)."""
    import secrets

    from accord.zk import build as zb
    from accord.zk import tools
    from accord.zk.artifacts import CircuitKeys
    from accord.zk.transcript import _snarkjs

    if not zkey.is_file():
        raise ValidationError(f"{zkey} not found")
    tmp = tools.cache_dir() / f"prove-vk-{secrets.token_hex(6)}.json"
    try:
        _snarkjs(["zkey", "export", "verificationkey", str(zkey), str(tmp)], "zkey export")
        vk = json.loads(tmp.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return CircuitKeys(spec.name, zb.build(spec), zkey, vk)


def _prove(args: argparse.Namespace) -> int:
    from accord.zk import groth16

    wanted = specs(args)
    if len(wanted) != 1:
        raise ValidationError("prove one circuit: pass --circuit NAME or one --file")
    if args.zkey:
        keys = [_zkey_keys(wanted[0], Path(args.zkey))]
        print(f"accord zk prove: proving key {args.zkey}", file=sys.stderr)
    else:
        keys = _keys(args)
        print(
            f"accord zk prove: no --zkey, so the one-process dev ceremony's key {keys[0].zkey} "
            "(insecure-dev: tests and demos only)",
            file=sys.stderr,
        )
    if args.genesis:
        from accord.base.genesis import Genesis
        from accord.zk.transcript import vk_hash

        named = dict(Genesis.load(args.genesis).zk_circuits).get(keys[0].name)
        if named is None or vk_hash(named) != vk_hash(keys[0].vk):
            raise ValidationError(
                f"the proving key {keys[0].zkey} is not the one {args.genesis} "
                f"names for {keys[0].name!r}: its proofs would not verify there"
            )
    try:
        inputs = json.loads(Path(args.input).read_text())
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read {args.input}: {e}") from None
    proof, public = keys[0].prove(inputs)
    Path(args.out).write_text(
        json.dumps(
            {
                "circuit": keys[0].name,
                "proof": proof,
                "public": [str(x) for x in public],
                "compressed": groth16.compress_proof(proof).hex(),
            },
            indent=2,
        )
        + "\n"
    )
    print(json.dumps({"circuit": keys[0].name, "public": len(public), "out": args.out}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from accord.zk.verifier import FastProofVerifier, PyProofVerifier

    if args.genesis:
        from accord.base.genesis import Genesis

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
