"""Allowances mean something: no contract can move its caller's tokens without an approval the
owner signed, whatever the contract does (the "guestbook" attack), and the shielded pool takes a
deposit only from its direct caller's explicit allowance.

Regression for the token's old rule (a contract calling ``transfer_from`` with
``owner == ctx.origin`` skipped the allowance), which let a genesis-registered guestbook take the
whole balance of every account that signed it.
"""

from __future__ import annotations

from typing import Any

from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ContractEntry, Genesis
from accord.base.types import Tx
from accord.contracts import BUILTINS, Runtime, contract_address
from accord.contracts.base import Context, Contract, method
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import BlockResult, code_hash
from accord.node.config import builtin_contract_entries

from .support.genesis import make_genesis

ALICE = AccountKey.from_name("allowance-alice")
MALLORY = AccountKey.from_name("allowance-mallory")


class Guestbook(Contract):
    """Looks harmless ("sign the guestbook"); tries every way to drain whoever signs it."""

    name = "guestbook"

    @method
    def sign(self, ctx: Context, message: str) -> str:
        ctx.set("last", message)
        victim = ctx.origin
        balance = ctx.call("token", "balance_of", account=victim)
        stolen = []
        # 1. pull from the signer straight to the attacker (the old origin exception)
        for owner in (ctx.origin, ctx.sender):
            try:
                ctx.call("token", "transfer_from", owner=owner, to=MALLORY.address, amount=balance)
                stolen.append("transfer_from")
            except Exception:  # noqa: BLE001 - a refused pull is what we want to see
                pass
        # 2. use the victim's approval to the pool: a deposit the guestbook would own
        try:
            ctx.call("token", "transfer_from", owner=victim, to=ctx.address, amount=1)
            stolen.append("to-self")
        except Exception:  # noqa: BLE001
            pass
        return ",".join(stolen) or "nothing"


CONTRACTS = {**BUILTINS, "guestbook": Guestbook}


def genesis() -> Genesis:
    entries = [
        *builtin_contract_entries(),
        ContractEntry(name="guestbook", code_hash=code_hash(Guestbook).hex()),
    ]
    return make_genesis(1, balances={ALICE.address.hex(): 1_000}, contracts=entries)


class Ledger:
    def __init__(self) -> None:
        self.g = genesis()
        # The attacker's address comes from a test key, an import no contract may make.
        self.rt = Runtime(self.g, CONTRACTS, check_code=False)
        self.st = MemoryState(self.rt.genesis_writes())
        self.nonces: dict[bytes, int] = {}
        self.height = 0

    def send(self, key: AccountKey, contract: str, method: str, **args: Any) -> BlockResult:
        n = self.nonces.get(key.address, 0)
        t = Tx.create(
            key, chain_id=self.g.chain_id, contract=contract, method=method, args=args, nonce=n
        )
        self.height += 1
        r = self.rt.execute_block(self.st, [t], height=self.height, time_ms=0)
        self.st.apply(r.writes)
        self.nonces[key.address] = n + 1
        return r

    def balance(self, who: bytes) -> int:
        return self.rt.query(self.st, "token", "balance_of", {"account": who})


def test_guestbook_cannot_drain_its_signer() -> None:
    led = Ledger()
    rc = led.send(ALICE, "guestbook", "sign", message="hello").receipts[0]
    assert rc.ok, rc
    assert rc.result == "nothing"
    assert led.balance(ALICE.address) == 1_000
    assert led.balance(MALLORY.address) == 0


def test_guestbook_cannot_spend_an_approval_to_another_contract() -> None:
    """Alice approved the pool for a deposit; the guestbook cannot use that approval."""
    led = Ledger()
    pool = contract_address("shielded_pool")
    assert led.send(ALICE, "token", "approve", spender=pool, amount=500).receipts[0].ok
    rc = led.send(ALICE, "guestbook", "sign", message="hi").receipts[0]
    assert rc.ok and rc.result == "nothing"
    assert led.balance(ALICE.address) == 1_000
    assert (
        led.rt.query(led.st, "token", "allowance", {"owner": ALICE.address, "spender": pool}) == 500
    )


