"""The light client verifies shielded transfers committed by a running 4-validator devnet.

Four in-process ``Node``s (Gosig, real BLS certificates, LMDB, loopback) share a genesis that
carries the test verification key in ``zk_circuits`` and the regulator key and pool depth in
``zk_params``; each node wires its own proof verifier from genesis
(``accord.zk.verifier.verifier_from_genesis``). A real deposit and a private transfer (real
Groth16 proofs from the test suite's cached ceremony) go in through ``accord.Client``; once
committed, the light client syncs certified headers and re-verifies each proof in pure Python.
A tampered proof is refused, and the validators themselves revert a tampered submission.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from accord.base.errors import ProofError
from accord.base.types import Receipt, Tx
from accord.client import Client
from accord.contracts import contract_address
from accord.light import LightClient, shielded_transfer
from accord.node.config import demo_account
from accord.zk import artifacts, groth16
from accord.zk import notes as zk

from .support.inproc import ThreadedNetwork

pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")

SENDER = demo_account(0)  # funded by init_network's demo balances
REG = zk.RegulatorKey.from_seed(b"light-regulator")
A_KEY = zk.SpendingKey.from_seed(b"light-devnet-alice")
B_KEY = zk.SpendingKey.from_seed(b"light-devnet-bob")


class ZkDevnet(ThreadedNetwork):
    """Four validators with the shielded pool on a private event-loop thread."""

    def __init__(self, root: Path, keys: artifacts.CircuitKeys) -> None:
        reg = REG.public
        # Rounds long enough for a block holding one shielded transfer: the four validators
        # share this process's GIL, so their executions of it run one after another (0.3-1.2 s
        # per build or validation seen on a slow 2-core machine, against 200 ms of stage I in
        # 400 ms rounds: such a block never committed there).
        super().__init__(
            root,
            name="light-zk-devnet",
            round_ms=2000,
            stage2_ms=500,
            customize=lambda g: g.model_copy(
                update={
                    "zk_circuits": {"shielded_transfer": keys.vk},
                    "zk_params": {
                        "regulator": [str(reg[0]), str(reg[1])],
                        "shielded_pool": {"depth": artifacts.TEST_DEPTH},
                        "ceremony": "insecure-dev",
                    },  # the test suite's one-machine keys
                }
            ),
            node_kw={"allow_insecure_zk": True},
        )


@dataclass
class Committed:
    devnet: ZkDevnet
    deposit: Tx
    transfer: Tx
    tampered: Tx
    tampered_receipt: Receipt


def _submit(c: Client, devnet: ZkDevnet, args: dict[str, Any]) -> tuple[Tx, Receipt]:
    tx = Tx.create(
        SENDER,
        chain_id=devnet.genesis.chain_id,
        contract="shielded_pool",
        method="transact",
        args=args,
        nonce=c.account(SENDER.address)["next_nonce"],
        gas_limit=5_000_000,
    )
    h = c.submit(tx)
    return tx, c.wait(h, timeout=60)


def _args(keys: artifacts.CircuitKeys, plan: zk.TransferPlan) -> dict[str, Any]:
    proof, public = keys.prove(plan.circuit_input)
    return {
        "proof": groth16.compress_proof(proof),
        "inputs": [x.to_bytes(32, "big") for x in public],
        "notes": plan.note_ciphertexts,
        "recipient": b"",
    }


def _track(tree: zk.MerkleTree, receipt: Receipt) -> None:
    """Append the pool's new commitments to the wallet's copy of the note tree."""
    for ev in receipt.events:
        if ev.contract == "shielded_pool" and ev.name == "Transfer":
            for cm in ev.data["commitments"]:
                tree.append(int.from_bytes(cm, "big"))


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Committed]:
    keys = artifacts.test_keys("shielded_transfer")
    devnet = ZkDevnet(tmp_path_factory.mktemp("light-zk-devnet"), keys)
    try:
        tree = zk.MerkleTree(artifacts.TEST_DEPTH)
        rng = random.Random(7)
        with Client(devnet.urls[1]) as c:
            # A deposit of 100 into a note for Alice.
            plan = zk.plan_transfer(
                A_KEY,
                [],
                [(A_KEY.address, 100)],
                tree,
                REG.public,
                rng=rng,
                deposit=100,
                chain_id=devnet.genesis.chain_id,
            )
            # The pool pulls a deposit only within an approval Alice signed beforehand.
            approve = Tx.create(
                SENDER,
                chain_id=devnet.genesis.chain_id,
                contract="token",
                method="approve",
                args={"spender": contract_address("shielded_pool"), "amount": 100},
                nonce=c.account(SENDER.address)["next_nonce"],
            )
            assert c.wait(c.submit(approve), timeout=60).ok
            deposit, r1 = _submit(c, devnet, _args(keys, plan))
            assert r1.ok, r1.error
            _track(tree, r1)
            note = zk.Note.decrypt(A_KEY, plan.note_ciphertexts[0])
            assert note is not None and note.value == 100
            # A private transfer of 60 to Bob, 40 back to Alice, spending that note.
            plan2 = zk.plan_transfer(
                A_KEY,
                [zk.SpendInput(note, 0)],
                [(B_KEY.address, 60), (A_KEY.address, 40)],
                tree,
                REG.public,
                rng=rng,
                chain_id=devnet.genesis.chain_id,
            )
            args2 = _args(keys, plan2)
            # First a tampered copy: A negated (its sign flag flipped), a well-formed point, so
            # the pairing check itself must fail on every validator; the transaction commits
            # reverted and the note stays unspent.
            bad = bytearray(args2["proof"])
            bad[0] ^= 0x80
            tampered, r_bad = _submit(c, devnet, {**args2, "proof": bytes(bad)})
            assert not r_bad.ok
            transfer, r2 = _submit(c, devnet, args2)
            assert r2.ok, r2.error
            # One more block, so every node has the transfer's block below its head.
            height = c.tx(transfer.hash).height
            assert height is not None
            deadline = time.monotonic() + 30
            while c.status()["height"] <= height and time.monotonic() < deadline:
                time.sleep(0.1)
        yield Committed(devnet, deposit, transfer, tampered, r_bad)
    finally:
        devnet.close()


def test_light_client_verifies_devnet_shielded_transfers(
    committed: Committed, tmp_path: Path
) -> None:
    devnet = committed.devnet
    with LightClient(
        devnet.root / "genesis.json", devnet.urls, store=tmp_path / "light.json"
    ) as lc:
        report = lc.sync()
        assert report.to_height is not None and report.certificates_checked >= report.to_height
        assert set(report.nodes.values()) == {"ok"}

        d = lc.verify_shielded(committed.deposit.hash)
        assert d.deposit == 100 and d.withdrawal == 0
        assert d.tx is not None and d.tx.receipt.ok
        assert list(d.nullifiers) == committed.deposit.args["inputs"][1:3]
        assert "shielded_proof" in d.to_json()["verified"]

        t = lc.verify_shielded(committed.transfer.hash)
        assert t.deposit == 0 and t.withdrawal == 0 and t.tx is not None and t.tx.receipt.ok
        assert t.tx.height > d.tx.height

        # The validators reverted the tampered submission; the light client says so too.
        with pytest.raises(ProofError, match="reverted"):
            lc.verify_shielded(committed.tampered.hash)
        assert lc.faults == []


def test_tampered_proof_is_refused_by_the_light_checks(committed: Committed) -> None:
    g = committed.devnet.genesis
    args = dict(committed.transfer.args)
    assert (
        shielded_transfer(g.zk_circuits, g.zk_params, args, chain_id=g.chain_id).deposit == 0
    )  # the genuine one
    # The reverted transaction's proof, checked directly: refused in pure Python.
    with pytest.raises(ProofError, match="does not verify"):
        shielded_transfer(
            g.zk_circuits, g.zk_params, dict(committed.tampered.args), chain_id=g.chain_id
        )
    # A byte flipped inside A's coordinate: not even a point.
    bad = bytearray(args["proof"])
    bad[5] ^= 0x01
    with pytest.raises(ProofError):
        shielded_transfer(
            g.zk_circuits, g.zk_params, {**args, "proof": bytes(bad)}, chain_id=g.chain_id
        )
    # A genuine proof moved onto the deposit's public inputs does not verify either.
    with pytest.raises(ProofError, match="does not verify|bound"):
        shielded_transfer(
            g.zk_circuits,
            g.zk_params,
            {
                **args,
                "inputs": committed.deposit.args["inputs"],
                "notes": committed.deposit.args["notes"],
            },
            chain_id=g.chain_id,
        )
    assert "proof" in committed.tampered_receipt.error
