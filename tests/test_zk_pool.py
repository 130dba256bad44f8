"""The shielded pool end to end on a real chain (LMDB store, runtime, the fast verifier):
deposits, private transfers and withdrawals with real proofs; every attack the issue lists is
rejected with a clear error and changes no state; the regulator's audit of the chain recovers
exactly the transfers made.

Keys come from the shared small test ceremony (depth-4 tree, 2^13), cached after the first run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError, ProofError, ValidationError
from accord.base.genesis import Genesis
from accord.base.types import Receipt, Tx
from accord.contracts import BUILTINS, Runtime, contract_address
from accord.contracts.shielded_pool import ShieldedPool
from accord.ledger.chain import Chain
from accord.node.config import builtin_contract_entries
from accord.storage import Store
from accord.zk import artifacts, groth16
from accord.zk import audit as zaudit
from accord.zk import notes as zk
from accord.zk.poseidon import poseidon
from accord.zk.verifier import FastProofVerifier

from .support.genesis import make_genesis

pytestmark = pytest.mark.timeout(900)

ALICE = AccountKey.from_name("zk-alice")
BOB_ACCOUNT = AccountKey.from_name("zk-bob")
REG = zk.RegulatorKey.from_seed(b"test-regulator")
A_KEY = zk.SpendingKey.from_seed(b"alice")
B_KEY = zk.SpendingKey.from_seed(b"bob")


@pytest.fixture(scope="module")
def keys() -> artifacts.CircuitKeys:
    return artifacts.test_keys("shielded_transfer")


def pool_genesis(keys: artifacts.CircuitKeys) -> Genesis:
    g = make_genesis(1, balances={ALICE.address.hex(): 1_000}, contracts=builtin_contract_entries())
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


class Ledger:
    """A one-validator chain on LMDB plus the wallet view (the tree rebuilt from events)."""

    def __init__(self, keys: artifacts.CircuitKeys, folder: Path) -> None:
        self.keys = keys
        self.g = pool_genesis(keys)
        self.rt = Runtime(
            self.g,
            {**BUILTINS, "shielded_pool": ShieldedPool},
            proof_verifier=FastProofVerifier.from_genesis(self.g),
        )
        self.store = Store(folder)
        self.chain = Chain(self.g, self.store, self.rt)
        self.nonces: dict[bytes, int] = {}
        self.tree = zk.MerkleTree(artifacts.TEST_DEPTH)
        self.time = 1_000
        self.rng = random.Random(5)

    def send(self, key: AccountKey, contract: str, method: str, **args: Any) -> Receipt:
        if contract == "shielded_pool" and method == "transact":
            # A wallet's deposit is two signed transactions: approve the pool for exactly the
            # deposit, then transact (the pool pulls only within that approval).
            deposit = int.from_bytes(args["inputs"][zk.PUB_DEPOSIT], "big")
            if 0 < deposit < 2**63:
                approve = self._send(
                    key,
                    "token",
                    "approve",
                    spender=contract_address("shielded_pool"),
                    amount=deposit,
                )
                assert approve.ok, approve.error
        return self._send(key, contract, method, **args)

    def _send(self, key: AccountKey, contract: str, method: str, **args: Any) -> Receipt:
        n = self.nonces.get(key.address, 0)
        tx = Tx.create(
            key,
            chain_id=self.g.chain_id,
            contract=contract,
            method=method,
            args=args,
            nonce=n,
            gas_limit=5_000_000,
        )
        self.nonces[key.address] = n + 1
        self.time += 1_000
        block = self.chain.build([tx], time_ms=self.time)
        (receipt,) = self.chain.commit(block, None)
        for ev in receipt.events:
            if ev.contract == "shielded_pool" and ev.name == "Transfer":
                for c in ev.data["commitments"]:
                    self.tree.append(int.from_bytes(c, "big"))
        return receipt

    def query(self, contract: str, method: str, **args: Any) -> Any:
        return self.rt.query(self.store, contract, method, args)

    def balance(self, who: bytes) -> int:
        return int(self.query("token", "balance_of", account=who))

    def plan(
        self,
        key: zk.SpendingKey,
        spends: list[zk.SpendInput],
        outs: list[tuple[zk.Address, int]],
        **kw: Any,
    ) -> zk.TransferPlan:
        return zk.plan_transfer(
            key, spends, outs, self.tree, REG.public, rng=self.rng, chain_id=self.g.chain_id, **kw
        )

    def args(self, plan: zk.TransferPlan, recipient: bytes = b"") -> dict[str, Any]:
        proof, public = self.keys.prove(plan.circuit_input)
        assert public == plan.public
        return {
            "proof": groth16.compress_proof(proof),
            "inputs": [x.to_bytes(32, "big") for x in public],
            "notes": plan.note_ciphertexts,
            "recipient": recipient,
        }

    def pool_state(self) -> tuple[bytes, int, bytes]:
        return (
            self.query("shielded_pool", "root"),
            self.query("shielded_pool", "size"),
            self.store.state_root(),
        )

    def find_notes(self, key: zk.SpendingKey) -> list[zk.SpendInput]:
        """Scan the chain's Transfer events for notes this key can open and has not spent."""
        found = []
        for _, _, ev in zaudit.transfer_events(self.store):
            for blob, idx in zip(ev.data["notes"], ev.data["indices"], strict=True):
                note = zk.Note.decrypt(key, blob)
                if (
                    note is not None
                    and note.value
                    and not self.query(
                        "shielded_pool", "is_spent", nullifier=zk.fe_bytes(key.nullifier(note.rho))
                    )
                ):
                    found.append(zk.SpendInput(note, idx))
        return found


