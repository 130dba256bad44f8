"""Governed ZK: the regulator key and the circuits' verification keys change by vote and take
effect at their activation height, on a real chain with real proofs.

* ``rotate_regulator``: from the activation height the shielded pool accepts only transfers
  encrypted to the new key (the same proof refused the block before lands after it), refuses
  ones to the old key, and the regulator's audit reads each transfer with the key in force at
  its height (it keeps its retired keys).
* ``register_circuit`` for an existing circuit (a new ceremony's key): proofs are checked
  against the key in force at the block's height; each node is given the key by node.json
  ``circuits``; a validator without it stops before the activation height, naming the
  circuit, the hash and where the file goes, and once given the file it reaches the others'
  state (the same receipts: the fast and the pure-Python verifiers agree).

Keys come from the shared small test ceremony (cached). No new ceremony: a rotation needs
none (the regulator key is a public input), and "the old ceremony's key" is the test key with
its delta replaced, a well-formed key under which no genuine proof verifies.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from accord.base.errors import ProofError, ValidationError
from accord.base.genesis import Genesis, TokenGenesis, vk_hash
from accord.base.types import Receipt
from accord.contracts import contract_address
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import CircuitMissing, Runtime
from accord.ledger.application import MissingContractCode
from accord.light import LightClient
from accord.node.config import NodeConfig
from accord.node.hooks import add_circuit_files
from accord.zk import artifacts, groth16
from accord.zk import audit as zaudit
from accord.zk import notes as zk
from accord.zk.verifier import FastProofVerifier, PyProofVerifier

from .support.gov import GovChain, governed_genesis, member_key
from .support.light_pool import PoolLedger

pytestmark = pytest.mark.timeout(1800)

M0 = member_key(0)
REG1 = zk.RegulatorKey.from_seed(b"gov-zk-regulator-1")
REG2 = zk.RegulatorKey.from_seed(b"gov-zk-regulator-2")
OWNER = zk.SpendingKey.from_seed(b"gov-zk-owner")
TRANSCRIPT = hashlib.sha256(b"the new ceremony's transcript").digest()


@pytest.fixture(scope="module")
def keys() -> artifacts.CircuitKeys:
    return artifacts.test_keys("shielded_transfer")


def other_ceremony(vk: dict[str, Any], swap: str = "vk_gamma_2") -> dict[str, Any]:
    """A well-formed verification key of the same circuit that no genuine proof verifies
    under (delta replaced by another G2 point): what an earlier ceremony's key is to a proof
    made with the current one."""
    out = copy.deepcopy(vk)
    out["vk_delta_2"] = copy.deepcopy(vk[swap])
    return out


def zk_genesis(vk: dict[str, Any], members: int = 4) -> Genesis:
    reg = REG1.public
    return governed_genesis(members).model_copy(
        update={
            "token": TokenGenesis(
                authority=M0.address.hex(), balances={M0.address.hex(): 1_000_000}
            ),
            "zk_circuits": {"shielded_transfer": vk},
            "zk_params": {
                "regulator": [str(reg[0]), str(reg[1])],
                "shielded_pool": {"depth": artifacts.TEST_DEPTH},
            },
        }
    )


def deposit_args(
    keys: artifacts.CircuitKeys,
    tree: zk.MerkleTree,
    amount: int,
    regulator: zk.RegulatorKey,
    rng: random.Random,
    chain_id: str,
) -> dict[str, Any]:
    """``shielded_pool.transact`` arguments of a deposit of ``amount`` by OWNER encrypted to
    ``regulator``, with a genuine proof."""
    plan = zk.plan_transfer(
        OWNER,
        [],
        [(OWNER.address, amount)],
        tree,
        regulator.public,
        deposit=amount,
        rng=rng,
        chain_id=chain_id,
    )
    proof, public = keys.prove(plan.circuit_input)
    return {
        "proof": groth16.compress_proof(proof),
        "inputs": [x.to_bytes(32, "big") for x in public],
        "notes": plan.note_ciphertexts,
        "recipient": b"",
    }


class Pool:
    """Deposits into the shielded pool of a GovChain; the wallet's tree follows the events."""

    def __init__(self, gov: GovChain, keys: artifacts.CircuitKeys) -> None:
        self.gov, self.keys = gov, keys
        self.tree = zk.MerkleTree(artifacts.TEST_DEPTH)
        self.rng = random.Random(19)

    def args(self, amount: int, regulator: zk.RegulatorKey) -> dict[str, Any]:
        """A deposit of ``amount`` encrypted to ``regulator`` (proved now, sent later)."""
        return deposit_args(
            self.keys, self.tree, amount, regulator, self.rng, self.gov.genesis.chain_id
        )

    def deposit(self, args: dict[str, Any]) -> Receipt:
        """One block: approve the pool for the amount, then transact."""
        amount = int.from_bytes(args["inputs"][zk.PUB_DEPOSIT], "big")
        pool = contract_address("shielded_pool")
        approve = self.gov.tx(M0, "token", "approve", spender=pool, amount=amount)
        approved, receipt = self.gov.block(
            approve, self.gov.tx(M0, "shielded_pool", "transact", **args)
        )
        assert approved.ok, approved.error
        for ev in receipt.events:
            if ev.contract == "shielded_pool" and ev.name == "Transfer":
                for c in ev.data["commitments"]:
                    self.tree.append(int.from_bytes(c, "big"))
        return receipt


