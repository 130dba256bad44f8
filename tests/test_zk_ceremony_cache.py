"""The one-machine ceremony trusts no cached step file on resume.

Each attack changes a cached file between two runs. The old code skipped every step whose file
existed and shipped keys from whatever was there; now a cached file is used only if its bytes
hash to the record written when it passed snarkjs's verification, and a file without a record is
verified in full. The attacks that also delete the records show what that full check catches
(and the docstring of ``accord.zk.ceremony._Records`` says what no check on one machine can).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from accord.zk import artifacts, build, tools
from accord.zk.ceremony import Ceremony, CeremonyCacheError, CeremonyParams
from accord.zk.tools import ZkToolError

pytestmark = pytest.mark.timeout(900)
CIRCUIT = (
    "pragma circom 2.1.0;\ntemplate M() { signal input a; signal input b;"
    " signal output c; c <== a * b; }\ncomponent main {public [a]} = M();\n"
)
PARAMS = CeremonyParams(power=8, members=("a", "b"), seed="cache-tamper-test")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cache")
    src = root / "mul.circom"
    src.write_text(CIRCUIT)
    spec = build.file_spec(src)
    keys = artifacts.setup_circuit(spec, PARAMS, folder=root / "good")
    # A valid phase 1 of another ceremony (same power, another second member).
    other = Ceremony(
        root / "other", CeremonyParams(power=8, members=("a", "mallory"), seed="cache-tamper-test")
    )
    other.run_phase1()
    return {"root": root, "spec": spec, "keys": keys, "other_ptau": other.ptau_final}


def _copy(made: dict[str, Any], name: str) -> Path:
    dst = Path(made["root"]) / name
    shutil.copytree(Path(made["root"]) / "good", dst)
    return dst


def _phase2(folder: Path) -> Path:
    return next(p for p in (folder / "phase2").iterdir() if p.is_dir())


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _setup(made: dict[str, Any], folder: Path) -> artifacts.CircuitKeys:
    return artifacts.setup_circuit(made["spec"], PARAMS, folder=folder)


def test_untouched_cache_resumes_without_running_snarkjs(
    made: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(made, "untouched")
    calls: list[list[str]] = []
    real = tools.run

    def counting(cmd: list[str], **kw: Any) -> str:
        calls.append(cmd)
        return real(cmd, **kw)

    monkeypatch.setattr(tools, "run", counting)
    keys = _setup(made, folder)
    assert keys.vk == made["keys"].vk
    assert calls == []  # a recorded cache costs file hashes, not verifications
    # An older cache without records is verified in full once, then recorded.
    (folder / "phase1" / "verified.json").unlink()
    (_phase2(folder) / "verified.json").unlink()
    assert _setup(made, folder).vk == made["keys"].vk
    assert any("verify" in c for c in calls)
    calls.clear()
    assert _setup(made, folder).vk == made["keys"].vk
    assert calls == []


def test_tampered_final_zkey_is_never_shipped(made: dict[str, Any]) -> None:
    folder = _copy(made, "zkey")
    zkey = _phase2(folder) / "final.zkey"
    _flip(zkey)
    with pytest.raises(CeremonyCacheError, match="changed after it was verified"):
        _setup(made, folder)
    with pytest.raises(CeremonyCacheError):  # refused again: the refusal changed nothing
        _setup(made, folder)
    # Without its record, the full verification refuses it too.
    (_phase2(folder) / "verified.json").unlink()
    with pytest.raises(ZkToolError):
        _setup(made, folder)


def test_valid_ptau_of_another_ceremony_is_refused(made: dict[str, Any]) -> None:
    # A file snarkjs accepts on its own: the old code set up phase 2 on it and shipped the keys.
    folder = _copy(made, "ptau")
    shutil.rmtree(folder / "phase2")
    shutil.copyfile(made["other_ptau"], folder / "phase1" / "final.ptau")
    with pytest.raises(CeremonyCacheError, match="changed after it was verified"):
        _setup(made, folder)
    assert not (folder / "phase2").exists() or not any((folder / "phase2").rglob("*.zkey"))
    # Without the record: snarkjs accepts the file, the contributor names do not match.
    (folder / "phase1" / "verified.json").unlink()
    with pytest.raises(CeremonyCacheError, match="mallory"):
        _setup(made, folder)


def test_tampered_contribution_is_not_built_on(made: dict[str, Any]) -> None:
    folder = _copy(made, "contribution")
    d = _phase2(folder)
    (d / "final.zkey").unlink()
    (d / "vk.json").unlink()
    _flip(d / "02_b.zkey")
    with pytest.raises(CeremonyCacheError, match="02_b.zkey changed"):
        _setup(made, folder)
    assert not (d / "final.zkey").exists() and not (d / "vk.json").exists()


def test_edited_verification_key_is_refused(made: dict[str, Any]) -> None:
    folder = _copy(made, "vk")
    vk_path = _phase2(folder) / "vk.json"
    vk = json.loads(vk_path.read_text())
    vk["vk_alpha_1"][0] = str(int(vk["vk_alpha_1"][0]) + 1)
    vk_path.write_text(json.dumps(vk))
    with pytest.raises(CeremonyCacheError, match="changed after it was verified"):
        _setup(made, folder)
    (_phase2(folder) / "verified.json").unlink()
    with pytest.raises(CeremonyCacheError, match="not the verification key"):
        _setup(made, folder)
