"""``accord keys new|show``: account keys (Ed25519) on disk with mode 0600, and a consortium
member's keys (``keys new --validator``: BLS validator key, account key, public member card)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from accord.base.crypto.ed25519 import AccountKey


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create and show account keys")
    ks = p.add_subparsers(dest="keys_cmd", metavar="ACTION", required=True)
    new = ks.add_parser("new", help="create a new account key file (mode 0600)")
    new.add_argument(
        "path", type=Path, nargs="?", help="file to write the new key to (not with --validator)"
    )
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument(
        "--validator",
        action="store_true",
        help="a consortium member's keys: validator.key (BLS) and account.json (mode 0600) "
        "in --dir, and member.json, the public card to send the other members (printed)",
    )
    new.add_argument("--dir", type=Path, default=Path("."), help="the member's folder (default: .)")
    new.add_argument(
        "--name", default=None, help="the validator's name in genesis (default: the folder's)"
    )
    new.set_defaults(func=_new)
    show = ks.add_parser("show", help="print the public key and address of a key file")
    show.add_argument("path", type=Path, help="key file to read")
    show.add_argument("--json", action="store_true", help="print one JSON line")
    show.set_defaults(func=_show)


def _new(args: argparse.Namespace) -> int:
    from accord.base.errors import ValidationError

    if args.validator:
        if args.path is not None or args.force:
            raise ValidationError("keys new --validator writes into --dir and never overwrites")
        from accord.base.members import card_json, new_member

        folder = args.dir.resolve()
        card = new_member(folder, args.name or folder.name)
        print(card_json(card))  # the public part only: this is what the member sends
        return 0
    if args.path is None:
        raise ValidationError("keys new needs a PATH (or --validator)")
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
