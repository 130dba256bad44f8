"""The build pipeline and the ceremony: cache keys, resumability, verified contributions, and
the example of a user's own circuit and contract end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from accord.base.errors import ProofError, ValidationError
from accord.zk import artifacts, build
from accord.zk.ceremony import Ceremony, CeremonyParams
from accord.zk.tools import ZkToolError

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zk_credit_score"


def test_build_is_cached_by_source(tmp_path: Path) -> None:
    src = tmp_path / "c.circom"
    src.write_text(
        'pragma circom 2.1.0;\ninclude "poseidon.circom";\n'
        "template T() { signal input a; signal output h; component p = Poseidon(1);"
        " p.inputs[0] <== a; h <== p.out; }\ncomponent main = T();\n"
    )
    first = build.build(build.file_spec(src))
    assert first.r1cs.exists() and first.wasm.exists() and first.constraints > 0
    assert build.build(build.file_spec(src)).folder == first.folder  # cached
    src.write_text(src.read_text().replace("Poseidon(1)", "Poseidon(1) ") + "\n")
    assert build.build(build.file_spec(src)).folder != first.folder  # new source, new key
    with pytest.raises(ValidationError):
        build.build(build.CircuitSpec("x", tmp_path / "missing.circom"))
    nomain = tmp_path / "lib.circom"
    nomain.write_text("pragma circom 2.1.0;\ntemplate T() { signal input a; }\n")
    with pytest.raises(ValidationError):
        build.file_spec(nomain)
    bad = tmp_path / "bad.circom"
    bad.write_text("pragma circom 2.1.0;\ncomponent main = Nope();\n")
    with pytest.raises(ZkToolError):
        build.build(build.file_spec(bad))


def test_power_for_counts_public_inputs() -> None:
    assert build.power_for(8088, 17) == 13
    assert build.power_for(8175, 17) == 14  # 8175 + 17 + 1 > 8192


def test_ceremony_resumes_and_verifies_contributions(tmp_path: Path) -> None:
    src = tmp_path / "mul.circom"
    src.write_text(
        "pragma circom 2.1.0;\ntemplate M() { signal input a; signal input b;"
        " signal output c; c <== a * b; }\ncomponent main {public [a]} = M();\n"
    )
    spec = build.file_spec(src)
    params = CeremonyParams(power=8, members=("a", "b"), seed="resume-test")
    folder = tmp_path / "ceremony"
    keys = artifacts.setup_circuit(spec, params, folder=folder)
    assert keys.vk["nPublic"] == 2 and keys.zkey.exists()  # output c and input a
    steps = sorted(p for p in folder.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in steps}
    # kill the last steps: a re-run redoes only those
    (folder / "phase1" / "final.ptau").unlink()
    for p in (folder / "phase2").rglob("*"):
        if p.name in ("final.zkey", "vk.json"):
            p.unlink()
    again = artifacts.setup_circuit(spec, params, folder=folder)
    assert again.vk == keys.vk  # deterministic entropy: the same keys
    for p in steps:
        if p.name not in ("final.ptau", "verified.json", "final.zkey", "vk.json"):
            assert p.stat().st_mtime_ns == mtimes[p], p
    # another ceremony's parameters in this folder are refused
    with pytest.raises(ValidationError):
        Ceremony(folder, CeremonyParams(power=8, members=("a", "c"), seed="resume-test"))
    # a corrupted contribution is caught by the verification of the next one
    (folder / "phase1" / "02_b.ptau").unlink()
    (folder / "phase1" / "beacon.ptau").unlink()
    (folder / "phase1" / "final.ptau").unlink()
    first = folder / "phase1" / "01_a.ptau"
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(ZkToolError):
        Ceremony(folder, params).run_phase1()


def test_example_own_circuit_and_contract(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("zk_credit_run", EXAMPLE / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main([])
    assert out["ok"] and out["qualified"], out
    with pytest.raises(ProofError):  # a score below the threshold has no proof
        mod.main(["--score", "650"])
    # What the example binds (the review's attacks): the bureau signs the score, the proof is
    # bound to the sender and the chain, and records are keyed by the sender.
    from accord.base.crypto.ed25519 import AccountKey

    keys, genesis, rt, state = mod.setup()
    alice, mallory = AccountKey.from_name("credit-alice"), AccountKey.from_name("credit-mallory")
    proof = mod.prove(keys, alice.address, 760, 7, genesis.chain_id)
    r = mod.register(rt, state, genesis, mallory, 7, proof)  # replayed by someone else
    assert not r.ok and "no valid proof" in r.error, r.error
    assert mod.register(rt, state, genesis, alice, 7, proof).ok
    r = mod.register(rt, state, genesis, alice, 8, proof, nonce=1)  # another epoch
    assert not r.ok and "no valid proof" in r.error, r.error
    other_chain = mod.prove(keys, mallory.address, 760, 7, "another-chain")
    r = mod.register(rt, state, genesis, mallory, 7, other_chain, nonce=1)
    assert not r.ok and "no valid proof" in r.error, r.error
    # the borrower cannot score itself: a signature by any key but the bureau's has no proof
    with pytest.raises(ProofError):
        mod.prove(keys, mallory.address, 800, 7, genesis.chain_id, bureau_secret=b"m" * 32)
    # Mallory's own valid registration cannot overwrite Alice's record
    own = mod.prove(keys, mallory.address, 720, 7, genesis.chain_id)
    assert mod.register(rt, state, genesis, mallory, 7, own, nonce=2).ok
    assert rt.query(
        state, "credit_gate", "qualified", {"borrower": alice.address}, time_ms=mod.epoch_time(7)
    )
    sys.modules.pop("contract", None)


def test_example_credit_scores_are_current_only() -> None:
    """The review's stale-epoch attack: a 760 score of epoch 1 registered in epoch 50 and
    stayed qualified; a borrower could overwrite its record with an older epoch. Now only the
    current epoch's score registers, and qualified() answers for the current epoch only."""
    spec = importlib.util.spec_from_file_location("zk_credit_run", EXAMPLE / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from accord.base.crypto.ed25519 import AccountKey

    keys, genesis, rt, state = mod.setup()
    alice = AccountKey.from_name("credit-stale-alice")
    old = mod.prove(keys, alice.address, 760, 1, genesis.chain_id)  # the bureau's epoch-1 score
    r = mod.register(rt, state, genesis, alice, 1, old, time_ms=mod.epoch_time(50))
    assert not r.ok and "current epoch 50" in r.error, r.error
    # a current score registers and qualifies in its epoch, and no longer in the next one
    now = mod.prove(keys, alice.address, 720, 50, genesis.chain_id)
    assert mod.register(rt, state, genesis, alice, 50, now, nonce=1).ok
    query = {"borrower": alice.address}
    assert rt.query(state, "credit_gate", "qualified", query, time_ms=mod.epoch_time(50))
    assert not rt.query(state, "credit_gate", "qualified", query, time_ms=mod.epoch_time(51))
    # an older epoch never replaces the record, even sent in its own epoch's time (a clock
    # the contract cannot see going back is refused by the record itself)
    r = mod.register(rt, state, genesis, alice, 1, old, nonce=2, time_ms=mod.epoch_time(1))
    assert not r.ok and "newer score is recorded" in r.error, r.error
    assert rt.query(state, "credit_gate", "qualified", query, time_ms=mod.epoch_time(50))
    sys.modules.pop("contract", None)


def test_cli_ceremony_writes_genesis(tmp_path: Path) -> None:
    from accord.base.genesis import Genesis
    from accord.cli.main import main as cli
    from accord.zk import notes as zk

    from .support.genesis import make_genesis

    path = tmp_path / "genesis.json"
    make_genesis(1).save(path)
    reg = zk.RegulatorKey.from_seed(b"cli-regulator").public
    args = [
        "zk",
        "ceremony",
        "--circuit",
        "shielded_transfer",
        "--depth",
        str(artifacts.TEST_DEPTH),
        "--power",
        str(artifacts.TEST_POWER),
        "--members",
        ",".join(artifacts.TEST_MEMBERS),
        "--seed",
        "accord-tests",
        "--genesis",
        str(path),
    ]
    assert cli([*args, "--regulator-public", f"{reg[0]},{reg[1]}"]) == 0
    g = Genesis.load(path)
    assert g.zk_circuits["shielded_transfer"] == artifacts.test_keys("shielded_transfer").vk
    assert g.zk_params["shielded_pool"] == {"depth": artifacts.TEST_DEPTH}
    assert g.zk_params["regulator"] == [str(reg[0]), str(reg[1])]
    assert cli([*args, "--regulator-public", "1,2"]) == 1  # not a subgroup point


def test_cli_prove_says_which_key_and_checks_genesis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`accord zk prove` used (or made) the dev ceremony's keys without a word. Now it proves
    with --zkey (a ceremony's final key) or says it uses the dev key, and with --genesis it
    refuses a key whose verification key is not the one genesis names."""
    import random

    from accord.cli.main import main as cli
    from accord.zk import notes as zk
    from accord.zk.verifier import PyProofVerifier

    from .support.genesis import make_genesis

    keys = artifacts.test_keys("shielded_transfer")
    alice = zk.SpendingKey.from_seed(b"prove-cli-alice")
    reg = zk.RegulatorKey.from_seed(b"prove-cli-regulator")
    plan = zk.plan_transfer(
        alice,
        [],
        [(alice.address, 5)],
        zk.MerkleTree(artifacts.TEST_DEPTH),
        reg.public,
        rng=random.Random(5),
        deposit=5,
        chain_id="test",
    )
    (tmp_path / "in.json").write_text(json.dumps(plan.circuit_input))
    right, wrong = tmp_path / "right.json", tmp_path / "wrong.json"
    make_genesis(1).model_copy(update={"zk_circuits": {"shielded_transfer": keys.vk}}).save(right)
    other = {**keys.vk, "IC": keys.vk["IC"][::-1]}
    make_genesis(1).model_copy(update={"zk_circuits": {"shielded_transfer": other}}).save(wrong)
    base = [
        "zk",
        "prove",
        "--circuit",
        "shielded_transfer",
        "--depth",
        str(artifacts.TEST_DEPTH),
        "--input",
        str(tmp_path / "in.json"),
        "--out",
        str(tmp_path / "proof.json"),
    ]
    assert cli([*base, "--zkey", str(keys.zkey), "--genesis", str(wrong)]) == 1
    said = capsys.readouterr()
    assert "is not the one" in said.out + said.err
    assert not (tmp_path / "proof.json").exists()
    assert cli([*base, "--zkey", str(keys.zkey), "--genesis", str(right)]) == 0
    assert f"proving key {keys.zkey}" in capsys.readouterr().err
    doc = json.loads((tmp_path / "proof.json").read_text())
    assert PyProofVerifier({"shielded_transfer": keys.vk}).verify(
        "shielded_transfer", doc["proof"], doc["public"]
    )
    # without --zkey: the dev ceremony's key, and it says so
    dev = [
        "--power",
        str(artifacts.TEST_POWER),
        "--members",
        ",".join(artifacts.TEST_MEMBERS),
        "--seed",
        "accord-tests",
    ]
    assert cli([*base, *dev, "--genesis", str(right)]) == 0
    assert "dev ceremony" in capsys.readouterr().err


def test_dev_ceremony_entropy_is_not_on_a_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-process ceremony passed `-e=<entropy>` to snarkjs, visible in `ps` to every
    user of the machine; it now goes on standard input, as in the ceremony across machines."""
    from accord.zk import tools

    calls: list[tuple[list[str], str | None]] = []
    real = tools.run

    def spy(cmd: list[str], **kw: object) -> str:
        calls.append((list(cmd), kw.get("stdin")))  # type: ignore[arg-type]
        return real(cmd, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tools, "run", spy)
    src = tmp_path / "mul.circom"
    src.write_text(
        "pragma circom 2.1.0;\ntemplate M() { signal input a; signal input b;"
        " signal output c; c <== a * b; }\ncomponent main {public [a]} = M();\n"
    )
    params = CeremonyParams(power=8, members=("a",), seed=None)
    keys = artifacts.setup_circuit(build.file_spec(src), params, folder=tmp_path / "c")
    assert keys.zkey.exists()
    contributions = [(c, s) for c, s in calls if "contribute" in c]
    assert len(contributions) == 2  # phase 1 and phase 2 of member a
    for cmd, stdin in contributions:
        assert not any(a.startswith(("-e", "--entropy")) for a in cmd), cmd
        assert stdin is not None and len(stdin.strip()) == 64
