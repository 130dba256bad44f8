"""A contract under the name ``token`` that is not the built-in token (fast-path tests)."""

from __future__ import annotations

from typing import Any

from accord.contracts.base import Context, Contract, method

PAYER = bytes.fromhex("25f47872a7433b48f70871193e943c39d3af8016")
"""The one funded account (the address of ``AccountKey.from_name("fast-0")``)."""


class FeeToken(Contract):
    """Another contract under the name ``token``: a transfer that also burns a fee. The fast
    path must never run for it, though its method has the built-in's name and arguments."""

    name = "token"

    def genesis_state(self) -> dict[str | bytes, Any]:
        return {PAYER: 1_000}

    @method
    def transfer(self, ctx: Context, to: bytes, amount: int) -> None:
        balance = ctx.get(ctx.sender, 0)
        ctx.require(balance >= amount + 1, "cannot pay the fee")
        ctx.set(ctx.sender, balance - amount - 1)
        ctx.set(to, ctx.get(to, 0) + amount)
        ctx.emit("Fee", amount=1)
