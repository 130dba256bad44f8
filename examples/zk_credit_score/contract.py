"""A lender's own contract: records borrowers who proved a bureau-signed credit score above a
threshold.

It calls ``ctx.verify_proof("credit_score", proof, public_inputs)`` exactly as the built-in
contracts do; the verification key comes from genesis (``zk_circuits["credit_score"]``), the
credit bureau's EdDSA-Poseidon key from ``zk_params["credit_gate"]["bureau"]``.

What binds what (the pattern to copy):

* the score is the bureau's statement, signed for a subject and an epoch, not a commitment
  the borrower made up;
* the subject public input is the transaction's sender, set here, so a proof registers only
  the account the bureau scored: someone replaying it from another account fails;
* the bind public input is derived from the chain id, so a proof from another chain fails;
* records are keyed by the sender: nobody can overwrite another account's record;
* a score is current for one epoch, ``time_ms // epoch_ms`` of the block time
  (``zk_params["credit_gate"]["epoch_ms"]``, default 30 days): ``register`` takes only a
  proof of the current epoch, never replaces a record with an older one, and ``qualified``
  answers True only for a record of the current epoch (the block time inside a transaction;
  in a query, the ``time_ms`` the query runs at). An old good score therefore stops counting
  when its epoch ends, and the bureau's next statement decides.
"""

from __future__ import annotations

from typing import Any

from accord.base import encoding
from accord.base.errors import GenesisError
from accord.contracts import Context, Contract, method
from accord.zk.babyjub import check_key
from accord.zk.poseidon import FIELD, poseidon

THRESHOLD = 700
EPOCH_MS = 30 * 24 * 3600 * 1000  # default epoch length: the bureau re-scores monthly
SCORE_TAG = int.from_bytes(b"accord-example/credit-score/v1", "big")
BIND_DOMAIN = "accord-example/credit-bind/v1"


def score_message(subject: bytes, score: int, epoch: int) -> int:
    """What the bureau signs: Poseidon(SCORE_TAG, subject, score, epoch)."""
    return poseidon(SCORE_TAG, int.from_bytes(subject, "big"), score, epoch)


def credit_bind(chain_id: str) -> int:
    return int.from_bytes(encoding.hash_value([BIND_DOMAIN, chain_id]), "big") % FIELD


def public_inputs(bureau: tuple[int, int], subject: bytes, epoch: int, chain_id: str) -> list[int]:
    return [
        bureau[0],
        bureau[1],
        THRESHOLD,
        int.from_bytes(subject, "big"),
        epoch,
        credit_bind(chain_id),
    ]


class CreditGate(Contract):
    name = "credit_gate"

    def __init__(self, genesis: Any) -> None:
        super().__init__(genesis)
        raw: Any = (genesis.zk_params.get("credit_gate") or {}).get("bureau")
        try:
            self.bureau = check_key((int(str(raw[0])), int(str(raw[1]))), "the bureau key")
        except (TypeError, ValueError, IndexError) as e:
            raise GenesisError(f"zk_params.credit_gate.bureau: {e}") from None
        epoch_ms: Any = (genesis.zk_params.get("credit_gate") or {}).get("epoch_ms", EPOCH_MS)
        if not isinstance(epoch_ms, int) or isinstance(epoch_ms, bool) or epoch_ms <= 0:
            raise GenesisError("zk_params.credit_gate.epoch_ms must be a positive integer")
        self.epoch_ms = epoch_ms

    def current_epoch(self, ctx: Context) -> int:
        return ctx.time_ms // self.epoch_ms

    @method
    def register(self, ctx: Context, epoch: int, proof: bytes) -> bool:
        current = self.current_epoch(ctx)
        ctx.require(epoch == current, f"the score must be of the current epoch {current}")
        ctx.require(0 <= epoch < 2**32, "epoch out of range")
        recorded = ctx.get(ctx.sender)
        ctx.require(
            recorded is None or int(recorded) <= epoch,
            "a newer score is recorded: an older one cannot replace it",
        )
        public = public_inputs(self.bureau, ctx.sender, epoch, ctx.chain_id)
        ctx.require(
            ctx.verify_proof("credit_score", proof, public),
            "no valid proof of a bureau-signed score above the threshold",
        )
        ctx.set(ctx.sender, epoch)
        ctx.emit("Qualified", borrower=ctx.sender, epoch=epoch)
        return True

    @method(readonly=True)
    def qualified(self, ctx: Context, borrower: bytes) -> bool:
        recorded = ctx.get(borrower)
        return recorded is not None and int(recorded) == self.current_epoch(ctx)