def test_a_rotated_regulator_key_is_the_only_one_accepted_from_its_height(
    tmp_path: Path, keys: artifacts.CircuitKeys
) -> None:
    g = zk_genesis(keys.vk)
    gov = GovChain(tmp_path, g, Runtime(g, proof_verifier=FastProofVerifier.from_genesis(g)))
    pool = Pool(gov, keys)
    assert pool.deposit(pool.args(10, REG1)).ok  # genesis's key

    new_key = [str(c) for c in REG2.public]
    at = gov.pass_action(
        {"kind": "rotate_regulator", "public_key": new_key}, activation=gov.height + 6
    )
    to_new, to_old = pool.args(11, REG2), pool.args(12, REG1)
    gov.empty(at - 2 - gov.height)
    early = pool.deposit(to_new)  # the block at - 1: the old key is still in force
    assert gov.height == at - 1 and not early.ok
    assert f"not encrypted to the regulator key in force at height {at - 1}" in early.error

    late = pool.deposit(to_old)  # the activation height: the old key is refused
    assert gov.height == at and not late.ok
    assert f"regulator key in force at height {at}" in late.error
    assert pool.deposit(to_new).ok  # the proof refused at at - 1 lands now
    assert gov.query("in_force", height=at)["regulator"] == new_key
    assert gov.query("in_force", height=at - 1)["regulator"] == [str(c) for c in REG1.public]

    # The regulator reads each transfer with the key in force at its height (the event names
    # it); with its retired key missing it is told which key, not handed garbage.
    rows = zaudit.audit([REG1, REG2], gov.chain.store)
    owner = f"{OWNER.owner:064x}"
    assert [(r.value_1, r.deposit, r.sender) for r in rows] == [(10, 10, owner), (11, 11, owner)]
    assert rows[1].height == at + 1
    first = rows[0].height
    with pytest.raises(ValidationError, match=f"at height {first} .*{REG1.public[0]}"):
        zaudit.audit(REG2, gov.chain.store)  # the retired key was not kept
    with pytest.raises(ValidationError, match=f"at height {at + 1} .*{REG2.public[0]}"):
        zaudit.audit([REG1], gov.chain.store)


