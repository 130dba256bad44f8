"""A contract that hands a proof to the runtime's verifier and records the answer (for tests
that compare the verifiers' receipts).

It lives in a module of its own: the runtime restricts and meters every function a
contract's module holds, and a test module also holds hypothesis's wrapped tests, whose code
sits at no line of the source (the meter refuses them: ``Unmeterable``)."""

from __future__ import annotations

from accord.contracts.base import Context, Contract, method

CIRCUIT = "shielded_transfer"


class ProofProbe(Contract):
    """Passes a proof to the runtime's verifier and records the answer."""

    name = "proofprobe"

    @method
    def check_json(self, ctx: Context, proof: dict, inputs: list) -> bool:
        return ctx.verify_proof(CIRCUIT, proof, inputs)

    @method
    def check_bytes(self, ctx: Context, proof: bytes, inputs: list) -> bool:
        return ctx.verify_proof(CIRCUIT, proof, inputs)
