"""Loans: a lender approves a loan only with an anti-stacking proof from the borrower.

The talk's example: a borrower B holds balances s_i at lenders L_i, known only to B and L_i.
Applying for a new loan of ``amount``, B proves (circuits/anti_stacking.circom) that the sum
of the balances that every registered lender signed for the current epoch is below
``max_exposure - amount - approved``, where ``approved`` is what this contract already approved
for B in the same epoch (so stacking several applications within one epoch does not work
either). Nothing else about B's balances is revealed.

Only a registered lender applies, and the proof binds the loan: its ``bind`` public input is
:func:`accord.zk.notes.loan_bind` of (chain id, the applying lender's account, borrower,
amount, epoch), derived here from the transaction. A proof the borrower made for lender X's
loan of 5,000 thus fails for anyone else who submits it first (front-running), for another
amount (a stale proof replayed), another epoch or another chain.

Genesis (``zk_params["loans"]``): ``lenders`` -- the lenders' BabyJubJub keys ([x, y] decimal
strings, at most the circuit's ``slots``), ``accounts`` -- the lenders' account addresses
(hex, 20 bytes; the accounts that may call ``apply``), ``slots`` (the circuit's n), ``max_exposure``,
``epoch_ms`` (how long an attestation stays current; the epoch is ``time_ms // epoch_ms`` of the
block). Free slots are filled with the public null lender (see ``accord.zk.notes``).

State: ``b"a" + borrower + epoch`` -> amount approved in that epoch; ``b"l" + tx hash`` -> the
approved application.
"""

from __future__ import annotations

from typing import Any

from accord.base.encoding import Value
from accord.base.errors import GenesisError
from accord.contracts.base import Context, Contract, method
from accord.zk import notes as zk
from accord.zk.babyjub import check_key

CIRCUIT = "anti_stacking"
DEFAULT_EPOCH_MS = 24 * 3600 * 1000


def _params(genesis: Any) -> dict[str, Any]:
    p = genesis.zk_params.get("loans") or {}
    if not isinstance(p, dict):
        raise GenesisError("zk_params.loans must be an object")
    return p


class Loans(Contract):
    name = "loans"

    def __init__(self, genesis: Any) -> None:
        super().__init__(genesis)
        p = _params(genesis)
        slots = p.get("slots", 0)
        lenders = p.get("lenders", [])
        if type(slots) is not int or slots < 0 or not isinstance(lenders, list):
            raise GenesisError("zk_params.loans: slots must be an int, lenders a list")
        if len(lenders) > slots:
            raise GenesisError("zk_params.loans: more lenders than circuit slots")
        keys = []
        try:
            for k in lenders:
                keys.append(check_key((int(str(k[0])), int(str(k[1]))), "a lender key"))
        except (ValueError, TypeError, IndexError) as e:
            raise GenesisError(f"zk_params.loans.lenders: {e}") from None
        if slots > len(keys):
            null = zk.null_lender_key()
            assert null is not None  # the identity point is never a lender key
            keys += [null] * (slots - len(keys))
        accounts = p.get("accounts", [])
        try:
            self.accounts = {bytes.fromhex(str(a)) for a in accounts}
        except (ValueError, TypeError) as e:
            raise GenesisError(f"zk_params.loans.accounts: {e}") from None
        if not isinstance(accounts, list) or any(len(a) != 20 for a in self.accounts):
            raise GenesisError("zk_params.loans.accounts must be 20-byte hex addresses")
        self.keys: list[tuple[int, int]] = keys
        self.max_exposure = int(p.get("max_exposure", 0))
        self.epoch_ms = int(p.get("epoch_ms", DEFAULT_EPOCH_MS))
        if self.epoch_ms <= 0 or not 0 <= self.max_exposure < 2**64:
            raise GenesisError("zk_params.loans: bad epoch_ms or max_exposure")

    def genesis_state(self) -> dict[str | bytes, Value]:
        return {}

    @method
    def apply(self, ctx: Context, borrower: bytes, amount: int, epoch: int, proof: bytes) -> dict:
        """Approve a loan of ``amount`` to ``borrower`` (a 32-byte id) for the calling lender
        (a registered lender account; the proof must be bound to it and to this loan)."""
        ctx.require(len(self.keys) > 0, "no lenders registered in genesis")
        ctx.require(ctx.sender in self.accounts, "only a registered lender may apply")
        ctx.require(
            len(borrower) == 32 and int.from_bytes(borrower, "big") < zk.FIELD,
            "borrower must be a 32-byte field element",
        )
        ctx.require(0 < amount < 2**63, "amount must be positive")
        current = ctx.time_ms // self.epoch_ms
        ctx.require(epoch == current, f"attestations must be for the current epoch {current}")
        ctx.require(len(proof) == 128, "the proof must be 128 compressed bytes")
        key = b"a" + borrower + epoch.to_bytes(8, "big")
        approved = int(ctx.get(key, 0))
        limit = self.max_exposure - amount - approved
        ctx.require(limit > 0, "the amount alone exceeds the borrower's remaining exposure")
        bind = zk.loan_bind(
            ctx.chain_id, ctx.sender, int.from_bytes(borrower, "big"), amount, epoch
        )
        public = [
            limit,
            int.from_bytes(borrower, "big"),
            epoch,
            *[c for k in self.keys for c in k],
            bind,
        ]
        ctx.require(
            ctx.verify_proof(CIRCUIT, proof, public),
            "invalid anti-stacking proof: balances not shown below the limit",
        )
        ctx.set(key, approved + amount)
        ctx.set(
            b"l" + ctx.tx_hash,
            {"borrower": borrower, "amount": amount, "epoch": epoch, "lender": ctx.sender},
        )
        ctx.emit(
            "LoanApproved",
            borrower=borrower,
            amount=amount,
            epoch=epoch,
            lender=ctx.sender,
            limit=limit,
        )
        return {"limit": limit}

    @method(readonly=True)
    def approved(self, ctx: Context, borrower: bytes, epoch: int) -> int:
        return int(ctx.get(b"a" + borrower + epoch.to_bytes(8, "big"), 0))
