"""``accord keys new|show``: account keys (Ed25519) on disk with mode 0600."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from accord.base.crypto.ed25519 import AccountKey


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create and show account keys")
    ks = p.add_subparsers(dest="keys_cmd", metavar="ACTION", required=True)
    new = ks.add_parser("new", help="create a new account key file (mode 0600)")
    new.add_argument("path", type=Path, help="file to write the new key to")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.set_defaults(func=_new)
    show = ks.add_parser("show", help="print the public key and address of a key file")
    show.add_argument("path", type=Path, help="key file to read")
    show.add_argument("--json", action="store_true", help="print one JSON line")
    show.set_defaults(func=_show)


def _new(args: argparse.Namespace) -> int:
    if args.path.exists() and not args.force:
        print(f"accord: {args.path} exists; pass --force to overwrite it")
        return 1
    key = AccountKey.generate()
    key.save(args.path)
    print(f"address {key.address.hex()}  written to {args.path} (mode 600)")
    return 0


def _show(args: argparse.Namespace) -> int:
    key = AccountKey.load(args.path)
    doc = {"address": key.address.hex(), "public_key": key.public_key.hex()}
    print(
        json.dumps(doc)
        if args.json
        else f"address     {doc['address']}\npublic key  {doc['public_key']}"
    )
    return 0
