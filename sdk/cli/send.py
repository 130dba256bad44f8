"""``accord send``: sign a transaction with an account key file, submit it, wait for its
receipt (with a progress indicator on stderr) and print what it did.

The chain a transaction is signed for comes from the operator, never from the node: the node's
answers are unauthenticated, and a signature for the chain id a (phishing) node reports would be
a valid transfer on that other chain. So the chain id is ``--chain-id``, or read from a local
genesis (``--genesis FILE``, or the genesis of the ``--node DIR`` folder); a node that reports
another chain is refused before anything is signed. The nonce is the account's next one as the
node counts it (pending transactions included), unless ``--nonce`` says otherwise; a lying node
can at worst make the transaction fail (wrong nonce), never move it to another chain. Exit status: 0 committed and ok, 1 refused or failed
(the receipt says why), 3 not committed within ``--wait``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import ValidationError, WaitTimeout
from accord.base.types import Tx
from accord.cli.query import _receipt_doc, _receipt_lines
from accord.cli.remote import STATUS_FIELDS, Remote, add_target, emit, parse_args_list
from accord.client import TxStatus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "send", help="sign a transaction with a key file, submit it and wait for its receipt"
    )
    p.add_argument("contract", help="contract name, e.g. token")
    p.add_argument("method", help="method to call, e.g. transfer")
    p.add_argument(
        "arg",
        nargs="*",
        metavar="NAME=VALUE",
        help="method arguments: 0x.. is bytes, digits an integer, true/false/null, else text",
    )
    p.add_argument(
        "--key",
        type=Path,
        required=True,
        metavar="FILE",
        help="account key file that signs (made by accord keys new; must be mode 600)",
    )
    p.add_argument(
        "--args-json",
        default=None,
        metavar="JSON",
        help="method arguments as one JSON object (0x.. strings are bytes)",
    )
    add_signing_options(p)
    p.set_defaults(func=_send)


def add_signing_options(p: argparse.ArgumentParser) -> None:
    """The options of a signed submission after the key: gas, nonce, wait, chain, target."""
    p.add_argument(
        "--gas-limit",
        type=int,
        default=1_000_000,
        metavar="GAS",
        help="most gas the call may use (default 1,000,000; unused gas is not charged)",
    )
    p.add_argument(
        "--nonce",
        type=int,
        default=None,
        help="nonce to sign with (default: the account's next one, as the node counts it)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for the receipt; 0 submits and returns at once (default 60)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--chain-id",
        default=None,
        metavar="ID",
        help="the chain to sign for (else read from --genesis, or from the --node folder's genesis)",
    )
    src.add_argument(
        "--genesis",
        type=Path,
        default=None,
        metavar="FILE",
        help="a local genesis.json whose chain id the transaction is signed for",
    )
    add_target(p)


def _expected_chain_id(args: argparse.Namespace) -> str:
    """The chain id from the operator's own files or flags (never from the node's answer)."""
    from accord.base.genesis import Genesis

    if args.chain_id is not None:
        if not args.chain_id:
            raise ValidationError("--chain-id is empty")
        return str(args.chain_id)
    path: Path | None = args.genesis
    if path is None and args.node is not None:
        from accord.node.config import NodeConfig

        try:
            path = args.node / NodeConfig.load(args.node).genesis
        except (OSError, ValueError) as e:
            raise ValidationError(f"cannot read {args.node / 'node.json'}: {e}") from None
    if path is None:
        raise ValidationError(
            "which chain to sign for? give --chain-id ID, --genesis FILE or --node DIR "
            "(the node's own answer is not trusted for this)"
        )
    try:
        return Genesis.load(path).chain_id
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read genesis {path}: {e}") from None


def _send(args: argparse.Namespace) -> int:
    key = AccountKey.load(args.key)
    kw = parse_args_list(args.arg, args.args_json)
    return submit(args, key, args.contract, args.method, kw)


def submit(
    args: argparse.Namespace, key: AccountKey, contract: str, method: str, kw: dict[str, Any]
) -> int:
    """Sign ``contract.method(**kw)`` for the operator's chain, submit it, wait and print (what
    ``accord send`` does; ``args`` carries its options: target, chain id, nonce, gas, wait)."""
    chain_id = _expected_chain_id(args)
    r = Remote(args)
    try:
        reported = r.doc(r.client.status, fields=STATUS_FIELDS).get("chain_id")
        if reported != chain_id:
            raise ValidationError(
                f"{r.url} reports chain {str(reported)[:80]!r}, not {chain_id!r}: refusing to sign "
                f"(wrong node, or a node that lies)"
            )
        if args.nonce is not None:
            nonce = args.nonce
        else:
            nonce = r.doc(
                r.client.account, key.address, fields={"next_nonce": int}, required=("next_nonce",)
            )["next_nonce"]
        print(f"signing for chain {chain_id!r} with nonce {nonce}", file=sys.stderr)
        tx = Tx.create(
            key,
            chain_id=chain_id,
            contract=contract,
            method=method,
            args=kw,
            nonce=nonce,
            gas_limit=args.gas_limit,
        )
        h = r(r.client.submit, tx)
        doc = {
            "tx_hash": h.hex(),
            "sender": key.address.hex(),
            "chain_id": chain_id,
            "nonce": nonce,
            "status": "pending",
        }
        if args.wait <= 0:
            emit(args, doc, [f"submitted   {h.hex()}  (nonce {nonce}; not waiting)"])
            return 0
        try:
            st = _wait(r, h, args.wait)
        except WaitTimeout as e:
            doc["error"] = e.message
            emit(
                args,
                doc,
                [f"submitted   {h.hex()}", f"not committed after {args.wait:g} s: {e.message}"],
            )
            return 3
    finally:
        r.close()
    rc = st.receipt
    doc.update(status="committed", height=st.height, index=st.index, receipt=_receipt_doc(rc))
    emit(
        args,
        doc,
        [
            f"transaction {h.hex()}",
            f"block       {st.height} (index {st.index})",
            *_receipt_lines(rc),
        ],
    )
    return 0 if rc is not None and rc.ok else 1


def _wait(r: Remote, h: bytes, timeout: float) -> TxStatus:
    """Poll until committed; the spinner goes to stderr so stdout stays the result."""
    from rich.console import Console

    console = Console(stderr=True)
    deadline = time.monotonic() + timeout
    delay = 0.05
    with console.status("waiting for the transaction to commit", spinner="dots") as live:
        while True:
            st = r(r.client.tx, h, proof=False)
            if st.committed and st.receipt is not None:
                return st
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"still {st.status}")
            if console.is_terminal:
                live.update(
                    f"waiting for the transaction to commit ({st.status}, {left:.0f} s left)"
                )
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.5)
