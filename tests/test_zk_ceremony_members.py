"""The ceremony across machines: three members in three separate processes with separate
folders (nothing shared but the published files), a beacon fixed after the last contribution,
a transcript anyone re-verifies, and refusals of a tampered step file or transcript.

Also: genesis keeps the transcript hash next to each key's hash, and a validator refuses a
genesis whose keys are not the ceremony's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import ValidationError
from accord.zk import build as zb
from accord.zk import transcript as zt
from accord.zk.tools import ZkToolError

pytestmark = pytest.mark.timeout(900)
MEMBERS = ("bank-a", "bank-b", "regulator")
CIRCUIT = (
    "pragma circom 2.1.0;\ntemplate M() { signal input a; signal input b;"
    " signal output c; c <== a * b; }\ncomponent main {public [a]} = M();\n"
)
# The review's backdoor: same name and public interface, c unconstrained (any c "proves").
EVIL = (
    "pragma circom 2.1.0;\ntemplate M() { signal input a; signal input b;"
    " signal output c; c <-- a * b; signal t <== a * a; }\ncomponent main {public [a]} = M();\n"
)


BEACON_HEIGHT = 200


def _beacon_chain() -> Any:
    """The chain whose block at BEACON_HEIGHT gives the beacon (4 demo validators)."""
    from .support.genesis import make_genesis

    return make_genesis(4, chain_id="beacon-chain")


def _certificate(
    height: int = BEACON_HEIGHT,
    signers: tuple[str, ...] = ("v0", "v1", "v2"),
    block: bytes = b"block 200",
    chain_id: str = "beacon-chain",
) -> str:
    """A commit certificate of that chain (signed by the demo validators' public seeds)."""
    import hashlib

    from accord.base.crypto import bls
    from accord.base.types import Certificate, bitmap_from
    from accord.consensus.aggregate import PHASE_C, vote_message

    block_hash = hashlib.sha256(block).digest()
    msg = vote_message(chain_id, height, 1, PHASE_C, block_hash)
    sig = bls.aggregate([bls.sign(bls.demo_secret(v), msg) for v in signers])
    idx = [int(v[1:]) for v in signers if v.startswith("v")] or [0, 1, 2]
    return Certificate(height, 1, PHASE_C, block_hash, bitmap_from(idx, 4), sig).encode().hex()


def _source(folder: Path, text: str = CIRCUIT) -> Path:
    """A member's own copy of the circuit source (from its checkout of the agreed release)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mul.circom").write_text(text)
    return folder / "mul.circom"


def _accord(*args: str, cwd: Path) -> dict:
    """One member's command, in its own process and working folder (its own "machine")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "zk", "ceremony", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _publish(src: Path, dst: Path) -> Path:
    """What a member receives: a copy of the previous member's published folder."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("members")
    coord = root / "coordinator"
    src = _source(coord / "src")
    keys: dict[str, Path] = {}
    for m in MEMBERS:  # each member makes its key on its own machine, publishes the public key
        keys[m] = root / f"{m}-keys" / "member.key"
        AccountKey.generate().save(keys[m])
    pubs = ",".join(f"{m}={AccountKey.load(keys[m]).public_key.hex()}" for m in MEMBERS)
    folders: dict[str, Path] = {}
    chain = root / "beacon-chain.json"  # every participant has the beacon chain's genesis
    _beacon_chain().save(chain)
    (root / "certificate.hex").write_text(_certificate())
    out = _accord(
        "init",
        "--out",
        str(coord / "published"),
        "--power",
        "8",
        "--members",
        pubs,
        "--file",
        str(src),
        "--beacon-chain",
        str(chain),
        "--beacon-height",
        str(BEACON_HEIGHT),
        "--iterations",
        "10",
        cwd=coord,
    )
    assert out["next"][0] == "contribute"
    prev = coord / "published"
    folders["init"] = prev
    for phase in (1, 2):
        for m in MEMBERS:
            machine = root / f"{m}-machine-{phase}"
            inbox = _publish(prev, machine / "inbox")
            mine = _source(machine / "src")
            out = _accord(
                "contribute",
                "--in",
                str(inbox),
                "--out",
                str(machine / "published"),
                "--name",
                m,
                "--key",
                str(keys[m]),
                "--file",
                str(mine),
                cwd=machine,
            )
            assert len(out["contributions"]) == phase  # phase 1: one; phase 2: one more (1 circuit)
            (root / f"{m}-keys" / "hashes.json").write_text(json.dumps(out["contributions"]))
            prev = machine / "published"
            folders[f"{m}-{phase}"] = prev
        machine = root / f"close-{phase}"
        inbox = _publish(prev, machine / "inbox")
        close = (
            ["prepare"]
            if phase == 1
            else [
                "beacon",
                "--certificate",
                str(root / "certificate.hex"),
                "--beacon-chain",
                str(chain),
            ]
        )
        _accord(
            *close,
            "--in",
            str(inbox),
            "--out",
            str(machine / "published"),
            "--file",
            str(_source(machine / "src")),
            cwd=machine,
        )
        prev = machine / "published"
        folders[f"close-{phase}"] = prev
    folders["final"] = prev
    folders["root"] = root
    return folders


def _specs(folder: Path, text: str = CIRCUIT) -> list[zb.CircuitSpec]:
    return [zb.file_spec(_source(folder, text))]


def _member_key(ceremony: dict[str, Path], m: str) -> AccountKey:
    return AccountKey.load(ceremony["root"] / f"{m}-keys" / "member.key")


@pytest.fixture(scope="module")
def attested(ceremony: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the final folder that every member verified and attested."""
    root = tmp_path_factory.mktemp("attested")
    final = shutil.copytree(ceremony["final"], root / "final")
    v = zt.verify([final, *_all(ceremony)], _specs(root / "src"), _beacon_chain())
    for m in MEMBERS:
        zt.attest(final, v, m, _member_key(ceremony, m))
    return final


def _all(folders: dict[str, Path]) -> list[Path]:
    return [folders["final"], *(v for k, v in folders.items() if k not in ("final", "root"))]


def test_three_members_and_the_verifier(ceremony: dict[str, Path], tmp_path: Path) -> None:
    v = zt.verify(_all(ceremony), _specs(tmp_path / "src"), _beacon_chain())
    assert set(v.vks) == {"mul"} and v.vks["mul"]["nPublic"] == 2
    t = zt.Transcript.load(ceremony["final"])
    assert t.hash == v.transcript_hash and t.next_step() is None
    contributors = [(e["phase"], e["member"]) for e in t.entries if e["step"] == "contribute"]
    assert contributors == [(1, m) for m in MEMBERS] + [(2, m) for m in MEMBERS]
    # one beacon: from the transcript after the last contribution and the certified block
    beacons = [e for e in t.entries if e["step"] == "beacon"]
    last = max(i for i, e in enumerate(t.entries) if e["step"] == "contribute")
    for e in beacons:
        assert e["beacon"] == zt.derive_beacon(t.entries[last]["hash"], e["value"])
        assert e["value"] == zt.certified_beacon(t.params, _beacon_chain(), _certificate())
    # no entropy anywhere in what was published
    text = (ceremony["final"] / zt.TRANSCRIPT).read_text()
    assert "entropy" not in text
    # the CLI's verify writes genesis: the keys, the transcript hash and the keys' hashes
    from accord.cli.main import main as cli

    from .support.genesis import make_genesis

    gpath = tmp_path / "genesis.json"
    make_genesis(1).save(gpath)
    published = shutil.copytree(ceremony["final"], tmp_path / "published")
    dirs = sum((["--dir", str(d)] for d in [published, *_all(ceremony)]), [])
    src = str(_source(tmp_path / "src"))
    dirs += ["--beacon-chain", str(ceremony["root"] / "beacon-chain.json")]
    assert cli(["zk", "ceremony", "verify", *dirs, "--file", src, "--genesis", str(gpath)]) == 0
    # every member finds its own contributions (the hashes contribute printed to it)
    for m in MEMBERS:
        hashes = json.loads((ceremony["root"] / f"{m}-keys" / "hashes.json").read_text())
        assert v.contributions[m] == hashes
        assert (
            cli(
                [
                    "zk",
                    "ceremony",
                    "verify",
                    *dirs,
                    "--file",
                    src,
                    "--member",
                    m,
                    *sum((["--hash", h] for h in hashes), []),
                    "--key",
                    str(ceremony["root"] / f"{m}-keys" / "member.key"),
                    "--attest",
                ]
            )
            == 0
        )
    from accord.base.genesis import Genesis

    g = Genesis.load(gpath)
    assert g.zk_params["ceremony"]["transcript"] == v.transcript_hash
    with pytest.raises(zt.CeremonyError, match="not attested by bank-a, bank-b, regulator"):
        zt.check_genesis(dict(g.zk_circuits), dict(g.zk_params), t)
    signed = zt.Transcript.load(published)
    assert [a["member"] for a in signed.attestations] == list(MEMBERS)
    assert signed.hash == t.hash  # attestations sign the chain; they are not part of it
    zt.check_genesis(dict(g.zk_circuits), dict(g.zk_params), signed)


def test_a_tampered_contribution_is_refused(ceremony: dict[str, Path], tmp_path: Path) -> None:
    """bank-b's phase-1 file replaced by one byte changed, then by a genuine contribution of
    someone else on the same input: both refused."""
    copy = {k: shutil.copytree(v, tmp_path / k) for k, v in ceremony.items()}
    t = zt.Transcript.load(copy["final"])
    entry = next(e for e in t.entries if e["step"] == "contribute" and e["member"] == "bank-b")
    victims = [d / entry["file"] for d in copy.values() if (d / entry["file"]).exists()]
    for f in victims:
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
    with pytest.raises(zt.CeremonyError, match="SHA-256"):
        zt.verify(_all(copy), _specs(tmp_path / "src"), _beacon_chain())


def test_a_tampered_transcript_is_refused(ceremony: dict[str, Path], tmp_path: Path) -> None:
    final = shutil.copytree(ceremony["final"], tmp_path / "final")
    path = final / zt.TRANSCRIPT
    doc = json.loads(path.read_text())
    # rename a contributor (and fix the hash of that entry only): the chain breaks
    good = json.dumps(doc)
    doc["entries"][2]["member"] = "mallory"
    path.write_text(json.dumps(doc))
    with pytest.raises(zt.CeremonyError, match="hash chain"):
        zt.Transcript.load(final)
    # a re-hashed transcript that lists other contributors than the files: snarkjs's list of
    # contributions in each file does not match
    doc = json.loads(good)
    doc["params"]["members"][1][0] = "mallory"
    t = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
        if body.get("member") == "bank-b":
            body["member"] = "mallory"
        t.append(**body)
    t.save(final)
    others = [v for k, v in ceremony.items() if k not in ("final", "root")]
    with pytest.raises(zt.CeremonyError, match="signature"):
        zt.verify([final, *others], _specs(tmp_path / "src"), _beacon_chain())
    # a beacon value changed after the fact (re-hashed): the derivation check fails
    doc = json.loads(good)
    t = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
        if body.get("step") == "beacon" and body.get("phase") == 2:
            body["value"] = "a value chosen later"
        t.append(**body)
    t.save(final)
    with pytest.raises(zt.CeremonyError, match="beacon"):
        zt.verify([final, *others], _specs(tmp_path / "src"), _beacon_chain())


def test_steps_out_of_turn_and_tampered_inputs_are_refused(
    ceremony: dict[str, Path], tmp_path: Path
) -> None:
    specs = _specs(tmp_path / "src")
    bank_b = AccountKey.load(ceremony["root"] / "bank-b-keys" / "member.key")
    # bank-b cannot contribute before bank-a (the transcript names the next member)
    with pytest.raises(zt.CeremonyError, match="bank-a"):
        zt.contribute(ceremony["init"], tmp_path / "b", "bank-b", bank_b, specs)
    # closing a phase before its last contribution is refused
    with pytest.raises(zt.CeremonyError, match="not prepare"):
        zt.prepare(ceremony["bank-b-1"], tmp_path / "early", specs)
    # a member given a tampered previous file refuses to build on it
    inbox = shutil.copytree(ceremony["bank-a-1"], tmp_path / "inbox")
    t = zt.Transcript.load(inbox)
    f = inbox / t.entries[-1]["file"]
    data = bytearray(f.read_bytes())
    data[-100] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(zt.CeremonyError, match="SHA-256"):
        zt.contribute(inbox, tmp_path / "b2", "bank-b", bank_b, specs)
    # ... and a file whose hash was re-recorded still fails snarkjs's own check
    doc = json.loads((inbox / zt.TRANSCRIPT).read_text())
    t2 = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
        if body["file"] == f.name:
            body["sha256"] = zt.tools.file_hash(f)
        t2.append(**body)
    t2.save(inbox)
    with pytest.raises((zt.CeremonyError, ZkToolError)):
        zt.contribute(inbox, tmp_path / "b3", "bank-b", bank_b, specs)


def test_a_backdoored_circuit_is_refused(
    ceremony: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's C2: the coordinator runs the ceremony on an r1cs that is not the source
    circuit (c unconstrained, same name and public inputs). Before: verify said OK and a proof
    of "0 * b = 16" verified. Now every member and verifier compiles its own sources."""
    honest = _specs(tmp_path / "honest")
    evil = _specs(tmp_path / "evil", EVIL)
    evil_r1cs = zb.build(evil[0]).r1cs
    keys = {m: AccountKey.load(ceremony["root"] / f"{m}-keys" / "member.key") for m in MEMBERS}
    members = tuple((m, keys[m].public_key.hex()) for m in MEMBERS)
    # (a) a ceremony honestly labelled with the evil source: its source hash is not the
    # members' source, so the first member refuses to contribute
    chain = _beacon_chain()
    zt.init(
        tmp_path / "a",
        8,
        [(m, keys[m].public_key) for m in MEMBERS],
        evil,
        chain.hash.hex(),
        BEACON_HEIGHT,
        10,
    )
    with pytest.raises(zt.CeremonyError, match="not the ones the ceremony was started for"):
        zt.contribute(tmp_path / "a", tmp_path / "a1", "bank-a", keys["bank-a"], honest)
    # (b) the coordinator records the honest source hash next to the evil r1cs
    params = zt.Params(
        8,
        members,
        (("mul", zt.source_hash(honest[0]), zt.tools.file_hash(evil_r1cs)),),
        zt.compiler_versions(),
        chain.hash.hex(),
        BEACON_HEIGHT,
        10,
    )
    zt._init_with(tmp_path / "b", params, {"mul": evil_r1cs})
    with pytest.raises(zt.CeremonyError, match="not what its sources compile to"):
        zt.contribute(tmp_path / "b", tmp_path / "b1", "bank-a", keys["bank-a"], honest)
    # ... and a whole ceremony on it, run by members who skipped the check (a patched
    # client), is refused by any verifier who compiles the honest source
    with monkeypatch.context() as mp:
        mp.setattr(zt, "compile_circuits", lambda p, s: {"mul": evil_r1cs})
        prev = tmp_path / "b"
        folders = [prev]
        for phase in (1, 2):
            for m in MEMBERS:
                nxt = tmp_path / f"b-{m}-{phase}"
                zt.contribute(prev, nxt, m, keys[m], honest)
                folders.append(nxt)
                prev = nxt
            nxt = tmp_path / f"b-close-{phase}"
            if phase == 1:
                zt.prepare(prev, nxt, honest)
            else:
                zt.beacon(prev, nxt, _certificate(), chain, honest)
            folders.append(nxt)
            prev = nxt
        assert set(zt.verify([prev, *folders], honest, chain).vks) == {"mul"}  # the old behaviour
    with pytest.raises(zt.CeremonyError, match="not what its sources compile to"):
        zt.verify([prev, *folders], honest, chain)


def test_a_relay_cannot_contribute_in_a_members_name(
    ceremony: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's C1: the relay drops bank-b's phase-1 file and contributes as "bank-b"
    itself. Before: verify passed. Now the entry is bank-b's only with bank-b's signature."""
    specs = _specs(tmp_path / "src")
    relay = AccountKey.generate()
    with pytest.raises(zt.CeremonyError, match="not bank-b's"):
        zt.contribute(ceremony["bank-a-1"], tmp_path / "r0", "bank-b", relay, specs)
    # a relay with a patched client signs the entry with its own key
    with monkeypatch.context() as mp:
        real = zt.Params.member_key
        mp.setattr(
            zt.Params,
            "member_key",
            lambda self, name: relay.public_key if name == "bank-b" else real(self, name),
        )
        zt.contribute(ceremony["bank-a-1"], tmp_path / "r1", "bank-b", relay, specs)
    with pytest.raises(zt.CeremonyError, match="bank-b's signature does not verify"):
        zt.Transcript.load(tmp_path / "r1")
    # ... or copies honest bank-b's signature onto its own file: it does not cover that file
    doc = json.loads((tmp_path / "r1" / zt.TRANSCRIPT).read_text())
    honest = zt.Transcript.load(ceremony["bank-b-1"]).entries[-1]
    doc["entries"][-1]["signature"] = honest["signature"]
    t = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        t.append(**{k: v for k, v in e.items() if k not in ("prev", "hash")})
    t.save(tmp_path / "r1")
    with pytest.raises(zt.CeremonyError, match="bank-b's signature does not verify"):
        zt.Transcript.load(tmp_path / "r1")
    # and bank-b's own check of a final transcript finds its hash, not the relay's
    v = zt.verify(_all(ceremony), specs, _beacon_chain())
    mine = json.loads((ceremony["root"] / "bank-b-keys" / "hashes.json").read_text())
    zt.check_member(v, "bank-b", mine)
    with pytest.raises(zt.CeremonyError, match="not in the transcript"):
        zt.check_member(v, "bank-b", [doc["entries"][-1]["contribution"]])


def test_the_beacon_is_the_certified_block(ceremony: dict[str, Path], tmp_path: Path) -> None:
    """The review's C3: the beacon runner ground the value (a beacon starting with 00 in ~140
    tries) and each circuit got its own. Now the value is the block hash that the beacon
    chain's validators certified at the height fixed at init: a value of the runner's choice,
    another height, another chain or a certificate without quorum is refused."""
    specs = _specs(tmp_path / "src")
    chain = _beacon_chain()
    last = ceremony["regulator-2"]
    for cert, match in (
        (_certificate(height=BEACON_HEIGHT - 1), "init fixed height 200"),
        (_certificate(signers=("v0", "v1")), "does not verify"),
        (_certificate(signers=("x0", "x1", "x2")), "does not verify"),
        (_certificate(chain_id="another-chain"), "does not verify"),
        ("00" * 20, "malformed"),
    ):
        with pytest.raises(zt.CeremonyError, match=match):
            zt.beacon(last, tmp_path / "b", cert, chain, specs)
    from .support.genesis import make_genesis

    with pytest.raises(zt.CeremonyError, match="not the one init fixed"):
        zt.beacon(last, tmp_path / "b", _certificate(), make_genesis(4, chain_id="x"), specs)
    # a ground value written into the final transcript (re-hashed, beacon re-derived)
    final = shutil.copytree(ceremony["final"], tmp_path / "final")
    doc = json.loads((final / zt.TRANSCRIPT).read_text())
    t = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
        if body["step"] == "beacon":
            body["value"] = "00" + body["value"][2:]
            body["beacon"] = zt.derive_beacon(t.hash, body["value"])
        t.append(**body)
    t.save(final)
    others = [v for k, v in ceremony.items() if k not in ("final", "root")]
    with pytest.raises(zt.CeremonyError, match="not the certified block hash"):
        zt.verify([final, *others], specs, chain)


def _validator(tmp_path: Path, zk_circuits: dict, zk_params: dict, **config: object) -> Any:
    """A validator's folder with this genesis, and the Node made from it (not started: the
    ZK start-up check runs where the node builds its runtime)."""
    from accord.base.crypto import bls
    from accord.node.config import NodeConfig
    from accord.node.node import Node

    from .support.genesis import make_genesis

    g = make_genesis(1).model_copy(update={"zk_circuits": zk_circuits, "zk_params": zk_params})
    home = tmp_path / "validator"
    home.mkdir(exist_ok=True)
    g.save(tmp_path / "genesis.json")
    cfg = NodeConfig(name="v0", genesis="../genesis.json", **config)  # type: ignore[arg-type]
    return Node(cfg, g, bls.demo_secret("v0"), home)


def _node_hooks(node: Any) -> dict[str, Any]:
    """What the validator's start-up gives its runtime (the ZK check runs here)."""
    from accord.node.hooks import runtime_hooks

    return runtime_hooks(
        node.genesis,
        node.config,
        node.home,
        name=node.name,
        allow_insecure_zk=node.allow_insecure_zk,
    )


def _hooks(tmp_path: Path, zk_circuits: dict, zk_params: dict, **config: object) -> dict[str, Any]:
    return _node_hooks(_validator(tmp_path, zk_circuits, zk_params, **config))


def test_a_validator_checks_the_transcript_at_start_up(
    ceremony: dict[str, Path], attested: Path, tmp_path: Path
) -> None:
    """The review's C4: a made-up transcript hash next to matching key hashes passed, and an
    insecure-dev genesis only logged a warning. Now the validator checks the transcript file
    (hash, chain, signatures, the keys it exports) and refuses insecure-dev unless allowed."""
    final = attested
    t = zt.Transcript.load(final)
    vk = json.loads(next(final.glob("*_vk_mul.json")).read_text())
    real = {"transcript": t.hash, "vks": {"mul": zt.vk_hash(vk)}}
    shutil.copyfile(final / zt.TRANSCRIPT, tmp_path / zt.TRANSCRIPT)  # next to genesis
    assert "proof_verifier" in _hooks(tmp_path, {"mul": vk}, {"ceremony": real})
    made_up = {"transcript": "00" * 32, "vks": {"mul": zt.vk_hash(vk)}}
    with pytest.raises(ValidationError, match="not the one genesis records"):
        _hooks(tmp_path, {"mul": vk}, {"ceremony": made_up})
    # a self-made key with its own hash in the record: the transcript exports another key
    own = {**vk, "vk_alpha_1": vk["vk_beta_2"][0] + ["1"]}
    with pytest.raises(ValidationError, match="does not produce the keys"):
        _hooks(tmp_path, {"mul": own}, {"ceremony": {**real, "vks": {"mul": zt.vk_hash(own)}}})
    # a transcript whose signatures do not hold (re-hashed after an edit) is refused by name
    doc = json.loads((final / zt.TRANSCRIPT).read_text())
    doc["entries"][1]["sha256"] = "ab" * 32
    forged = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        forged.append(**{k: v for k, v in e.items() if k not in ("prev", "hash")})
    forged.save(tmp_path / "forged")
    with pytest.raises(zt.CeremonyError, match="signature"):
        _hooks(
            tmp_path,
            {"mul": vk},
            {"ceremony": {**real, "transcript": forged.hash}},
            ceremony_transcript="../forged/transcript.json",
        )
    # no transcript at all: refused, saying what is missing
    (tmp_path / zt.TRANSCRIPT).unlink()
    with pytest.raises(ValidationError, match="give the validator its transcript"):
        _hooks(tmp_path, {"mul": vk}, {"ceremony": real})
    # insecure-dev: only with the explicit option
    with pytest.raises(ValidationError, match="insecure-dev"):
        _hooks(tmp_path, {"mul": vk}, {"ceremony": "insecure-dev"})
    node = _validator(tmp_path, {"mul": vk}, {"ceremony": "insecure-dev"}, allow_insecure_zk=True)
    assert "proof_verifier" in _node_hooks(node)


def test_genesis_keys_must_be_the_ceremonys() -> None:
    vk = {"protocol": "groth16", "IC": [1]}
    rec = {"transcript": "ab" * 32, "vks": {"c": zt.vk_hash(vk)}}
    with pytest.raises(ValidationError, match="give the validator its transcript"):
        zt.check_genesis({"c": vk}, {"ceremony": rec})  # a record alone proves nothing
    zt.check_genesis({}, {})
    with pytest.raises(ValidationError, match="not the ceremony's"):
        zt.check_genesis({"c": {**vk, "IC": [2]}}, {"ceremony": rec})
    with pytest.raises(ValidationError, match="no ceremony"):
        zt.check_genesis({"c": vk}, {})


def test_a_validator_without_the_fast_verifier_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Validators must run the fast verifier (pure Python is ~13x slower and leaders size
    blocks by their own speed): one that cannot says so at start-up."""
    from accord.zk.verifier import PyProofVerifier

    monkeypatch.setenv("ACCORD_NODE", str(tmp_path / "no-node-here"))
    node = _validator(
        tmp_path,
        {"mul": {"protocol": "groth16"}},
        {"ceremony": "insecure-dev"},
        allow_insecure_zk=True,
    )
    with caplog.at_level("WARNING", logger="accord.node"):
        hooks = _node_hooks(node)
    assert isinstance(hooks["proof_verifier"], PyProofVerifier)
    assert "may not keep up with proof-heavy blocks" in caplog.text


# --- second review ----------------------------------------------------------------------------


def _rewritten(final: Path, edit: Any) -> zt.Transcript:
    """The final transcript with ``edit(body)`` applied to each entry, re-hashed (what anyone
    who runs a closing step, or relays the final folder, can write)."""
    doc = json.loads((final / zt.TRANSCRIPT).read_text())
    t = zt.Transcript(zt.Params.from_json(doc["params"]), [])
    for e in doc["entries"]:
        body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
        edit(body)
        t.append(**body)
    return t


def test_a_validator_does_not_start_on_a_forged_closing_step(
    ceremony: dict[str, Path], attested: Path, tmp_path: Path
) -> None:
    """Second review: the closing steps (beacon, export) are signed by nobody, and a validator
    runs only the cheap checks. Whoever relayed the final folder rewrote the export entry to
    name a key of its own (one it knows the trapdoor of) and put that key and the new hash
    in genesis; the old validator started on it. Now it needs every member's attestation,
    which an honest member gives only to the transcript its full verify passed."""
    vk = json.loads(next(attested.glob("*_vk_mul.json")).read_text())
    own = {**vk, "vk_alpha_1": vk["IC"][0]}

    def swap_key(body: dict[str, Any]) -> None:
        if body["step"] == "export":
            body["vk_hash"] = zt.vk_hash(own)

    forged = _rewritten(attested, swap_key)
    rec = {"transcript": forged.hash, "vks": {"mul": zt.vk_hash(own)}}
    forged.save(tmp_path)  # transcript.json next to genesis
    with pytest.raises(zt.CeremonyError, match="not attested by bank-a, bank-b, regulator"):
        _hooks(tmp_path, {"mul": own}, {"ceremony": rec})
    # the genuine attestations copied over do not cover the forged transcript
    forged.attestations = zt.Transcript.load(attested).attestations
    forged.save(tmp_path)
    with pytest.raises(zt.CeremonyError, match="bank-a's attestation does not verify"):
        _hooks(tmp_path, {"mul": own}, {"ceremony": rec})
    # a member cannot be made to attest a transcript other than the one it verified
    v = zt.verify(_all(ceremony), _specs(tmp_path / "src"), _beacon_chain())
    with pytest.raises(zt.CeremonyError, match="does not hold the transcript that was verified"):
        zt.attest(tmp_path, v, "bank-a", _member_key(ceremony, "bank-a"))
    # nor does an outsider's key, or one member's attestation under another's name, count
    with pytest.raises(zt.CeremonyError, match="not bank-b's"):
        zt.attest(attested, v, "bank-b", _member_key(ceremony, "bank-a"))
    genuine = zt.Transcript.load(attested)
    by_a = genuine.attestations[0]["signature"]
    genuine.attestations = [{"member": m, "signature": by_a} for m in MEMBERS]
    with pytest.raises(zt.CeremonyError, match="bank-b's attestation does not verify"):
        genuine.check_attestations()
    genuine.attestations = zt.Transcript.load(attested).attestations * 2
    with pytest.raises(zt.CeremonyError, match="attested twice"):
        genuine.check_attestations()
    # the honest, attested transcript starts the validator
    shutil.copyfile(attested / zt.TRANSCRIPT, tmp_path / zt.TRANSCRIPT)
    real = {"transcript": genuine.hash, "vks": {"mul": zt.vk_hash(vk)}}
    assert "proof_verifier" in _hooks(tmp_path, {"mul": vk}, {"ceremony": real})


def _fake_params() -> zt.Params:
    return zt.Params(
        8,
        tuple((m, AccountKey.from_name(m).public_key.hex()) for m in MEMBERS),
        (("mul", "ab" * 32, "cd" * 32),),
        (("circom2", "0"), ("circomlib", "0")),
        "ef" * 32,
        BEACON_HEIGHT,
        10,
    )


@pytest.mark.parametrize(
    "edit",
    [
        {"file": None},
        {"file": 7},
        {"file": "../../outside.ptau"},
        {"sha256": 12},
        {"sha256": "AB" * 32},
        {"phase": True},
    ],
)
def test_a_malformed_transcript_entry_is_refused_by_name(
    tmp_path: Path, edit: dict[str, Any]
) -> None:
    """Second review: a transcript is input from whoever relayed it. An entry without its
    ``file`` (re-hashed, so the chain holds) loaded, and ``verify``/``contribute`` then died
    with a KeyError traceback; a number for ``sha256`` reached the file comparison. Now
    loading names the malformed field."""
    t = zt.Transcript(_fake_params(), [])
    body = {"step": "new", "phase": 1, "circuit": None, "member": None}
    body.update({"file": "000_new.ptau", "sha256": "00" * 32})
    body.update(edit)
    t.append(**{k: v for k, v in body.items() if v is not None or k in ("circuit", "member")})
    t.save(tmp_path)
    with pytest.raises(zt.CeremonyError, match="malformed"):
        zt.Transcript.load(tmp_path)
    good = zt.Transcript(_fake_params(), [])
    good.append(
        step="new", phase=1, circuit=None, member=None, file="000_new.ptau", sha256="00" * 32
    )
    good.save(tmp_path / "good")
    assert zt.Transcript.load(tmp_path / "good").next_step() == ("contribute", 1, None, "bank-a")