def test_an_upgraded_verification_key_is_used_from_its_height_and_a_node_without_it_stops(
    tmp_path: Path, keys: artifacts.CircuitKeys, caplog: pytest.LogCaptureFixture
) -> None:
    old = other_ceremony(keys.vk)
    g = zk_genesis(old)
    new_hash = vk_hash(keys.vk)
    (tmp_path / "vk.json").write_text(json.dumps(keys.vk))
    (tmp_path / "wrong.json").write_text(json.dumps(other_ceremony(keys.vk, "vk_beta_2")))

    def verifier(cls: type, files: dict[str, str]) -> Any:
        v = cls.from_genesis(g)
        add_circuit_files(v, NodeConfig(name="v", genesis="g.json", circuits=files), tmp_path)
        return v

    fast = verifier(FastProofVerifier, {"shielded_transfer": "vk.json"})
    assert fast.has(new_hash) and fast.files["shielded_transfer"][1] == new_hash
    a = GovChain(tmp_path / "a", g, Runtime(g, proof_verifier=fast))
    # b's operator named the wrong file: it holds genesis's key only.
    lacking = verifier(PyProofVerifier, {"shielded_transfer": "wrong.json"})
    b_store = tmp_path / "b"
    b = GovChain(b_store, g, Runtime(g, proof_verifier=lacking))

    def follow(to: int) -> None:
        for h in range(b.height + 1, to + 1):
            b.chain.commit(a.chain.block_and_certificate(h)[0], None)

    # Genesis's key is what a genuine proof is checked against, in genesis's hashing.
    assert a.query("in_force", height=0)["circuits"]["shielded_transfer"]["vk_hash"] == vk_hash(old)
    pool = Pool(a, keys)
    args = pool.args(5, REG1)
    refused = pool.deposit(args)
    assert not refused.ok and "invalid shielded-transfer proof" in refused.error

    action = {
        "kind": "register_circuit",
        "name": "shielded_transfer",
        "vk_hash": new_hash,
        "transcript_hash": TRANSCRIPT,
    }
    with caplog.at_level(logging.WARNING, logger="accord.ledger.chain"):
        at = a.pass_action(action, activation=a.height + 8)
        follow(a.height)  # b learns of the upgrade: it warns while there is time
    warned = [r.getMessage() for r in caplog.records if "will stop before height" in r.getMessage()]
    assert warned and new_hash.hex() in warned[0] and "'shielded_transfer'" in warned[0]

    a.empty(at - 1 - a.height)
    landed = pool.deposit(args)  # the same proof, at the activation height
    assert a.height == at and landed.ok, landed.error
    follow(at - 1)
    block = a.chain.block_and_certificate(at)[0]
    with pytest.raises(MissingContractCode) as stopped:
        b.chain.validate(block)  # no vote for a block it cannot check
    message = stopped.value.message
    assert "'shielded_transfer'" in message and new_hash.hex() in message
    assert 'node.json "circuits"' in message and "wrong.json" in message  # what to fix
    with pytest.raises(MissingContractCode):
        b.chain.commit(block, None)  # nor applied: it halts, never forks
    assert b.height == at - 1

    b.chain.store.close()
    with pytest.raises(CircuitMissing, match=new_hash.hex()):  # restarted without: refused
        GovChain(b_store, g, Runtime(g, proof_verifier=lacking))
    given = verifier(PyProofVerifier, {"shielded_transfer": "vk.json"})
    b2 = GovChain(b_store, g, Runtime(g, proof_verifier=given))
    _, receipt = b2.chain.commit(block, None)
    assert receipt.ok and receipt.encode() == landed.encode()  # the same receipt bytes as a's
    assert b2.chain.head() == a.chain.head()
    assert b2.chain.head_header().state_root == a.chain.head_header().state_root


def test_node_json_circuits_refuses_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    (tmp_path / "vk.json").write_text("[1, 2]")
    cfg = NodeConfig(name="v", genesis="g.json", circuits={"shielded_transfer": "vk.json"})
    with pytest.raises(ValidationError, match="is not a verification key"):
        add_circuit_files(PyProofVerifier({}), cfg, tmp_path)
    cfg = NodeConfig(name="v", genesis="g.json", circuits={"shielded_transfer": "absent.json"})
    with pytest.raises(ValidationError, match="cannot read the verification key of"):
        add_circuit_files(PyProofVerifier({}), cfg, tmp_path)