def test_an_approval_to_the_contract_is_what_lets_it_pull() -> None:
    """The same guestbook with an explicit approval: it can take exactly that much, no more."""
    led = Ledger()
    gb = contract_address("guestbook")
    assert led.send(ALICE, "token", "approve", spender=gb, amount=1).receipts[0].ok
    rc = led.send(ALICE, "guestbook", "sign", message="hi").receipts[0]
    assert rc.ok and rc.result == "to-self"
    assert led.balance(ALICE.address) == 999
    assert led.balance(gb) == 1
    assert led.balance(MALLORY.address) == 0


# --- second review: a contract that rewrites who it is before calling ------------------------


class Impostor(Contract):
    """Calls the token (or ``mpc_loans``) after assigning the context's identity: its
    ``address`` to the signer's (a callee's ``sender`` is the caller's ``address``), its
    ``contract`` to another contract's name (a callee's ``caller``, and the name events are
    emitted under)."""

    name = "guestbook"

    @method
    def sign(self, ctx: Context, message: str) -> str:
        done = []
        # Plain assignments (no setattr: contracts run without it, see
        # accord.contracts.determinism); each must raise AttributeError.
        try:
            ctx.address = ctx.origin  # type: ignore[misc]
            done.append("address")
        except AttributeError:
            pass
        try:
            ctx.address = contract_address("shielded_pool")  # type: ignore[misc]
            done.append("address")
        except AttributeError:
            pass
        try:
            ctx.contract = "shielded_pool"  # type: ignore[misc]
            done.append("contract")
        except AttributeError:
            pass
        try:
            ctx.sender = ctx.origin  # type: ignore[misc]
            done.append("sender")
        except AttributeError:
            pass
        try:
            ctx.origin = MALLORY.address  # type: ignore[misc]
            done.append("origin")
        except AttributeError:
            pass
        try:
            ctx.caller = "mpc_oracle"  # type: ignore[misc]
            done.append("caller")
        except AttributeError:
            pass
        try:
            ctx.height = 10**9  # type: ignore[misc]
            done.append("height")
        except AttributeError:
            pass
        # a pool event under the impostor's name would feed wallets and the regulator's
        # audit a transfer that never was
        ctx.emit("Transfer", commitments=[bytes(32)], deposit=10**6)
        try:
            balance = ctx.call("token", "balance_of", account=ctx.origin)
            if balance:
                ctx.call("token", "transfer", to=MALLORY.address, amount=balance)
                done.append("transfer")
        except Exception:  # noqa: BLE001 - a refused move is what we want to see
            pass
        return ",".join(done) or "nothing"


def test_a_contract_cannot_take_another_identity_before_a_call() -> None:
    """Fails on the old Context, whose identity fields were plain attributes: the impostor set
    ``ctx.address = ctx.origin`` and the token paid Mallory the whole of Alice's balance."""
    g = make_genesis(
        1,
        balances={ALICE.address.hex(): 1_000},
        contracts=[
            *builtin_contract_entries(),
            ContractEntry(name="guestbook", code_hash=code_hash(Impostor).hex()),
        ],
    )
    # check_code=False: a hostile contract in a test module (the registration check would
    # refuse its imports first); the restricted builtins still apply.
    rt = Runtime(g, {**BUILTINS, "guestbook": Impostor}, check_code=False)
    st = MemoryState(rt.genesis_writes())
    t = Tx.create(
        ALICE,
        chain_id=g.chain_id,
        contract="guestbook",
        method="sign",
        args={"message": "x"},
        nonce=0,
    )
    r = rt.execute_block(st, [t], height=1, time_ms=0)
    rc = r.receipts[0]
    assert rc.ok, rc
    assert rc.result == "nothing"
    assert [e.contract for e in rc.events] == ["guestbook"]
    st.apply(r.writes)
    assert rt.query(st, "token", "balance_of", {"account": ALICE.address}) == 1_000
    assert rt.query(st, "token", "balance_of", {"account": MALLORY.address}) == 0
