"""A lender's existing aiohttp application that embeds an Accord validator.

The lender already runs a small web app: a loan book (an HTML page and a JSON API). Joining
the consortium means running a validator, and the least intrusive way is to run it *inside*
this app's event loop: the validator starts when the app starts and stops (cleanly, LMDB
closed after its last commit) when the app shuts down. Nothing else changes in the app,
except that disbursing a loan is now a signed token transfer on the shared ledger, and a loan
becomes "disbursed" when the app sees that transfer committed (through ``node.blocks()``,
not by polling).

Optionally the validator's client API is mounted under ``/ledger`` (``--mount-api``) so that
the lender's own tools can reach it through the same port.

Run it against a network folder made by ``accord init`` or ``accord devnet``::

    python examples/lender_app.py --node-dir .devnet/validator-0 --account-key KEY.json --port 8080

``--demo-account N`` uses the public demo account ``demo-N`` instead of a key file (demo
networks only). The app's routes:

* ``GET /`` the loan book as an HTML page;
* ``GET /loans`` the loan book as JSON; ``GET /loans/{id}`` one loan;
* ``POST /loans`` ``{"borrower": hex address, "amount": int}`` books a loan and submits its
  disbursement; the answer carries the loan with its ``tx_hash`` and ``status: "pending"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import logging
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError
from accord.base.types import Tx
from accord.node import Node

log = logging.getLogger("lender")

NODE_KEY = web.AppKey("node", Node)


@dataclass
class Loan:
    id: int
    borrower: str
    amount: int
    tx_hash: str
    status: str = "pending"  # pending -> disbursed | failed
    height: int | None = None


class LoanBook:
    """The lender's own records (in memory here; a real app has its database)."""

    def __init__(self, node: Node, lender: AccountKey) -> None:
        self.node = node
        self.lender = lender
        self.loans: dict[int, Loan] = {}
        self.by_tx: dict[str, Loan] = {}
        self._lock = asyncio.Lock()

    async def book(self, borrower: bytes, amount: int) -> Loan:
        """Book a loan and submit its disbursement: a transfer from the lender's account.

        The lock keeps nonces in order when two requests book at once."""
        async with self._lock:
            nonce = self.node.next_nonce(self.lender.address)
            tx = Tx.create(
                self.lender,
                chain_id=self.node.genesis.chain_id,
                contract="token",
                method="transfer",
                args={"to": borrower, "amount": amount},
                nonce=nonce,
                gas_limit=100_000,
            )
            tx_hash = self.node.submit(tx)  # raises an AccordError if the ledger refuses it
            loan = Loan(len(self.loans) + 1, borrower.hex(), amount, tx_hash.hex())
            self.loans[loan.id] = loan
            self.by_tx[loan.tx_hash] = loan
            return loan

    async def follow(self) -> None:
        """Mark loans disbursed (or failed) as their transfers commit."""
        async for block, receipts in self.node.blocks():
            for tx, receipt in zip(block.txs, receipts, strict=True):
                loan = self.by_tx.get(tx.hash.hex())
                if loan is not None:
                    loan.status = "disbursed" if receipt.ok else "failed"
                    loan.height = block.height


BOOK_KEY = web.AppKey("book", LoanBook)


# --- the lender's routes ----------------------------------------------------------------------


async def loan_page(request: web.Request) -> web.Response:
    book = request.app[BOOK_KEY]
    rows = "".join(
        f"<tr><td>{loan.id}</td><td>{html.escape(loan.borrower)}</td><td>{loan.amount}</td>"
        f"<td>{loan.status}</td></tr>"
        for loan in book.loans.values()
    )
    status = book.node.status()
    body = (
        f"<html><body><h1>Loan book</h1><p>validator {html.escape(status['name'])} at height "
        f"{status['height']}</p><table><tr><th>id</th><th>borrower</th><th>amount</th>"
        f"<th>status</th></tr>{rows}</table></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def list_loans(request: web.Request) -> web.Response:
    return web.json_response([asdict(loan) for loan in request.app[BOOK_KEY].loans.values()])


async def get_loan(request: web.Request) -> web.Response:
    try:
        loan = request.app[BOOK_KEY].loans[int(request.match_info["id"])]
    except (KeyError, ValueError):
        return web.json_response({"error": "no such loan"}, status=404)
    return web.json_response(asdict(loan))


async def create_loan(request: web.Request) -> web.Response:
    try:
        doc = await request.json()
        borrower = bytes.fromhex(doc["borrower"])
        amount = doc["amount"]
        if len(borrower) != 20 or type(amount) is not int or amount <= 0:
            raise ValueError("borrower is a 20-byte hex address and amount a positive integer")
    except (ValueError, KeyError, TypeError) as e:
        return web.json_response({"error": f"bad loan request: {e}"}, status=400)
    try:
        loan = await request.app[BOOK_KEY].book(borrower, amount)
    except AccordError as e:
        return web.json_response({"error": e.code, "message": str(e)}, status=422)
    return web.json_response(asdict(loan), status=201)


# --- wiring the validator into the app's lifecycle --------------------------------------------


def create_lender_app(
    node: Node, lender: AccountKey, *, mount_api: bool = False
) -> web.Application:
    """The lender's app with ``node`` started on startup and stopped on cleanup."""
    app = web.Application()
    app[NODE_KEY] = node
    app[BOOK_KEY] = LoanBook(node, lender)
    app.router.add_get("/", loan_page)
    app.router.add_get("/loans", list_loans)
    app.router.add_post("/loans", create_loan)
    app.router.add_get("/loans/{id}", get_loan)
    if mount_api:
        from accord.node.api import create_app

        app.add_subapp("/ledger", create_app(node))

    async def validator(app: web.Application) -> Any:
        await node.start()
        follower = asyncio.create_task(app[BOOK_KEY].follow())
        yield
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await node.stop()

    app.cleanup_ctx.append(validator)
    return app


async def serve(args: argparse.Namespace) -> int:
    node = Node.from_dir(args.node_dir)
    if args.account_key is not None:
        lender = AccountKey.load(args.account_key)
    else:
        lender = AccountKey.from_name(f"demo-{args.demo_account}")
    app = create_lender_app(node, lender, mount_api=args.mount_api)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()  # runs the cleanup context up to its yield: the validator is running
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    print(f"lender app on http://127.0.0.1:{args.port} (validator {node.name})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # stops the validator: LMDB closed after its last commit
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node-dir", type=Path, required=True, help="the validator's folder")
    p.add_argument("--port", type=int, default=8080)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account-key", type=Path, help="the lender's account key (JSON)")
    who.add_argument(
        "--demo-account", type=int, help="use public demo account demo-N (demo networks)"
    )
    p.add_argument("--mount-api", action="store_true", help="serve the client API under /ledger")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