@pytest.fixture(scope="module")
def ledger(keys: artifacts.CircuitKeys, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    return Ledger(keys, tmp_path_factory.mktemp("zkpool"))


def test_deposit_transfer_withdraw_and_audit(ledger: Ledger) -> None:
    pool_addr = contract_address("shielded_pool")
    # 1. deposit 100 from Alice's account into a note for Alice
    plan = ledger.plan(A_KEY, [], [(A_KEY.address, 100)], deposit=100)
    r = ledger.send(ALICE, "shielded_pool", "transact", **ledger.args(plan))
    assert r.ok, r.error
    assert ledger.balance(ALICE.address) == 900 and ledger.balance(pool_addr) == 100
    # 2. Alice finds her note and sends 60 to Bob, 40 back to herself
    (spend,) = ledger.find_notes(A_KEY)
    assert spend.note.value == 100
    plan = ledger.plan(A_KEY, [spend], [(B_KEY.address, 60), (A_KEY.address, 40)])
    r = ledger.send(ALICE, "shielded_pool", "transact", **ledger.args(plan))
    assert r.ok, r.error
    assert ledger.balance(pool_addr) == 100  # nothing left the pool
    # 3. Bob finds his note and withdraws 25 to his account, keeping 35 shielded
    (bob_note,) = ledger.find_notes(B_KEY)
    assert bob_note.note.value == 60
    plan = ledger.plan(
        B_KEY, [bob_note], [(B_KEY.address, 35)], withdrawal=25, recipient=BOB_ACCOUNT.address
    )
    r = ledger.send(
        BOB_ACCOUNT, "shielded_pool", "transact", **ledger.args(plan, BOB_ACCOUNT.address)
    )
    assert r.ok, r.error
    assert ledger.balance(BOB_ACCOUNT.address) == 25 and ledger.balance(pool_addr) == 75
    assert [s.note.value for s in ledger.find_notes(A_KEY)] == [40]
    # 4. the regulator reads exactly these three transfers, and nobody else can
    rows = zaudit.audit(REG, ledger.store)
    got = [
        (r.sender, r.receiver_1, r.value_1, r.receiver_2, r.value_2, r.deposit, r.withdrawal)
        for r in rows
    ]
    hx = lambda k: f"{k.owner:064x}"  # noqa: E731
    assert got == [
        (hx(A_KEY), hx(A_KEY), 100, hx(A_KEY), 0, 100, 0),
        (hx(A_KEY), hx(B_KEY), 60, hx(A_KEY), 40, 0, 0),
        (hx(B_KEY), hx(B_KEY), 35, hx(B_KEY), 0, 0, 25),
    ]
    assert "sender" in zaudit.to_csv(rows) and '"value_1": 60' in zaudit.to_json(rows)
    other = zk.RegulatorKey.from_seed(b"someone-else")
    with pytest.raises(ValidationError, match="no key given holds its secret"):
        zaudit.audit(other, ledger.store)  # each event names the key it is encrypted to
    read = [
        zaudit.decrypt_event(other, ev.data) for _, _, ev in zaudit.transfer_events(ledger.store)
    ]
    assert [(s, v[0]) for s, _, v in read] != [(int(r.sender, 16), r.value_1) for r in rows]


def test_deposit_needs_an_explicit_approval(ledger: Ledger) -> None:
    """The pool pulls a deposit only within the allowance its caller signed (no implicit pull
    from the transaction's signer): without one the deposit reverts and nothing moves."""
    plan = ledger.plan(A_KEY, [], [(A_KEY.address, 9)], deposit=9)
    args = ledger.args(plan)
    pool = contract_address("shielded_pool")
    assert ledger._send(ALICE, "token", "approve", spender=pool, amount=8).ok  # one too few
    before = (ledger.pool_state()[:2], ledger.balance(ALICE.address))
    r = ledger._send(ALICE, "shielded_pool", "transact", **args)
    assert not r.ok and "allowance too small" in r.error, r.error
    assert (ledger.pool_state()[:2], ledger.balance(ALICE.address)) == before
    assert ledger._send(ALICE, "token", "approve", spender=pool, amount=9).ok
    assert ledger._send(ALICE, "shielded_pool", "transact", **args).ok
    assert ledger.query("token", "allowance", owner=ALICE.address, spender=pool) == 0


def test_nodes_serve_merkle_paths_that_match_the_wallet(ledger: Ledger) -> None:
    if ledger.query("shielded_pool", "size") == 0:
        plan = ledger.plan(A_KEY, [], [(A_KEY.address, 7)], deposit=7)
        assert ledger.send(ALICE, "shielded_pool", "transact", **ledger.args(plan)).ok
    size = ledger.query("shielded_pool", "size")
    root = int.from_bytes(ledger.query("shielded_pool", "root"), "big")
    for index in range(size):
        got = ledger.query("shielded_pool", "path", index=index)
        siblings = [int.from_bytes(s, "big") for s in got["siblings"]]
        leaf = int.from_bytes(got["leaf"], "big")
        assert (siblings, got["bits"]) == ledger.tree.path(index)
        assert zk.root_from_path(leaf, siblings, got["bits"]) == root
        assert int.from_bytes(got["root"], "big") == root
    with pytest.raises(AccordError, match="not in the tree"):
        ledger.query("shielded_pool", "path", index=size)


def _rejected(ledger: Ledger, key: AccountKey, args: dict[str, Any], fragment: str) -> None:
    before = (ledger.pool_state()[:2], ledger.balance(ALICE.address))
    r = ledger.send(key, "shielded_pool", "transact", **args)
    assert not r.ok
    assert fragment in r.error, r.error
    assert (ledger.pool_state()[:2], ledger.balance(ALICE.address)) == before


def test_double_spend_is_rejected(ledger: Ledger) -> None:
    plan = ledger.plan(A_KEY, [], [(A_KEY.address, 5)], deposit=5)
    args = ledger.args(plan)
    assert ledger.send(ALICE, "shielded_pool", "transact", **args).ok
    (spend, *_) = [s for s in ledger.find_notes(A_KEY) if s.note.value == 5]
    spend_plan = ledger.plan(A_KEY, [spend], [(B_KEY.address, 5)])
    spend_args = ledger.args(spend_plan)
    assert ledger.send(ALICE, "shielded_pool", "transact", **spend_args).ok
    # the same proof again, and a fresh proof of the same note
    _rejected(ledger, ALICE, spend_args, "double spend")
    again = ledger.args(ledger.plan(A_KEY, [spend], [(A_KEY.address, 5)]))
    _rejected(ledger, ALICE, again, "double spend")


def test_unknown_root_is_rejected(ledger: Ledger) -> None:
    # Alice invents a 1,000,000 note in a private copy of the tree: its root is not on chain.
    fake_tree = zk.MerkleTree(artifacts.TEST_DEPTH, [list(r) for r in ledger.tree.levels])
    fake = zk.Note(1_000_000, A_KEY.owner, 77, 88)
    idx = fake_tree.append(fake.commitment)
    plan = zk.plan_transfer(
        A_KEY,
        [zk.SpendInput(fake, idx)],
        [(A_KEY.address, 1_000_000)],
        fake_tree,
        REG.public,
        rng=ledger.rng,
        chain_id=ledger.g.chain_id,
    )
    _rejected(ledger, ALICE, ledger.args(plan), "unknown or too old Merkle root")


def test_replay_with_other_public_inputs_is_rejected(ledger: Ledger) -> None:
    plan = ledger.plan(A_KEY, [], [(A_KEY.address, 7)], deposit=7)
    args = ledger.args(plan)
    # another recipient or other note ciphertexts: the bind input no longer matches
    _rejected(ledger, ALICE, {**args, "notes": list(reversed(args["notes"]))}, "bound to another")
    # a larger deposit with the same proof (bind untouched): the proof fails
    inputs = list(args["inputs"])
    inputs[zk.PUB_DEPOSIT] = (8).to_bytes(32, "big")
    _rejected(ledger, ALICE, {**args, "inputs": inputs}, "invalid shielded-transfer proof")
    # another ciphertext for the regulator: the proof fails
    inputs = list(args["inputs"])
    inputs[zk.PUB_CIPHER] = (int.from_bytes(inputs[zk.PUB_CIPHER], "big") + 1).to_bytes(32, "big")
    _rejected(ledger, ALICE, {**args, "inputs": inputs}, "invalid shielded-transfer proof")
    # a public input >= r (x and x + r pair alike): refused before the proof
    inputs = list(args["inputs"])
    inputs[zk.PUB_BIND] = (int.from_bytes(inputs[zk.PUB_BIND], "big") + zk.FIELD).to_bytes(
        32, "big"
    )
    _rejected(ledger, ALICE, {**args, "inputs": inputs}, "not below the field size")
    # the regulator key swapped for the attacker's own: refused
    inputs = list(args["inputs"])
    mine = zk.RegulatorKey.from_seed(b"mine").public
    inputs[zk.PUB_REGULATOR] = mine[0].to_bytes(32, "big")
    inputs[zk.PUB_REGULATOR + 1] = mine[1].to_bytes(32, "big")
    _rejected(ledger, ALICE, {**args, "inputs": inputs}, "regulator")


def test_tampered_proof_bytes_are_rejected(ledger: Ledger) -> None:
    plan = ledger.plan(A_KEY, [], [(A_KEY.address, 3)], deposit=3)
    args = ledger.args(plan)
    proof = args["proof"]
    swapped = proof[96:] + proof[32:96] + proof[:32]  # A and C exchanged
    _rejected(ledger, ALICE, {**args, "proof": swapped}, "invalid shielded-transfer proof")
    flipped = bytes([proof[0] ^ 0x80]) + proof[1:]  # A negated
    _rejected(ledger, ALICE, {**args, "proof": flipped}, "invalid shielded-transfer proof")
    junk = (b"\x3f" + b"\xff" * 31) * 4  # no flags, coordinates >= q
    _rejected(ledger, ALICE, {**args, "proof": junk}, "canonical")
    _rejected(ledger, ALICE, {**args, "proof": proof[:100]}, "128 compressed bytes")


def test_circuit_refuses_bad_witnesses(keys: artifacts.CircuitKeys) -> None:
    """No proof exists for a transfer that creates value, overflows 64 bits or lies to the
    regulator: witness generation fails the circuit's constraints."""
    tree = zk.MerkleTree(artifacts.TEST_DEPTH)
    note = zk.Note(50, A_KEY.owner, 1, 2)
    idx = tree.append(note.commitment)
    plan = zk.plan_transfer(
        A_KEY,
        [zk.SpendInput(note, idx)],
        [(B_KEY.address, 50)],
        tree,
        REG.public,
        rng=random.Random(3),
        chain_id="test",
    )
    good = plan.circuit_input
    # value not conserved: 50 in, 51 out
    bad = {**good, "outValue": [51, 0]}
    with pytest.raises(ProofError):
        keys.prove(bad)
    # out-of-range: outputs 2^64 + 50 and -2^64 (mod r) conserve value in the field only
    big = 2**64 + 50
    bad = {**good, "outValue": [big, (zk.FIELD - 2**64) % zk.FIELD]}
    with pytest.raises(ProofError):
        keys.prove(bad)
    # a ciphertext that does not match the transfer
    cipher = list(good["ciphertext"])
    cipher[2] = (cipher[2] + 1) % zk.FIELD
    with pytest.raises(ProofError):
        keys.prove({**good, "ciphertext": cipher})
    # a nullifier that is not Poseidon(sk, rho)
    with pytest.raises(ProofError):
        keys.prove({**good, "nullifier": [1, good["nullifier"][1]]})
    # the same note as both inputs (counted twice): the wallet and the circuit refuse it
    with pytest.raises(ValidationError, match="same note"):
        zk.plan_transfer(
            A_KEY,
            [zk.SpendInput(note, idx), zk.SpendInput(note, idx)],
            [(B_KEY.address, 100)],
            tree,
            REG.public,
            chain_id="test",
        )
    # forced past the wallet: a witness right in every other respect (outputs, commitments,
    # regulator ciphertext recomputed for 50 + 50 in, 100 out)
    nf = good["nullifier"][0]
    owners, rs = good["outOwner"], good["outR"]
    rhos = [poseidon(nf, nf, j) for j in range(2)]
    values = [100, 0]
    cms = [
        zk.Note(v, o, rho, r).commitment
        for v, o, rho, r in zip(values, owners, rhos, rs, strict=True)
    ]
    _, cipher = zk.regulator_encrypt(
        REG.public, [A_KEY.owner, owners[0], 100, owners[1], 0], good["e"]
    )
    twice = {
        **good,
        "inValue": [50, 50],
        "inRho": [good["inRho"][0]] * 2,
        "inR": [good["inR"][0]] * 2,
        "pathElements": [good["pathElements"][0]] * 2,
        "pathIndices": [good["pathIndices"][0]] * 2,
        "nullifier": [nf, nf],
        "outValue": values,
        "commitment": cms,
        "ciphertext": cipher,
    }
    with pytest.raises(ProofError):
        keys.prove(twice)


def test_a_proof_for_another_chain_is_rejected(ledger: Ledger) -> None:
    plan = zk.plan_transfer(
        A_KEY,
        [],
        [(A_KEY.address, 2)],
        ledger.tree,
        REG.public,
        rng=ledger.rng,
        deposit=2,
        chain_id="another-chain",
    )
    _rejected(ledger, ALICE, ledger.args(plan), "bound to another")


def test_regulator_cli_audit(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`accord regulator audit` on the node's LMDB folder (runs last: it closes the store)."""
    import json

    from accord.cli.main import main as cli

    expected = zaudit.audit(REG, ledger.store)
    ledger.store.close()
    key_file = tmp_path / "regulator.json"
    key_file.write_text(json.dumps({"secret": str(REG.secret)}))
    out = tmp_path / "audit.json"
    assert (
        cli(
            [
                "regulator",
                "audit",
                "--data",
                str(ledger.store.path),
                "--key",
                str(key_file),
                "--format",
                "json",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())
    assert [(r["height"], r["value_1"], r["value_2"]) for r in rows] == [
        (r.height, r.value_1, r.value_2) for r in expected
    ]
    assert (
        cli(
            [
                "regulator",
                "audit",
                "--data",
                str(ledger.store.path),
                "--key",
                str(key_file),
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("height,tx_hash,sender")
    assert cli(["regulator", "keygen", "--out", str(tmp_path / "new.json")]) == 0
    assert (
        cli(["regulator", "audit", "--data", str(tmp_path / "nope"), "--key", str(key_file)]) == 1
    )
