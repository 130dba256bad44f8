"""Anti-stacking loans through the MPC oracle (the talk's example).

Each lender L_i shares the balance s_i that borrower B owes it with the MPC servers (off the
chain: only shares leave the lender) and records here under which name (:meth:`record`).
When B applies to lender L (:meth:`apply`), the contract asks the oracle whether
sum(s_i) < limit; the answer bit is encrypted to B's and L's keys only, so no one else (the
validators, the other lenders, the servers) learns it, and no one learns any s_i or the sum.

State: ``b"l" + borrower`` -> list of share names; ``b"a" + request id`` -> application.
"""

from __future__ import annotations

from .base import Context, Contract, method

MAX_LENDERS = 32


class MpcLoans(Contract):
    name = "mpc_loans"

    @method
    def record(self, ctx: Context, borrower: bytes, share: str) -> None:
        """A lender declares that it shared B's balance with the servers under ``share``."""
        ctx.require(len(borrower) == 20, "borrower must be a 20-byte address")
        expected = "loan/" + ctx.sender.hex() + "/" + borrower.hex()
        key, _, local = share.partition("/")
        ctx.require(len(key) == 64 and local == expected,
                    f"a lender records its own share: <its MPC key hex>/{expected}")
        names = ctx.get(b"l" + borrower, [])
        if share not in names:
            ctx.require(len(names) < MAX_LENDERS, "too many lenders for one borrower")
            names.append(share)
            ctx.set(b"l" + borrower, names)
        ctx.emit("BalanceRecorded", borrower=borrower, lender=ctx.sender)

    @method
    def apply(self, ctx: Context, lender: bytes, limit: int, borrower_key: bytes, lender_key: bytes) -> bytes:
        """B asks lender L for a loan; the oracle checks sum(s_i) < limit for B and L only."""
        ctx.require(len(lender) == 20, "lender must be a 20-byte address")
        ctx.require(0 < limit < 2**62, "limit out of range")
        names = ctx.get(b"l" + ctx.sender, [])
        ctx.require(len(names) > 0, "no recorded balances for this borrower")
        request_id = ctx.mpc.request(
            "anti_stacking",
            {"shares": names, "params": {"limit": limit}},
            [borrower_key, lender_key],
            "on_answer",
        )
        ctx.set(b"a" + request_id, {"borrower": ctx.sender, "lender": lender, "status": "pending"})
        ctx.emit("LoanApplied", id=request_id, borrower=ctx.sender, lender=lender)
        return request_id

    @method
    def on_answer(self, ctx: Context, request_id: bytes, ok: bool, outputs: list | None, error: str) -> None:
        """The oracle's callback: keep the sealed answer for B and L, or the failure."""
        ctx.require(ctx.caller == "mpc_oracle", "only the MPC oracle answers")
        app = ctx.get(b"a" + request_id)
        ctx.require(app is not None, "unknown application")
        app["status"] = "answered" if ok else "failed"
        app["outputs"] = outputs
        app["error"] = error
        ctx.set(b"a" + request_id, app)
        ctx.emit("LoanDecided", id=request_id, ok=ok)

    @method(readonly=True)
    def application(self, ctx: Context, request_id: bytes) -> dict | None:
        return ctx.get(b"a" + request_id)
