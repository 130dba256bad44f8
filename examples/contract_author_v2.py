"""Release 2 of the example escrow (examples/contract_author.py): the same state, plus
``extend``. A release is its own module, so its code hash differs from release 1's.
"""

from __future__ import annotations

from accord.contracts.base import Context, Contract, method

VERSION = 2


class Escrow(Contract):
    """Tokens held for a payee until the payer releases them, or refunded after a deadline.

    State (this contract's namespace): ``"n"`` -> escrows opened so far; ``"e/<id>"`` -> the
    escrow's record. The tokens sit at the contract's own address (``ctx.address``) while held.
    Events: ``Opened``, ``Released``, ``Refunded``.
    """

    name = "escrow"

    @method
    def open(self, ctx: Context, payee: bytes, amount: int, deadline_ms: int) -> int:
        """Move ``amount`` of the sender's tokens into escrow for ``payee`` (the sender first
        approves this contract's address for it on the token)."""
        ctx.require(len(payee) == 20, "payee must be a 20-byte address")
        ctx.require(deadline_ms > ctx.time_ms, "the deadline must be after the block's time")
        ctx.call("token", "transfer_from", owner=ctx.sender, to=ctx.address, amount=amount)
        n = int(ctx.get("n", 0))
        ctx.set(
            f"e/{n}",
            {"payer": ctx.sender, "payee": payee, "amount": amount, "deadline_ms": deadline_ms},
        )
        ctx.set("n", n + 1)
        ctx.emit("Opened", id=n, payer=ctx.sender, payee=payee, amount=amount)
        return n

    @method
    def release(self, ctx: Context, number: int) -> None:
        """The payer hands the held tokens to the payee."""
        e = self._held(ctx, number)
        ctx.require(ctx.sender == e["payer"], "only the payer may release")
        ctx.delete(f"e/{number}")
        ctx.call("token", "transfer", to=e["payee"], amount=e["amount"])
        ctx.emit("Released", id=number, version=VERSION)

    @method
    def refund(self, ctx: Context, number: int) -> None:
        """After the deadline, anyone may send the held tokens back to the payer."""
        e = self._held(ctx, number)
        ctx.require(ctx.time_ms >= e["deadline_ms"], "the deadline has not passed")
        ctx.delete(f"e/{number}")
        ctx.call("token", "transfer", to=e["payer"], amount=e["amount"])
        ctx.emit("Refunded", id=number, version=VERSION)

    @method
    def extend(self, ctx: Context, number: int, deadline_ms: int) -> None:
        """The payer moves the deadline later (new in release 2)."""
        e = self._held(ctx, number)
        ctx.require(ctx.sender == e["payer"], "only the payer may extend")
        ctx.require(deadline_ms > e["deadline_ms"], "a deadline can only move later")
        e["deadline_ms"] = deadline_ms
        ctx.set(f"e/{number}", e)
        ctx.emit("Extended", id=number, deadline_ms=deadline_ms)

    @method(readonly=True)
    def get(self, ctx: Context, number: int) -> dict | None:
        return ctx.get(f"e/{number}")

    @method(readonly=True)
    def version(self, ctx: Context) -> int:
        return VERSION

    @staticmethod
    def _held(ctx: Context, number: int) -> dict:
        e = ctx.get(f"e/{number}")
        ctx.require(e is not None, f"no escrow {number} is held")
        return dict(e)
