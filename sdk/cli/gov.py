"""``accord gov``: propose, approve and follow governance decisions from a member's machine.

A proposal or approval is an ordinary transaction to the ``governance`` contract, signed with
the member's account key (``account.json`` from ``accord keys new --validator``) and sent the
way ``accord send`` sends one: the chain id comes from the operator's own genesis or flag,
never from the node. ``list``, ``show`` and ``in-force`` are read-only queries.

The action of a proposal is written ``KIND NAME=VALUE ...`` (values typed as ``accord send``
types them: ``0x..`` bytes, digits integers), or ``--action-json``. Shortcuts: for
``set_consensus`` every NAME=VALUE is a parameter; ``add_validator`` and
``rotate_validator_key`` read the new validator's public keys from its member card
(``--card member.json``); ``register_contract`` and ``upgrade_contract`` take the code hash
from ``--code module:Class`` (the code this machine has installed) when no ``code_hash=`` is
given; ``register_circuit`` takes the key hash from ``--vk verification_key.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import ValidationError
from accord.cli.remote import Remote, add_target, emit, jsonable, parse_args_list
from accord.cli.send import add_signing_options, submit

ACTION_KINDS = (
    "add_validator",
    "remove_validator",
    "rotate_validator_key",
    "set_consensus",
    "register_contract",
    "upgrade_contract",
    "retire_contract",
    "register_circuit",
    "rotate_regulator",
    "set_mpc_servers",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gov", help="propose, approve and list governance decisions")
    gsub = p.add_subparsers(dest="gov_command", metavar="SUBCOMMAND", required=True)

    pp = gsub.add_parser("propose", help="propose an action, signed with your member key")
    pp.add_argument("kind", choices=ACTION_KINDS, help="what the proposal changes")
    pp.add_argument(
        "field",
        nargs="*",
        metavar="NAME=VALUE",
        help="the action's fields (for set_consensus: its parameters, e.g. round_ms=2000); "
        "0x.. is bytes, digits an integer, true/false, else text",
    )
    pp.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="your member account key file"
    )
    pp.add_argument(
        "--action-json",
        default=None,
        metavar="JSON",
        help="the action's fields as one JSON object (0x.. strings are bytes)",
    )
    pp.add_argument(
        "--card",
        type=Path,
        default=None,
        metavar="FILE",
        help="add_validator / rotate_validator_key: the validator's member card (member.json) "
        "for its name, BLS key, proof of possession and account",
    )
    pp.add_argument(
        "--code",
        default=None,
        metavar="MODULE:CLASS",
        help="register_contract / upgrade_contract: the contract class whose code hash (its "
        "module and its package's modules) is proposed; its name is the contract's unless "
        "name= is given (the module must be importable here: installed, or on PYTHONPATH)",
    )
    pp.add_argument(
        "--vk",
        type=Path,
        default=None,
        metavar="FILE",
        help="register_circuit: the circuit's verification key JSON (from the ceremony) whose "
        'hash is proposed; every validator names the same file in node.json "circuits"',
    )
    pp.add_argument(
        "--activation",
        type=int,
        default=None,
        metavar="HEIGHT",
        help="the height the change should take effect at (default: the passing block's "
        "height + the genesis activation delay, at least 2)",
    )
    add_signing_options(pp)
    pp.set_defaults(func=_propose)

    pa = gsub.add_parser("approve", help="approve an open proposal with your member key")
    pa.add_argument("proposal", help="the proposal id (hex, as `accord gov list` prints it)")
    pa.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="your member account key file"
    )
    add_signing_options(pa)
    pa.set_defaults(func=_approve)

    pl = gsub.add_parser("list", help="list proposals, newest first")
    pl.add_argument("--offset", type=int, default=0, help="newest proposals to skip (default 0)")
    pl.add_argument(
        "--limit", type=int, default=20, help="proposals to show, 1 to 100 (default 20)"
    )
    add_target(pl)
    pl.set_defaults(func=_list)

    ps = gsub.add_parser("show", help="show one proposal: its action, approvals and status")
    ps.add_argument("proposal", help="the proposal id (hex)")
    add_target(ps)
    ps.set_defaults(func=_show)

    pf = gsub.add_parser(
        "in-force", help="what governance has in force at a height (validators, parameters, ...)"
    )
    pf.add_argument(
        "--height",
        type=int,
        default=None,
        help="the block height to ask about (default: the node's next block)",
    )
    add_target(pf)
    pf.set_defaults(func=_in_force)


# --- actions ----------------------------------------------------------------------------


def _proposal_id(text: str) -> bytes:
    raw = text[2:] if text.lower().startswith("0x") else text
    try:
        pid = bytes.fromhex(raw)
    except ValueError:
        raise ValidationError(f"{text!r} is not a proposal id (64 hex digits)") from None
    if len(pid) != 32:
        raise ValidationError(f"{text!r} is not a proposal id (64 hex digits)")
    return pid


def _from_card(kind: str, path: Path) -> dict[str, Any]:
    from accord.base.members import read_card

    card = read_card(path)  # refuses a card with a secret or a proof that does not verify
    fields: dict[str, Any] = {
        "name": card.name,
        "bls_public_key": bytes.fromhex(card.bls_public_key),
        "pop": bytes.fromhex(card.pop),
    }
    if kind == "add_validator":
        fields["account"] = bytes.fromhex(card.account)
    return fields


def build_action(
    kind: str,
    pairs: list[str],
    action_json: str | None = None,
    card: Path | None = None,
    code: str | None = None,
    vk: Path | None = None,
) -> dict[str, Any]:
    """The action dict a proposal carries, from the command line (see the module notes)."""
    fields = parse_args_list(pairs, action_json)
    if "kind" in fields:
        raise ValidationError("the kind is the first argument, not a field")
    if card is not None:
        if kind not in ("add_validator", "rotate_validator_key"):
            raise ValidationError("--card is for add_validator and rotate_validator_key")
        fields = {**_from_card(kind, card), **fields}
    if code is not None:
        if kind not in ("register_contract", "upgrade_contract"):
            raise ValidationError("--code is for register_contract and upgrade_contract")
        from accord.contracts.installed import load_class
        from accord.contracts.runtime import code_hash

        cls = load_class(code)
        fields.setdefault("name", cls.name)
        fields.setdefault("code_hash", code_hash(cls))
    if vk is not None:
        if kind != "register_circuit":
            raise ValidationError("--vk is for register_circuit")
        from accord.base.genesis import vk_hash

        try:
            doc = json.loads(vk.read_text())
        except (OSError, ValueError) as e:
            raise ValidationError(f"cannot read the verification key {vk}: {e}") from None
        fields.setdefault("vk_hash", vk_hash(doc))
    if kind == "set_consensus" and "params" not in fields:
        fields = {"params": fields}
    return {"kind": kind, **fields}


def _propose(args: argparse.Namespace) -> int:
    key = AccountKey.load(args.key)
    action = build_action(args.kind, args.field, args.action_json, args.card, args.code, args.vk)
    return submit(
        args, key, "governance", "propose", {"action": action, "activation": args.activation}
    )


def _approve(args: argparse.Namespace) -> int:
    key = AccountKey.load(args.key)
    return submit(args, key, "governance", "approve", {"proposal": _proposal_id(args.proposal)})


# --- queries ----------------------------------------------------------------------------


def _query(args: argparse.Namespace, method: str, **kw: Any) -> Any:
    r = Remote(args)
    try:
        return r(r.client.query, "governance", method, **kw)
    finally:
        r.close()


def _summary(p: dict[str, Any]) -> str:
    action = p.get("action") or {}
    effective = p.get("effective")
    when = f"in force from {effective}" if effective is not None else f"expires {p.get('expires')}"
    return (
        f"{bytes(p['id']).hex()}  {str(p.get('status')):8} {str(action.get('kind')):22} "
        f"{p.get('counted')}/{p.get('threshold')} approvals  {when}"
    )


def _list(args: argparse.Namespace) -> int:
    doc = _query(args, "proposals", offset=args.offset, limit=args.limit)
    if not isinstance(doc, dict) or not isinstance(doc.get("proposals"), list):
        raise ValidationError("malformed answer: no proposals list")
    lines = [f"{doc.get('total')} proposals"]
    lines += [_summary(p) for p in doc["proposals"] if isinstance(p, dict)]
    emit(args, doc, lines)
    return 0


def _show(args: argparse.Namespace) -> int:
    doc = _query(args, "proposal", proposal=_proposal_id(args.proposal))
    if not isinstance(doc, dict):
        raise ValidationError("malformed answer: not a proposal")
    lines = [_summary(doc), "action: " + json.dumps(jsonable(doc.get("action")), sort_keys=True)]
    lines.append(
        "approvals: " + ", ".join(jsonable(a) for a in doc.get("approvals") or []) or "none"
    )
    if doc.get("reason"):
        lines.append(f"failed: {doc['reason']}")
    emit(args, doc, lines)
    return 0


def _in_force(args: argparse.Namespace) -> int:
    height = args.height
    if height is None:
        r = Remote(args)
        try:
            height = (
                int(r.doc(r.client.status, fields={"height": int}, required=("height",))["height"])
                + 1
            )
        finally:
            r.close()
    doc = _query(args, "in_force", height=height)
    if not isinstance(doc, dict):
        raise ValidationError("malformed answer: not a schedule")
    lines = [f"in force at height {height}:"]
    for k in sorted(doc):
        lines.append(f"  {k}: {json.dumps(jsonable(doc[k]), sort_keys=True)}")
    emit(args, doc, lines)
    return 0


__all__ = ["build_action", "register"]
