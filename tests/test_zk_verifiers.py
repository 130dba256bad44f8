"""The two Groth16 verifiers (pure Python with py_ecc; Python checks + snarkjs worker) give the
same answer on a corpus of valid and invalid proofs: tampered points (off the curve, outside
G2's subgroup, swapped, coordinates in the wrong order), public inputs replayed or >= r, and
malformed JSON. Also: compressed proofs verify like JSON ones, and the CLI round trip."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from accord.base.errors import ProofError
from accord.cli.main import main as cli
from accord.zk import artifacts, groth16
from accord.zk import notes as zk
from accord.zk.prover import SnarkjsWorker
from accord.zk.verifier import FastProofVerifier, PyProofVerifier

from .support.zk_points import g2_outside_subgroup

pytestmark = pytest.mark.timeout(900)
CIRCUIT = "shielded_transfer"


@pytest.fixture(scope="module")
def sample() -> tuple[artifacts.CircuitKeys, dict[str, Any], list[int]]:
    keys = artifacts.test_keys(CIRCUIT)
    key = zk.SpendingKey.from_seed(b"verifier-tests")
    tree = zk.MerkleTree(artifacts.TEST_DEPTH)
    plan = zk.plan_transfer(
        key,
        [],
        [(key.address, 9)],
        tree,
        zk.RegulatorKey.from_seed(b"r").public,
        deposit=9,
        rng=random.Random(11),
        chain_id="test",
    )
    proof, public = keys.prove(plan.circuit_input)
    return keys, proof, public


def _outcome(verifier: Any, proof: Any, public: Any) -> str:
    try:
        return "valid" if verifier.verify(CIRCUIT, proof, public) else "invalid"
    except ProofError:
        return "error"


def corpus(proof: dict[str, Any], public: list[int]) -> list[tuple[str, Any, Any, str]]:
    """(name, proof, public, expected outcome)."""
    cases: list[tuple[str, Any, Any, str]] = [("valid", proof, public, "valid")]
    cases.append(("valid, compressed", groth16.compress_proof(proof), public, "valid"))
    cases.append(("valid, JSON text", json.dumps(proof), [str(x) for x in public], "valid"))
    p = copy.deepcopy(proof)
    p["pi_a"], p["pi_c"] = proof["pi_c"], proof["pi_a"]
    cases.append(("A and C swapped", p, public, "invalid"))
    p = copy.deepcopy(proof)
    p["pi_a"][1] = str(groth16.Q - int(proof["pi_a"][1]))
    cases.append(("A negated", p, public, "invalid"))
    p = copy.deepcopy(proof)
    p["pi_a"][1] = str((int(proof["pi_a"][1]) + 1) % groth16.Q)
    cases.append(("A off the curve", p, public, "error"))
    p = copy.deepcopy(proof)
    p["pi_b"] = [list(reversed(c)) for c in proof["pi_b"][:2]] + [["1", "0"]]
    cases.append(("B in EVM coordinate order", p, public, "error"))
    p = copy.deepcopy(proof)
    p["pi_b"] = g2_outside_subgroup()
    cases.append(("B outside the G2 subgroup", p, public, "error"))
    p = copy.deepcopy(proof)
    p["pi_c"] = [str(int(proof["pi_c"][0]) + groth16.Q), proof["pi_c"][1], "1"]
    cases.append(("C coordinate >= q", p, public, "error"))
    p = copy.deepcopy(proof)
    p["pi_a"] = ["0", "1", "0"]
    cases.append(("A at infinity", p, public, "error"))
    changed = list(public)
    changed[zk.PUB_DEPOSIT] += 1
    cases.append(("replayed with another deposit", proof, changed, "invalid"))
    changed = list(public)
    changed[zk.PUB_ROOT] += groth16.R
    cases.append(("public input + r", proof, changed, "error"))
    cases.append(("too few public inputs", proof, public[:-1], "error"))
    cases.append(("malformed JSON", "{not json", public, "error"))
    cases.append(("not an object", [1, 2, 3], public, "error"))
    p = copy.deepcopy(proof)
    p["pi_a"] = ["12x", "1", "1"]
    cases.append(("non-numeric coordinate", p, public, "error"))
    p = copy.deepcopy(proof)
    del p["pi_b"]
    cases.append(("missing B", p, public, "error"))
    return cases


def test_both_verifiers_agree_on_the_corpus(sample: Any) -> None:
    keys, proof, public = sample
    py = PyProofVerifier({CIRCUIT: keys.vk})
    fast = FastProofVerifier({CIRCUIT: keys.vk})
    for name, p, pub, expected in corpus(proof, public):
        got_py = _outcome(py, p, pub)
        got_fast = _outcome(fast, p, pub)
        assert (got_py, got_fast) == (expected, expected), name


def test_unknown_circuit_and_bad_vk(sample: Any) -> None:
    keys, proof, public = sample
    py = PyProofVerifier({CIRCUIT: keys.vk})
    with pytest.raises(ProofError):
        py.verify("nope", proof, public)
    vk = copy.deepcopy(keys.vk)
    vk["IC"] = vk["IC"][:-1]
    with pytest.raises(ProofError):
        PyProofVerifier({CIRCUIT: vk}).verify(CIRCUIT, proof, public)
    with pytest.raises(ProofError):
        groth16.parse_vk("{broken")
    with pytest.raises(ProofError):
        groth16.parse_vk({**keys.vk, "protocol": "plonk"})


def test_cli_prove_and_verify(
    sample: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, proof, public = sample
    key = zk.SpendingKey.from_seed(b"cli")
    plan = zk.plan_transfer(
        key,
        [],
        [(key.address, 4)],
        zk.MerkleTree(artifacts.TEST_DEPTH),
        zk.RegulatorKey.from_seed(b"r").public,
        deposit=4,
        rng=random.Random(2),
        chain_id="test",
    )
    inp = tmp_path / "input.json"
    inp.write_text(json.dumps({k: _str(v) for k, v in plan.circuit_input.items()}))
    out = tmp_path / "proof.json"
    vk = tmp_path / "vk.json"
    vk.write_text(json.dumps(keys.vk))
    ceremony = [
        "--power",
        str(artifacts.TEST_POWER),
        "--members",
        ",".join(artifacts.TEST_MEMBERS),
        "--seed",
        "accord-tests",
        "--depth",
        str(artifacts.TEST_DEPTH),
    ]
    assert (
        cli(
            ["zk", "prove", "--circuit", CIRCUIT, *ceremony, "--input", str(inp), "--out", str(out)]
        )
        == 0
    )
    assert cli(["zk", "verify", "--circuit", CIRCUIT, "--vk", str(vk), "--proof", str(out)]) == 0
    assert (
        cli(["zk", "verify", "--circuit", CIRCUIT, "--vk", str(vk), "--proof", str(out), "--fast"])
        == 0
    )
    doc = json.loads(out.read_text())
    doc["public"][0] = str(int(doc["public"][0]) + 1)
    out.write_text(json.dumps(doc))
    assert cli(["zk", "verify", "--circuit", CIRCUIT, "--vk", str(vk), "--proof", str(out)]) == 1
    out.write_text("{oops")
    assert cli(["zk", "verify", "--circuit", CIRCUIT, "--vk", str(vk), "--proof", str(out)]) == 1
    assert "invalid" in capsys.readouterr().err


def _str(v: Any) -> Any:
    if isinstance(v, list):
        return [_str(x) for x in v]
    return str(v)


def test_verifier_from_genesis(sample: Any) -> None:
    from types import SimpleNamespace

    from accord.zk.verifier import verifier_from_genesis

    keys, proof, public = sample
    g = SimpleNamespace(zk_circuits={CIRCUIT: keys.vk})
    assert isinstance(verifier_from_genesis(g), FastProofVerifier)  # Node.js is here
    for fast in (True, False):
        v = verifier_from_genesis(g, fast=fast)
        assert v.verify(CIRCUIT, groth16.compress_proof(proof), public)


# --- the fast verifier must never refuse what the pure-Python one accepts ---------------------


@pytest.fixture(scope="module")
def light_sample() -> tuple[artifacts.CircuitKeys, dict[str, Any], list[int]]:
    """The case reported from the light-client tests: Alice's deposit of 100 with the light
    regulator (the fast verifier was said to answer "pi_b: not in the prime-order subgroup of
    G2" for its compressed proof). snarkjs randomizes each proof, so every run checks a fresh
    proof of this statement."""
    keys = artifacts.test_keys(CIRCUIT)
    alice = zk.SpendingKey.from_seed(b"light-alice")
    reg = zk.RegulatorKey.from_seed(b"light-regulator")
    plan = zk.plan_transfer(
        alice,
        [],
        [(alice.address, 100)],
        zk.MerkleTree(artifacts.TEST_DEPTH),
        reg.public,
        rng=random.Random(3),
        deposit=100,
        chain_id="test",
    )
    proof, public = keys.prove(plan.circuit_input)
    return keys, proof, public


def test_both_verifiers_agree_on_the_light_deposit(light_sample: Any) -> None:
    keys, proof, public = light_sample
    py = PyProofVerifier({CIRCUIT: keys.vk})
    fast = FastProofVerifier({CIRCUIT: keys.vk})
    for name, p, pub, expected in corpus(proof, public):
        assert (_outcome(py, p, pub), _outcome(fast, p, pub)) == (expected, expected), name
    assert fast.fallbacks == 0  # the worker decided every case itself


class _RefusingWorker(SnarkjsWorker):
    """Fault injection: a worker that answers "B not in G2" to every proof, as the reported
    one did for a valid compressed proof."""

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        return {"id": 0, "ok": True, "valid": False, "reason": "B not in G2"}


def test_fast_verifier_overrules_a_worker_that_refuses_a_valid_b(light_sample: Any) -> None:
    keys, proof, public = light_sample
    fast = FastProofVerifier({CIRCUIT: keys.vk}, worker=_RefusingWorker())
    assert fast.verify(CIRCUIT, groth16.compress_proof(proof), public) is True
    assert fast.verify(CIRCUIT, proof, public) is True
    assert fast.fallbacks == 2
    changed = list(public)
    changed[zk.PUB_DEPOSIT] += 1
    assert (
        fast.verify(CIRCUIT, proof, changed) is False
    )  # Python's pairing check, not the worker's word
    # A B really outside the subgroup is still refused, with PyProofVerifier's error.
    p = copy.deepcopy(proof)
    p["pi_b"] = g2_outside_subgroup()
    with pytest.raises(ProofError, match="subgroup"):
        fast.verify(CIRCUIT, p, public)
    assert fast.fallbacks == 3


def test_fast_verifier_without_a_working_worker(
    light_sample: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validator whose Node.js is gone (the worker cannot start) gives the same answers."""
    keys, proof, public = light_sample
    monkeypatch.setenv("ACCORD_NODE", "/nonexistent/accord-test-node")
    fast = FastProofVerifier({CIRCUIT: keys.vk}, worker=SnarkjsWorker())
    assert fast.verify(CIRCUIT, groth16.compress_proof(proof), public) is True
    with pytest.raises(ProofError):
        fast.verify(CIRCUIT, "{not json", public)
    assert fast.fallbacks == 1


def _child_worker_pid(conn: Any) -> None:
    from accord.zk.prover import shared_worker

    w = shared_worker()
    reply = w.request("ping")
    proc = w._proc
    conn.send((reply.get("ok"), proc.pid if proc is not None else None))
    w.close()
    conn.close()


def test_forked_child_does_not_share_the_parents_worker() -> None:
    """Replies on a shared pipe could reach the wrong process (with equal request ids): a
    forked child must talk to a Node process of its own."""
    import multiprocessing

    from accord.zk.prover import shared_worker

    parent = shared_worker()
    assert parent.request("ping")["ok"]
    assert parent._proc is not None
    parent_node = parent._proc.pid
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Pipe()
    child = ctx.Process(target=_child_worker_pid, args=(b,))
    child.start()
    ok, child_node = a.recv()
    child.join(30)
    assert ok and child_node is not None and child_node != parent_node
    assert parent.request("ping")["ok"] and parent._proc.pid == parent_node


# --- the worker's own checks and its prepared keys ---------------------------------------------


class _RecordingWorker(SnarkjsWorker):
    """Counts the verify requests that carried the whole key."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_sent = 0

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if op == "verify" and "vk" in fields:
            self.keys_sent += 1
        return super().request(op, **fields)


def test_worker_checks_points_and_inputs_itself(sample: Any) -> None:
    """Straight to the worker, past the Python parsing: it must refuse bad points and inputs
    on its own (an error, never "valid"), and tell a wrong statement from a broken proof."""
    keys, proof, public = sample
    w = SnarkjsWorker()
    try:
        assert w.verify(keys.vk, proof, public) is True
        changed = list(public)
        changed[zk.PUB_DEPOSIT] += 1
        assert w.verify(keys.vk, proof, changed) is False
        bad: list[tuple[str, dict[str, Any], list[int]]] = []
        p = copy.deepcopy(proof)
        p["pi_a"][1] = str((int(proof["pi_a"][1]) + 1) % groth16.Q)
        bad.append(("A off the curve", p, public))
        p = copy.deepcopy(proof)
        p["pi_c"] = ["0", "1", "0"]
        bad.append(("C at infinity", p, public))
        p = copy.deepcopy(proof)
        p["pi_b"] = [list(reversed(c)) for c in proof["pi_b"][:2]] + [["1", "0"]]
        bad.append(("B off the twist", p, public))
        p = copy.deepcopy(proof)
        p["pi_c"] = [str(int(proof["pi_c"][0]) + groth16.Q), proof["pi_c"][1], "1"]
        bad.append(("C coordinate >= q", p, public))
        p = copy.deepcopy(proof)
        p["pi_a"] = [proof["pi_a"][0], proof["pi_a"][1]]
        bad.append(("A without z", p, public))
        bad.append(("input >= r", proof, [public[0] + groth16.R, *public[1:]]))
        bad.append(("one input short", proof, public[:-1]))
        for name, p, pub in bad:
            with pytest.raises(ProofError):
                w.verify(keys.vk, p, pub)
                pytest.fail(name)
        p = copy.deepcopy(proof)
        p["pi_b"] = g2_outside_subgroup()
        with pytest.raises(ProofError, match="subgroup"):
            w.verify(keys.vk, p, public)
    finally:
        w.close()


def test_worker_prepares_each_key_once_and_again_after_a_restart(sample: Any) -> None:
    keys, proof, public = sample
    w = _RecordingWorker()
    try:
        for _ in range(3):
            assert w.verify(keys.vk, proof, public) is True
        assert w.keys_sent == 1
        assert w._proc is not None
        w._proc.kill()  # a new Node process knows no keys: the next request sends it again
        w._proc.wait()
        assert w.verify(keys.vk, proof, public) is True
        assert w.keys_sent == 2
        # A worker that lost the key while Python believed otherwise asks for it.
        from accord.zk.prover import key_id

        other = copy.deepcopy(keys.vk)
        other["IC"] = list(reversed(other["IC"]))
        w._vks.add(key_id(other))
        assert w.verify(other, proof, public) is False
        assert w.keys_sent == 3
    finally:
        w.close()


def _fake_node(folder: Path, name: str, body: str) -> str:
    """An ACCORD_NODE that misbehaves the way the review's wrapper did."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_worker_that_prints_a_stray_line_falls_back(
    light_sample: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's wrapper prints one non-JSON line before Node's: the old verifier raised
    JSONDecodeError (a receipt a pure-Python validator would not write). Now the worker is
    restarted, the fault counted, and the answer is the pure-Python one."""
    import shutil

    keys, proof, public = light_sample
    node = shutil.which("node")
    assert node is not None
    monkeypatch.setenv(
        "ACCORD_NODE", _fake_node(tmp_path, "node", f"echo 'stray line'\nexec {node} \"$@\"")
    )
    worker = SnarkjsWorker()
    fast = FastProofVerifier({CIRCUIT: keys.vk}, worker=worker)
    py = PyProofVerifier({CIRCUIT: keys.vk})
    changed = list(public)
    changed[zk.PUB_DEPOSIT] += 1
    for pub in (public, changed):
        assert fast.verify(CIRCUIT, proof, pub) is py.verify(CIRCUIT, proof, pub)
    assert worker.faults == 2 and fast.fallbacks == 2
    # a fixed Node.js: the same worker starts a good process and decides by itself again
    monkeypatch.setenv("ACCORD_NODE", node)
    assert fast.verify(CIRCUIT, proof, public) is True
    assert worker.faults == 2 and fast.fallbacks == 2
    worker.close()


def test_a_hung_or_exiting_worker_falls_back(
    light_sample: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wedged Node process blocked the old verifier for ever; one that exits at once, or
    answers garbage, must not change the answer either."""
    keys, proof, public = light_sample
    for name, body in (
        ("hang", "exec sleep 100000"),
        ("exit", "exit 0"),
        ("garbage", 'read line; echo \'{"id": 1, "ok": true, "valid": "yes"}\'; sleep 5'),
    ):
        monkeypatch.setenv("ACCORD_NODE", _fake_node(tmp_path, name, body))
        worker = SnarkjsWorker(verify_timeout=1.0)
        fast = FastProofVerifier({CIRCUIT: keys.vk}, worker=worker)
        assert fast.verify(CIRCUIT, proof, public) is True, name
        assert worker.faults == 1 and fast.fallbacks == 1, name
        assert worker._proc is None, name  # the faulty process was ended, not left running
