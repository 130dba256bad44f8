"""A lender's own contract: records borrowers who proved a credit score above a threshold.

It calls ``ctx.verify_proof("credit_score", proof, public_inputs)`` exactly as the built-in
contracts do; the verification key comes from genesis (``zk_circuits["credit_score"]``).
"""

from __future__ import annotations

from accord.contracts import Context, Contract, method

THRESHOLD = 700


class CreditGate(Contract):
    name = "credit_gate"

    @method
    def register(self, ctx: Context, commitment: bytes, proof: bytes) -> bool:
        ctx.require(len(commitment) == 32, "the commitment is a 32-byte field element")
        public = [int.from_bytes(commitment, "big"), THRESHOLD]
        ctx.require(ctx.verify_proof("credit_score", proof, public),  # type: ignore[arg-type]
                    "no valid proof of a score above the threshold")
        ctx.set(commitment, ctx.sender)
        ctx.emit("Qualified", commitment=commitment, borrower=ctx.sender)
        return True

    @method(readonly=True)
    def qualified(self, ctx: Context, commitment: bytes) -> bool:
        return ctx.has(commitment)
