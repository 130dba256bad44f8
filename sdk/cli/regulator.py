"""``accord regulator ...``: the regulator's key and its audit of shielded transfers.

accord regulator keygen --out regulator.json     # a BabyJubJub key; its public part goes
                                                 # into genesis zk_params.regulator
accord regulator audit --data NODE/data --key regulator.json [--format table|csv|json]
                       [--out FILE] [--from HEIGHT]
                       # after a rotation by vote: --key old.json --key new.json (keep every
                       # retired key: transfers before the rotation are encrypted to it)
accord regulator audit --node URL [--node URL ...] --genesis genesis.json --key ...
                       # no node trusted: a light client checks every block it reads
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accord.base.errors import ValidationError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regulator", help="audit shielded transfers with the regulator key")
    cmds = p.add_subparsers(dest="regulator_cmd", metavar="CMD", required=True)

    k = cmds.add_parser("keygen", help="create a regulator key (keep the file secret)")
    k.add_argument("--out", required=True, help="where to write the key (JSON)")
    k.set_defaults(func=_keygen)

    a = cmds.add_parser("audit", help="decrypt every shielded transfer on the chain")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a node's LMDB data folder")
    src.add_argument("--node", action="append", help="a node's client API URL (repeat for more)")
    a.add_argument(
        "--genesis", help="with --node: the chain's genesis.json (the light client's trust root)"
    )
    a.add_argument(
        "--key",
        required=True,
        action="append",
        help="a regulator key file (from keygen); repeat it with every key the regulator has "
        "held since genesis (genesis's first): each transfer is decrypted with the key in "
        "force at its height",
    )
    a.add_argument("--format", choices=("table", "csv", "json"), default="table")
    a.add_argument("--out", help="write to this file instead of stdout")
    a.add_argument("--from", dest="start", type=int, default=0, help="first height to read")
    a.set_defaults(func=_audit)


def load_key(path: str | Path) -> object:
    from accord.zk.notes import RegulatorKey

    try:
        data = json.loads(Path(path).read_text())
        return RegulatorKey(int(data["secret"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValidationError(f"cannot read the regulator key {path}: {e}") from None


def _keygen(args: argparse.Namespace) -> int:
    from accord.zk.notes import RegulatorKey

    key = RegulatorKey.generate()
    pub = key.public
    out = Path(args.out)
    out.write_text(
        json.dumps({"secret": str(key.secret), "public": [str(pub[0]), str(pub[1])]}, indent=2)
        + "\n"
    )
    out.chmod(0o600)
    print(json.dumps({"public": [str(pub[0]), str(pub[1])]}))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from accord.storage.store import Store
    from accord.zk import audit as zaudit

    key = [load_key(path) for path in args.key]
    if args.node:
        from accord.light import LightClient

        if not args.genesis:
            raise ValidationError(
                "--node needs --genesis: the light client checks blocks against it"
            )
        with LightClient(args.genesis, args.node) as light:
            rows = zaudit.audit(key, zaudit.VerifiedSource(light), args.start)  # type: ignore[arg-type]
    else:
        data = Path(args.data)
        if not data.is_dir():
            raise ValidationError(f"{data} is not a node data folder")
        store = Store(data)
        try:
            rows = zaudit.audit(key, store, args.start)  # type: ignore[arg-type]
        finally:
            store.close()
    if args.format == "csv":
        text = zaudit.to_csv(rows)
    elif args.format == "json":
        text = zaudit.to_json(rows) + "\n"
    else:
        text = _table(rows)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(rows)} shielded transfers written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _table(rows: list) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(rows)} shielded transfers")
    for col in (
        "height",
        "sender",
        "receiver 1",
        "value 1",
        "receiver 2",
        "value 2",
        "deposit",
        "withdrawal",
    ):
        t.add_column(col)
    for r in rows:
        t.add_row(
            str(r.height),
            r.sender[:12],
            r.receiver_1[:12],
            str(r.value_1),
            r.receiver_2[:12],
            str(r.value_2),
            str(r.deposit),
            str(r.withdrawal),
        )
    import io

    out = io.StringIO()
    Console(file=out, width=140).print(t)
    return out.getvalue()
