"""Anti-stacking: lender attestations (EdDSA-Poseidon) summed below a limit in zero knowledge,
and the loans contract that approves a loan only with such a proof.

The test circuit has one lender slot (it fits the small 2^13 test ceremony); production uses 6
(``accord.zk.build.ANTI_STACKING_LENDERS``, a 2^15 ceremony) with the same template."""

from __future__ import annotations

from typing import Any

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import ProofError, ValidationError
from accord.base.types import Tx
from accord.contracts import BUILTINS, Runtime
from accord.contracts.loans import Loans
from accord.contracts.memory import MemoryState
from accord.node.config import builtin_contract_entries
from accord.zk import artifacts, babyjub, groth16
from accord.zk import notes as zk
from accord.zk.verifier import PyProofVerifier

from .support.genesis import make_genesis

pytestmark = pytest.mark.timeout(900)

LENDER_SECRET = b"\x11" * 32
LENDER_KEY = babyjub.eddsa_public_key(LENDER_SECRET)
OTHER_SECRET = b"\x22" * 32
BORROWER = 123456789
EPOCH_MS = 1_000_000
LENDER_ACCOUNT = AccountKey.from_name("zk-lender")


@pytest.fixture(scope="module")
def keys() -> artifacts.CircuitKeys:
    return artifacts.test_keys("anti_stacking")


def _proof(
    keys: artifacts.CircuitKeys,
    balance: int,
    limit: int,
    epoch: int,
    secret: bytes = LENDER_SECRET,
    bind: int = 0,
) -> tuple[bytes, list[int]]:
    inp, public = zk.plan_anti_stacking(
        [LENDER_KEY],
        [(balance, zk.attest(secret, BORROWER, balance, epoch))],
        borrower=BORROWER,
        epoch=epoch,
        limit=limit,
        slots=artifacts.TEST_LENDERS,
        bind=bind,
    )
    proof, pub = keys.prove(inp)
    assert pub == public
    return groth16.compress_proof(proof), pub


def test_proof_of_sum_below_limit(keys: artifacts.CircuitKeys) -> None:
    proof, public = _proof(keys, 700, 1_000, 3)
    v = PyProofVerifier({"anti_stacking": keys.vk})
    assert v.verify("anti_stacking", proof, public)
    # the same proof says nothing about a smaller limit, another borrower, epoch or loan (bind)
    for i, delta in ((0, -1), (1, 1), (2, 1), (len(public) - 1, 1)):
        changed = list(public)
        changed[i] += delta
        assert not v.verify("anti_stacking", proof, changed)


def test_no_proof_for_a_sum_at_or_over_the_limit(keys: artifacts.CircuitKeys) -> None:
    with pytest.raises(ValidationError):
        _proof(keys, 1_000, 1_000, 3)
    # force the witness past the Python check: the circuit itself refuses
    inp, _ = zk.plan_anti_stacking(
        [LENDER_KEY],
        [(999, zk.attest(LENDER_SECRET, BORROWER, 999, 3))],
        borrower=BORROWER,
        epoch=3,
        limit=1_000,
        slots=artifacts.TEST_LENDERS,
        bind=0,
    )
    with pytest.raises(ProofError):
        keys.prove({**inp, "limit": 999})


def test_no_proof_with_a_forged_or_altered_attestation(keys: artifacts.CircuitKeys) -> None:
    with pytest.raises(ProofError):  # signed by someone else than the registered lender
        _proof(keys, 10, 1_000, 3, secret=OTHER_SECRET)
    inp, _ = zk.plan_anti_stacking(
        [LENDER_KEY],
        [(500, zk.attest(LENDER_SECRET, BORROWER, 500, 3))],
        borrower=BORROWER,
        epoch=3,
        limit=1_000,
        slots=artifacts.TEST_LENDERS,
        bind=0,
    )
    with pytest.raises(ProofError):  # the borrower lowers the attested balance
        keys.prove({**inp, "balance": [100]})


DictState = MemoryState


OTHER_LENDER = AccountKey.from_name("zk-lender-2")
MALLORY = AccountKey.from_name("zk-mallory")