def test_the_light_client_checks_a_shielded_proof_against_what_is_in_force_at_its_height(
    tmp_path: Path, keys: artifacts.CircuitKeys, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-validator governed chain (one member: each proposal passes as it is filed)
    upgrades the transfer circuit's key and rotates the regulator; the light client reads
    both from governance's state, proved against the transfer's certified header."""
    g = zk_genesis(other_ceremony(keys.vk), members=1)
    verifier = FastProofVerifier.from_genesis(g)
    new_hash = verifier.add(keys.vk)
    ledger = PoolLedger(keys, tmp_path / "node", g, M0, verifier)
    try:
        at = ledger.height + 4
        for action in (
            {
                "kind": "register_circuit",
                "name": "shielded_transfer",
                "vk_hash": new_hash,
                "transcript_hash": TRANSCRIPT,
            },
            {"kind": "rotate_regulator", "public_key": [str(c) for c in REG2.public]},
        ):
            _, r = ledger.call(M0, "governance", "propose", {"action": action, "activation": at})
            assert r.ok and r.events[-1].name == "Passed", r.error
        while ledger.height < at:
            ledger.approve(1)
        plan = zk.plan_transfer(
            OWNER,
            [],
            [(OWNER.address, 7)],
            ledger.tree,
            REG2.public,
            deposit=7,
            rng=ledger.rng,
            chain_id=g.chain_id,
        )
        ledger.approve(7)
        tx = ledger.send(ledger.args(plan))
        assert ledger.last_receipt.ok, ledger.last_receipt.error

        with LightClient(g, [ledger.url], verification_keys=[keys.vk]) as lc:
            lc.sync()
            checked = lc.verify_shielded(tx.hash)
            assert checked.deposit == 7 and checked.tx is not None and checked.tx.height > at
            assert lc.faults == []
        with LightClient(g, [ledger.url]) as lc:  # never given the new key: says which
            lc.sync()
            with pytest.raises(ProofError, match=f"hash {new_hash.hex()}"):
                lc.verify_shielded(tx.hash)

        # The command line: `accord light shielded HASH --vk FILE`.
        from accord.cli.main import main as cli

        (tmp_path / "genesis.json").write_text(g.model_dump_json())
        (tmp_path / "vk.json").write_text(json.dumps(keys.vk))
        base = ["light", "shielded", tx.hash.hex(), "--node", ledger.url, "--json"]
        base += ["--genesis", str(tmp_path / "genesis.json")]
        assert (
            cli([*base, "--store", str(tmp_path / "l1.json"), "--vk", str(tmp_path / "vk.json")])
            == 0
        )
        assert json.loads(capsys.readouterr().out)["deposit"] == 7
        assert cli([*base, "--store", str(tmp_path / "l2.json")]) != 0
        err = capsys.readouterr().err
        assert new_hash.hex() in err and "--vk" in err
    finally:
        ledger.close()


def test_what_a_contract_reads_in_force_cannot_be_changed_by_it(
    keys: artifacts.CircuitKeys,
) -> None:
    """Genesis's values are computed once per runtime: a contract that edits the value
    ctx.in_force gave it must not change what the next call reads (another node, started
    later, would read genesis's)."""
    from accord.contracts.base import Context

    g = zk_genesis(keys.vk)
    rt = Runtime(g)
    ctx = Context(
        rt,
        MemoryState({}),
        {},
        sender=bytes(20),
        height=1,
        time_ms=0,
        tx_hash=bytes(32),
        contract="shielded_pool",
        gas_limit=10**6,
    )
    circuits = ctx.in_force("circuits")
    circuits["shielded_transfer"]["vk_hash"] = bytes(32)
    circuits["forged"] = {"vk_hash": bytes(32), "transcript_hash": None}
    again = ctx.in_force("circuits")
    assert sorted(again) == ["shielded_transfer"]
    assert again["shielded_transfer"]["vk_hash"] == vk_hash(keys.vk)


def test_a_node_on_a_genesis_without_circuits_gets_a_verifier_for_its_configured_keys(
    tmp_path: Path,
) -> None:
    """Governance can register the first circuit of a token-only chain: the node then needs a
    proof verifier holding the key, though genesis has no zk_circuits."""
    from accord.node.hooks import runtime_hooks

    vk = {"protocol": "groth16", "curve": "bn128", "note": "the first circuit"}
    (tmp_path / "kyc.json").write_text(json.dumps(vk))
    g = governed_genesis(4)
    assert not g.zk_circuits
    plain = NodeConfig(name="v0", genesis="g.json")
    assert "proof_verifier" not in runtime_hooks(
        g, plain, tmp_path, name="v0", allow_insecure_zk=False
    )
    cfg = NodeConfig(name="v0", genesis="g.json", circuits={"kyc": "kyc.json"})
    hooks = runtime_hooks(g, cfg, tmp_path, name="v0", allow_insecure_zk=False)
    assert hooks["proof_verifier"].has(vk_hash(vk))


def test_two_key_files_one_hash_cannot_give_validators_different_keys(
    keys: artifacts.CircuitKeys, tmp_path: Path
) -> None:
    """Review finding: ``vk_hash`` writes a float as its decimal text, so a key file whose
    ``nPublic`` is the number 2.0 and one whose ``nPublic`` is the text "2.0" hash the same.
    A member who hands validators the two files got both past node.json's hash check while
    one side parsed the key and the other refused it: proofs under the key in force verified
    on some validators and reverted on the others, and their receipts and state roots split.
    A key file holding a float is now refused at start-up (a snarkjs key has none), so every
    validator that runs holds a key that parses the same way."""
    number = copy.deepcopy(keys.vk)
    number["nPublic"] = float(len(number["IC"]) - 1)
    text = copy.deepcopy(keys.vk)
    text["nPublic"] = repr(number["nPublic"])
    assert vk_hash(number) == vk_hash(text)
    cfg = NodeConfig(name="v", genesis="g.json", circuits={"shielded_transfer": "vk.json"})
    outcomes = set()
    for vk in (number, text):
        (tmp_path / "vk.json").write_text(json.dumps(vk))
        verifier = PyProofVerifier({})
        try:
            add_circuit_files(verifier, cfg, tmp_path)
        except ValidationError as e:
            assert "floating-point" in e.message and "vk.json" in e.message
            continue  # this validator does not start: it can never disagree
        try:
            verifier.key("shielded_transfer", vk_hash(vk))
            outcomes.add("parses")
        except ProofError as e:
            outcomes.add(e.message)
    assert len(outcomes) == 1, outcomes
    # A light client offered such a key refuses it too (the verifier's own rule).
    with pytest.raises(ProofError, match="floating-point"):
        PyProofVerifier({}).add(number)


def _numbers(value: Any) -> Any:
    """``value`` with every decimal text written as a JSON number instead."""
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return int(value) if isinstance(value, str) and value.isdigit() else value


def test_a_registered_key_with_number_coordinates_verifies_alike_fast_and_pure(
    keys: artifacts.CircuitKeys,
) -> None:
    """Review finding: a verification key whose coordinates are JSON numbers (a member may
    register it by its hash and hand validators the file for node.json ``circuits``; Python
    reads the numbers exactly) went to the snarkjs worker as the file, whose JSON.parse rounds
    each to a double: the worker's pairing answered "invalid" to a genuine proof the Python
    verifier accepts, so validators with Node.js and without it wrote different receipts
    (split state roots). The worker is now sent the key as Python parsed it."""
    args = deposit_args(
        keys, zk.MerkleTree(artifacts.TEST_DEPTH), 4, REG1, random.Random(5), "test"
    )
    proof, inputs = args["proof"], [int.from_bytes(x, "big") for x in args["inputs"]]
    vk = copy.deepcopy(keys.vk)
    for field in ("vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC"):
        vk[field] = _numbers(vk[field])
    fast, pure = FastProofVerifier({}), PyProofVerifier({})
    h = fast.add(vk)
    assert pure.add(vk) == h
    assert pure.verify("shielded_transfer", proof, inputs, vk_hash=h) is True
    assert fast.verify("shielded_transfer", proof, inputs, vk_hash=h) is True
    assert fast.fallbacks == 0  # the worker's own answer, not one rescued by Python
