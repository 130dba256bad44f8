"""A contract author's walk-through: write an escrow contract, test it in the in-process
sandbox (accord.testing), watch the determinism check refuse a careless variant, and upgrade
the contract by a governance vote to the release in contract_author_v2.py.

Run it: ``python examples/contract_author.py`` (tests/test_example_contract_author.py does,
and docs/contracts.md walks through it). It prints one line per step and exits non-zero if a
step does not behave as described.
"""

from __future__ import annotations

from accord.contracts.base import Context, Contract, method

VERSION = 1


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


CARELESS = """
import random
from accord.contracts.base import Context, Contract, method

class Lottery(Contract):
    name = "lottery"

    @method
    def draw(self, ctx: Context) -> int:
        return random.randrange(100)
"""


def step(text: str, ok: bool) -> None:
    print(("ok   " if ok else "FAIL ") + text, flush=True)
    if not ok:
        raise SystemExit(1)


def main() -> None:
    from contract_author_v2 import Escrow as EscrowV2

    from accord.contracts import contract_address
    from accord.contracts.determinism import NondeterministicContract
    from accord.testing import Sandbox, check, check_source

    check(Escrow)  # what a validator runs when the contract is registered
    step("the determinism check accepts Escrow", True)
    try:
        check_source(CARELESS, "lottery.py")
        step("a contract importing random is refused", False)
    except NondeterministicContract as e:
        step(f"a contract importing random is refused: {e.message.split(': ', 2)[-1]}", True)

    with Sandbox(
        [Escrow], installed=[EscrowV2], accounts={"alice": 1_000, "bob": 0}, validators=4
    ) as sb:
        bob = sb.address("bob")
        escrow = contract_address("escrow")  # where the contract holds tokens
        r = sb.call("alice", "token", "approve", spender=escrow, amount=300)
        step("alice lets the escrow take 300 tokens", r.ok)
        r = sb.call("alice", "escrow", "open", payee=bob, amount=300, deadline_ms=10_000)
        step(f"alice opens escrow {r.result} for bob ({r.gas_used} gas)", r.ok and r.result == 0)
        step("the tokens are held", sb.balance("alice") == 700 and sb.balance(escrow) == 300)
        r = sb.call("bob", "escrow", "release", number=0)
        step(f"bob cannot release: {r.error}", not r.ok and r.error_code == "revert")
        r = sb.call("alice", "escrow", "release", number=0)
        step("alice releases: bob has 300", r.ok and sb.balance("bob") == 300)
        step("the Released event says version 1", sb.events(r, "Released")[0].data["version"] == 1)

        r = sb.call("alice", "token", "approve", spender=escrow, amount=50)
        r = sb.call("alice", "escrow", "open", payee=bob, amount=50, deadline_ms=20_000)
        step("alice opens escrow 1 with a deadline at 20 s", r.ok and r.result == 1)
        r = sb.call("alice", "escrow", "refund", number=1)
        step(f"no refund before the deadline: {r.error}", not r.ok)
        sb.call("alice", "token", "approve", spender=escrow, amount=1)
        r = sb.call(
            "alice", "escrow", "open", payee=bob, amount=1, deadline_ms=30_000, gas_limit=6_000
        )
        left = sb.query("token", "allowance", owner=sb.address("alice"), spender=escrow)
        step(
            f"with 6000 gas the call fails as {r.error_code} and changes nothing",
            r.error_code == "out_of_gas" and r.gas_used == 6_000 and left == 1,
        )

        at = sb.upgrade(EscrowV2)  # the members vote; every validator switches at `at`
        step(
            f"the members upgrade escrow to v2, in force at height {at}",
            sb.query("escrow", "version") == 2,
        )
        r = sb.call("bob", "escrow", "extend", number=1, deadline_ms=5_000)
        step(
            f"v2's new method works on v1's state: {r.error}",
            not r.ok and "only the payer" in r.error,
        )
        sb.advance(time_ms=20_000)
        r = sb.call("bob", "escrow", "refund", number=1)
        step(
            "after the deadline anyone refunds: alice has 700 back",
            r.ok and sb.balance("alice") == 700,
        )
        step("every validator has the same head", len(set(sb.heads())) == 1)
    print("contract author example: all steps passed")


if __name__ == "__main__":
    main()