class LoanLedger:
    def __init__(self, keys: artifacts.CircuitKeys) -> None:
        self.keys = keys
        g = make_genesis(1, contracts=builtin_contract_entries())
        self.g = g.model_copy(
            update={
                "zk_circuits": {"anti_stacking": keys.vk},
                "zk_params": {
                    "loans": {
                        "lenders": [[str(LENDER_KEY[0]), str(LENDER_KEY[1])]],
                        "accounts": [LENDER_ACCOUNT.address.hex(), OTHER_LENDER.address.hex()],
                        "slots": artifacts.TEST_LENDERS,
                        "max_exposure": 10_000,
                        "epoch_ms": EPOCH_MS,
                    }
                },
            }
        )
        self.rt = Runtime(
            self.g,
            {**BUILTINS, "loans": Loans},
            proof_verifier=PyProofVerifier.from_genesis(self.g),
        )
        self.st = DictState(self.rt.genesis_writes())
        self.nonces: dict[bytes, int] = {}
        self.height = 0

    def apply(self, key: AccountKey = LENDER_ACCOUNT, **args: Any) -> Any:
        n = self.nonces.get(key.address, 0)
        tx = Tx.create(
            key,
            chain_id=self.g.chain_id,
            contract="loans",
            method="apply",
            args=args,
            nonce=n,
            gas_limit=5_000_000,
        )
        self.nonces[key.address] = n + 1
        self.height += 1
        r = self.rt.execute_block(self.st, [tx], height=self.height, time_ms=3 * EPOCH_MS + 5)
        self.st.apply(r.writes)
        return r.receipts[0]

    def approved(self) -> int:
        return int(
            self.rt.query(
                self.st, "loans", "approved", {"borrower": BORROWER.to_bytes(32, "big"), "epoch": 3}
            )
        )

    def proof(
        self,
        balance: int,
        amount: int,
        epoch: int = 3,
        lender: AccountKey = LENDER_ACCOUNT,
        chain_id: str | None = None,
    ) -> bytes:
        """The borrower's proof for `lender`'s loan of `amount`, against today's approvals."""
        limit = 10_000 - amount - self.approved()
        bind = zk.loan_bind(chain_id or self.g.chain_id, lender.address, BORROWER, amount, epoch)
        return _proof(self.keys, balance, limit, epoch, bind=bind)[0]


def test_loans_contract(keys: artifacts.CircuitKeys) -> None:
    led = LoanLedger(keys)
    borrower = BORROWER.to_bytes(32, "big")
    # sum 4,000 + new 5,000 < 10,000: the limit the contract asks is 10,000 - 5,000 = 5,000
    r = led.apply(borrower=borrower, amount=5_000, epoch=3, proof=led.proof(4_000, 5_000))
    assert r.ok, r.error
    assert led.approved() == 5_000
    assert r.events[0].data["lender"] == LENDER_ACCOUNT.address
    before = dict(led.st.data)
    # stacking in the same epoch: now the limit is 10,000 - 500 - 5,000 = 4,500 <= 4,000 + ...
    with pytest.raises(ValidationError):
        led.proof(4_600, 500)  # no proof: 4,600 is not below 4,500
    # an old epoch's attestation
    r = led.apply(borrower=borrower, amount=500, epoch=2, proof=led.proof(0, 500, epoch=2))
    assert not r.ok and "current epoch" in r.error
    # garbage proof bytes
    r = led.apply(borrower=borrower, amount=500, epoch=3, proof=b"\x00" * 128)
    assert not r.ok
    # every rejected application left the state alone (only nonces moved)
    changed = {k for k in set(before) | set(led.st.data) if before.get(k) != led.st.data.get(k)}
    assert all(k.startswith(b"n/") for k in changed)
    # a truthful proof for the remaining room is accepted
    r = led.apply(borrower=borrower, amount=500, epoch=3, proof=led.proof(4_000, 500))
    assert r.ok, r.error


def test_only_a_registered_lender_may_apply(keys: artifacts.CircuitKeys) -> None:
    """Front-running: Mallory (no lender) submits the borrower's proof first and would have
    been recorded as the lender; another registered lender cannot use it either."""
    led = LoanLedger(keys)
    borrower = BORROWER.to_bytes(32, "big")
    proof = led.proof(1_000, 2_000)  # made for LENDER_ACCOUNT's loan
    r = led.apply(MALLORY, borrower=borrower, amount=2_000, epoch=3, proof=proof)
    assert not r.ok and "only a registered lender" in r.error, r.error
    r = led.apply(OTHER_LENDER, borrower=borrower, amount=2_000, epoch=3, proof=proof)
    assert not r.ok and "invalid anti-stacking proof" in r.error, r.error
    assert led.approved() == 0
    r = led.apply(borrower=borrower, amount=2_000, epoch=3, proof=proof)
    assert r.ok and r.events[0].data["lender"] == LENDER_ACCOUNT.address


def test_a_stale_proof_is_not_replayed_for_another_amount(keys: artifacts.CircuitKeys) -> None:
    """The review's replay: a 5,000 proof made while nothing was approved asks limit 5,000;
    after 1,000 is approved, a loan of 4,000 asks limit 5,000 too. The bind input differs."""
    led = LoanLedger(keys)
    borrower = BORROWER.to_bytes(32, "big")
    stale = led.proof(3_000, 5_000)
    assert led.apply(borrower=borrower, amount=1_000, epoch=3, proof=led.proof(3_000, 1_000)).ok
    r = led.apply(borrower=borrower, amount=4_000, epoch=3, proof=stale)
    assert not r.ok and "invalid anti-stacking proof" in r.error, r.error
    # a proof bound to another chain fails too
    r = led.apply(
        borrower=borrower,
        amount=4_000,
        epoch=3,
        proof=led.proof(3_000, 4_000, chain_id="another-chain"),
    )
    assert not r.ok and "invalid anti-stacking proof" in r.error, r.error
    assert led.approved() == 1_000
