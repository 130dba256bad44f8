"""The light client re-verifies shielded-pool proofs in pure Python (no Node.js on its side).

A real ledger with the shielded pool (LMDB, runtime, the validator's BLS certificates) serves
the client API; a deposit and a private transfer with real Groth16 proofs (the test suite's
small ceremony, cached on disk) are committed. The light client syncs, proves each transaction
and receipt against certified headers, then checks the proof against the verification key in
genesis. Tampered proofs, rebound arguments and reverted or non-pool transactions are refused.

The ledger here is the API tests' single validator, committing one block per call, so that
replays and exact heights are easy to set up; the same checks against four Gosig validators are
in ``test_light_zk_devnet.py``. The validator verifies proofs as a ``Node`` does
(``accord.zk.verifier.verifier_from_genesis``: the snarkjs worker when Node.js is present).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import ProofError
from accord.base.genesis import Genesis
from accord.base.types import Tx
from accord.light import LightClient, shielded_transfer
from accord.node.config import builtin_contract_entries
from accord.zk import artifacts
from accord.zk import notes as zk

from .support.genesis import make_genesis
from .support.light_pool import PoolLedger

pytestmark = pytest.mark.timeout(900)

ALICE = AccountKey.from_name("light-zk-alice")
REG = zk.RegulatorKey.from_seed(b"light-regulator")
A_KEY = zk.SpendingKey.from_seed(b"light-alice")
B_KEY = zk.SpendingKey.from_seed(b"light-bob")


def pool_genesis(keys: artifacts.CircuitKeys) -> Genesis:
    g = make_genesis(
        1,
        chain_id="accord-light-zk",
        balances={ALICE.address.hex(): 1_000},
        contracts=builtin_contract_entries(),
    )
    reg = REG.public
    return g.model_copy(
        update={
            "zk_circuits": {"shielded_transfer": keys.vk},
            "zk_params": {
                "regulator": [str(reg[0]), str(reg[1])],
                "shielded_pool": {"depth": artifacts.TEST_DEPTH},
            },
        }
    )


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolLedger, Tx, Tx, Tx]]:
    keys = artifacts.test_keys("shielded_transfer")
    ledger = PoolLedger(keys, tmp_path_factory.mktemp("light-zk"), pool_genesis(keys), ALICE)
    try:
        # A deposit of 100 into a note for Alice, then a private transfer of 60 to Bob.
        plan = zk.plan_transfer(
            A_KEY,
            [],
            [(A_KEY.address, 100)],
            ledger.tree,
            REG.public,
            rng=ledger.rng,
            deposit=100,
            chain_id=ledger.genesis.chain_id,
        )
        deposit_args = ledger.args(plan)
        ledger.approve(100)  # the pool pulls a deposit only within an approval Alice signed
        deposit = ledger.send(deposit_args)
        assert ledger.last_receipt.ok, ledger.last_receipt.error
        note = zk.Note.decrypt(A_KEY, plan.note_ciphertexts[0])
        assert note is not None and note.value == 100
        plan2 = zk.plan_transfer(
            A_KEY,
            [zk.SpendInput(note, 0)],
            [(B_KEY.address, 60), (A_KEY.address, 40)],
            ledger.tree,
            REG.public,
            rng=ledger.rng,
            chain_id=ledger.genesis.chain_id,
        )
        transfer = ledger.send(ledger.args(plan2))
        replay = ledger.send(deposit_args)  # same nullifiers again: the pool reverts it
        yield ledger, deposit, transfer, replay
    finally:
        ledger.close()


def test_light_client_verifies_shielded_proofs(
    pool: tuple[PoolLedger, Tx, Tx, Tx], tmp_path: Path
) -> None:
    ledger, deposit, transfer, replay = pool
    with LightClient(ledger.genesis, [ledger.url], store=tmp_path / "l.json") as lc:
        lc.sync()
        d = lc.verify_shielded(deposit.hash)
        assert d.deposit == 100 and d.withdrawal == 0
        assert d.tx is not None and d.tx.receipt.ok and d.tx.height == 2
        assert list(d.nullifiers) == deposit.args["inputs"][1:3]
        t = lc.verify_shielded(transfer.hash)
        assert t.deposit == 0 and t.withdrawal == 0 and t.tx is not None and t.tx.height == 3
        assert "shielded_proof" in t.to_json()["verified"]
        with pytest.raises(ProofError, match="reverted"):
            lc.verify_shielded(replay.hash)
        assert lc.faults == []


def test_tampered_shielded_arguments_are_refused(pool: tuple[PoolLedger, Tx, Tx, Tx]) -> None:
    ledger, deposit, transfer, _ = pool
    g = ledger.genesis
    args = dict(transfer.args)
    assert (
        shielded_transfer(g.zk_circuits, g.zk_params, args, chain_id=g.chain_id).deposit == 0
    )  # the genuine one

    proof = bytearray(args["proof"])
    proof[5] ^= 0x01
    with pytest.raises(ProofError):
        shielded_transfer(
            g.zk_circuits, g.zk_params, {**args, "proof": bytes(proof)}, chain_id=g.chain_id
        )
    # A proof moved onto another transfer's public inputs (both genuine) does not verify.
    with pytest.raises(ProofError, match="does not verify|bound"):
        shielded_transfer(
            g.zk_circuits,
            g.zk_params,
            {**args, "inputs": deposit.args["inputs"], "notes": deposit.args["notes"]},
            chain_id=g.chain_id,
        )
    with pytest.raises(ProofError, match="bound"):
        shielded_transfer(
            g.zk_circuits, g.zk_params, {**args, "recipient": b"\x01" * 20}, chain_id=g.chain_id
        )
    other_reg = zk.RegulatorKey.from_seed(b"not-the-regulator").public
    with pytest.raises(ProofError, match="regulator"):
        shielded_transfer(
            g.zk_circuits,
            {"regulator": [str(other_reg[0]), str(other_reg[1])]},
            args,
            chain_id=g.chain_id,
        )
    with pytest.raises(ProofError):
        shielded_transfer(
            g.zk_circuits, g.zk_params, {**args, "inputs": args["inputs"][:-1]}, chain_id=g.chain_id
        )


def test_non_pool_transaction_is_not_a_shielded_transfer(
    pool: tuple[PoolLedger, Tx, Tx, Tx],
) -> None:
    ledger, deposit, _, _ = pool
    from accord.light import Checker
    from accord.light.verify import VerifiedTx

    checker = Checker(ledger.genesis)
    with LightClient(ledger.genesis, [ledger.url]) as lc:
        vt = lc.verify_tx(deposit.hash)
    fake = dataclasses.replace(vt, tx=dataclasses.replace(vt.tx, contract="token"))
    assert isinstance(fake, VerifiedTx)
    with pytest.raises(ProofError, match="not a shielded-pool"):
        checker.check_shielded(fake)


def test_regulator_audit_through_a_light_client(
    pool: tuple[PoolLedger, Tx, Tx, Tx], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A regulator without a validator of its own audits through any node's API: every block
    is checked against its certified header, and the rows equal those read from LMDB."""
    import json

    from accord.cli.main import main as cli
    from accord.zk import audit as zaudit

    ledger, deposit, transfer, _ = pool
    expected = zaudit.audit(REG, ledger.node.store)
    assert [r.tx_hash for r in expected] == [deposit.hash.hex(), transfer.hash.hex()]
    with LightClient(ledger.genesis, [ledger.url]) as lc:
        assert zaudit.audit(REG, zaudit.VerifiedSource(lc)) == expected
    key = tmp_path / "regulator.json"
    pub = REG.public
    key.write_text(json.dumps({"secret": str(REG.secret), "public": [str(pub[0]), str(pub[1])]}))
    genesis = tmp_path / "genesis.json"
    genesis.write_text(ledger.genesis.model_dump_json())
    assert (
        cli(
            [
                "regulator",
                "audit",
                "--node",
                ledger.url,
                "--genesis",
                str(genesis),
                "--key",
                str(key),
                "--format",
                "json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [(r["value_1"], r["value_2"], r["deposit"]) for r in rows] == [
        (100, 0, 100),
        (60, 40, 0),
    ]
