"""``accord query``: read-only questions to a node (contract views, transactions, blocks,
accounts). Nothing is signed and nothing changes."""

from __future__ import annotations

import argparse
from typing import Any

from accord.base.errors import ValidationError
from accord.cli.remote import Remote, add_target, emit, expect_object, jsonable, parse_args_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query", help="read contract views, transactions, blocks and accounts from a node"
    )
    qs = p.add_subparsers(dest="query_cmd", metavar="WHAT", required=True)
    call = qs.add_parser("call", help="run a contract's read-only method on the node's head state")
    call.add_argument("contract", help="contract name, e.g. token")
    call.add_argument("method", help="read-only method, e.g. balance_of")
    call.add_argument(
        "arg",
        nargs="*",
        metavar="NAME=VALUE",
        help="method arguments: 0x.. is bytes, digits an integer, true/false/null, else text",
    )
    call.add_argument(
        "--args-json",
        default=None,
        metavar="JSON",
        help="method arguments as one JSON object (0x.. strings are bytes)",
    )
    call.set_defaults(func=_call)
    tx = qs.add_parser("tx", help="a transaction's status and receipt")
    tx.add_argument("hash", help="transaction hash (hex)")
    tx.set_defaults(func=_tx)
    block = qs.add_parser("block", help="a committed block's header and transaction count")
    block.add_argument("height", nargs="?", default="latest", help="block height (default: latest)")
    block.set_defaults(func=_block)
    account = qs.add_parser(
        "account", help="an account's committed nonce and the next one to sign with"
    )
    account.add_argument("address", help="account address (hex, 20 bytes)")
    account.set_defaults(func=_account)
    for q in (call, tx, block, account):
        add_target(q)


def _hex_arg(text: str, size: int | None, what: str) -> bytes:
    t = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        b = bytes.fromhex(t)
    except ValueError:
        raise ValidationError(f"{what} {text!r} is not hex") from None
    if size is not None and len(b) != size:
        raise ValidationError(f"{what} must be {size} bytes, got {len(b)}")
    return b


def _call(args: argparse.Namespace) -> int:
    kw = parse_args_list(args.arg, args.args_json)
    r = Remote(args)
    try:
        value = r(r.client.query, args.contract, args.method, **kw)
    finally:
        r.close()
    emit(
        args,
        {"contract": args.contract, "method": args.method, "result": value},
        [str(jsonable(value))],
    )
    return 0


def _receipt_doc(rc: Any) -> dict[str, Any] | None:
    if rc is None:
        return None
    return {
        "ok": rc.ok,
        "gas_used": rc.gas_used,
        "result": rc.result,
        "error_code": rc.error_code,
        "error": rc.error,
        "events": [{"contract": e.contract, "name": e.name, "data": e.data} for e in rc.events],
    }


def _tx(args: argparse.Namespace) -> int:
    h = _hex_arg(args.hash, 32, "transaction hash")
    r = Remote(args)
    try:
        st = r(r.client.tx, h, proof=False)
    finally:
        r.close()
    doc = {
        "tx_hash": h.hex(),
        "status": st.status,
        "height": st.height,
        "index": st.index,
        "receipt": _receipt_doc(st.receipt),
    }
    lines = [f"transaction {h.hex()}", f"status      {st.status}"]
    if st.committed:
        lines.append(f"block       {st.height} (index {st.index})")
    if st.receipt is not None:
        lines += _receipt_lines(st.receipt)
    emit(args, doc, lines)
    return 0


def _receipt_lines(rc: Any) -> list[str]:
    lines = [f"result      {'ok' if rc.ok else 'FAILED'}  gas {rc.gas_used}"]
    if rc.result is not None:
        lines.append(f"returned    {jsonable(rc.result)}")
    if not rc.ok:
        lines.append(f"error       {rc.error_code}: {rc.error}")
    lines += [f"event       {e.contract}.{e.name} {jsonable(e.data)}" for e in rc.events]
    return lines


def _block(args: argparse.Namespace) -> int:
    height: int | str = args.height
    if height != "latest":
        if not str(height).isascii() or not str(height).isdigit():
            raise ValidationError(f"height {height!r} is not a non-negative integer")
        height = int(height)
    r = Remote(args)
    try:
        d = r.doc(
            r.client.block_json,
            height,
            fields={"hash": str, "header": dict, "txs": list},
            required=("header",),
        )
    finally:
        r.close()
    hdr = expect_object(
        d["header"], r.url, {"height": int, "round": int, "proposer": (int, str), "time_ms": int}
    )
    txs = d.get("txs") or []
    doc = {"hash": d.get("hash"), "header": hdr, "tx_count": len(txs)}
    lines = [
        f"block     {hdr.get('height')}  {str(d.get('hash', ''))[:16]}",
        f"round     {hdr.get('round')}  proposer {hdr.get('proposer')}",
        f"time_ms   {hdr.get('time_ms')}",
        f"txs       {len(txs)}",
    ]
    emit(args, doc, lines)
    return 0


def _account(args: argparse.Namespace) -> int:
    addr = _hex_arg(args.address, 20, "address")
    r = Remote(args)
    try:
        d = r.doc(
            r.client.account,
            addr,
            fields={"nonce": int, "next_nonce": int},
            required=("nonce", "next_nonce"),
        )
    finally:
        r.close()
    emit(
        args,
        d,
        [
            f"account     {addr.hex()}",
            f"nonce       {d.get('nonce')}",
            f"next nonce  {d.get('next_nonce')}",
        ],
    )
    return 0
