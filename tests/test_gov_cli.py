"""``accord gov propose|approve|list|show|in-force`` against a real 4-validator network (in
process): members sign with the account key ``accord init`` left in each validator folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.members import new_member
from accord.cli.main import main

from .support.inproc import ThreadedNetwork


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedNetwork]:
    n = ThreadedNetwork(tmp_path_factory.mktemp("gov"), name="gov-cli")
    try:
        yield n
    finally:
        n.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _member(net: ThreadedNetwork, i: int) -> list[str]:
    folder = net.root / f"validator-{i}"
    return ["--key", str(folder / "account.json"), "--node", str(folder)]


def test_members_propose_approve_and_read_the_schedule(
    net: ThreadedNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        capsys,
        "gov",
        "propose",
        "set_consensus",
        "max_block_gas=20000000",
        *_member(net, 0),
        "--json",
        "--wait",
        "30",
    )
    assert code == 0, (out, err)
    doc = json.loads(out)
    assert doc["receipt"]["ok"] is True
    pid = doc["receipt"]["result"]
    assert pid.startswith("0x") and len(pid) == 66

    code, out, err = _cli(capsys, "gov", "approve", pid, *_member(net, 1), "--wait", "30")
    assert code == 0, (out, err)
    code, out, _ = _cli(capsys, "gov", "show", pid, "--node", str(net.root / "validator-3"))
    assert code == 0 and "open" in out and "2/3 approvals" in out and "max_block_gas" in out

    code, out, err = _cli(capsys, "gov", "approve", pid, *_member(net, 2), "--json", "--wait", "30")
    assert code == 0, (out, err)
    assert json.loads(out)["receipt"]["result"] == "passed"

    code, out, _ = _cli(capsys, "gov", "list", "--url", net.urls[1], "--json")
    listed = json.loads(out)
    assert code == 0 and listed["total"] == 1
    entry = listed["proposals"][0]
    assert entry["id"] == pid and entry["status"] == "passed"
    at = entry["effective"]

    code, out, _ = _cli(
        capsys, "gov", "in-force", "--height", str(at), "--url", net.urls[2], "--json"
    )
    assert code == 0 and json.loads(out)["consensus"]["max_block_gas"] == 20_000_000
    code, out, _ = _cli(
        capsys, "gov", "in-force", "--height", str(at - 1), "--url", net.urls[2], "--json"
    )
    assert json.loads(out)["consensus"]["max_block_gas"] == 50_000_000

    # A double approval is refused by the contract, and the command says so (exit 1).
    code, out, err = _cli(capsys, "gov", "approve", pid, *_member(net, 1), "--wait", "30")
    assert code == 1 and "proposal" in out and "passed already" in out, (out, err)


def test_a_new_members_card_and_a_non_member(
    net: ThreadedNetwork, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    new_member(tmp_path / "newcomer", "validator-4")
    code, out, err = _cli(
        capsys,
        "gov",
        "propose",
        "add_validator",
        "--card",
        str(tmp_path / "newcomer" / "member.json"),
        *_member(net, 3),
        "--json",
        "--wait",
        "30",
    )
    assert code == 0, (out, err)
    pid = json.loads(out)["receipt"]["result"]
    code, out, _ = _cli(capsys, "gov", "show", pid, "--url", net.urls[0], "--json")
    shown = json.loads(out)
    assert shown["action"]["kind"] == "add_validator" and shown["action"]["name"] == "validator-4"

    outsider = tmp_path / "outsider.json"
    AccountKey.generate().save(outsider)
    code, out, err = _cli(
        capsys,
        "gov",
        "propose",
        "retire_contract",
        "name=loans",
        "--key",
        str(outsider),
        "--node",
        str(net.root / "validator-0"),
        "--wait",
        "30",
    )
    assert code == 1 and "only members may propose" in out, (out, err)


def test_bad_command_lines_are_clear_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _cli(capsys, "gov", "show", "abcd", "--url", "http://127.0.0.1:9")
    assert code == 1 and "not a proposal id" in err and "Traceback" not in err
    key = tmp_path / "k.json"
    AccountKey.generate().save(key)
    code, _, err = _cli(
        capsys, "gov", "propose", "retire_contract", "kind=x", "--key", str(key), "--chain-id", "c"
    )
    assert code == 1 and "first argument" in err
    code, _, err = _cli(
        capsys,
        "gov",
        "propose",
        "retire_contract",
        "--card",
        str(key),
        "--key",
        str(key),
        "--chain-id",
        "c",
    )
    assert code == 1 and "--card is for" in err


def test_code_names_the_hash_of_installed_code(tmp_path: Path) -> None:
    import sys

    from accord.cli.gov import build_action
    from accord.contracts.installed import load_class
    from accord.contracts.runtime import code_hash

    from .support.gov import make_escrow_package

    sys.path.insert(0, str(tmp_path))
    try:
        spec = make_escrow_package(tmp_path, "escrow_cli", version=1)
        action = build_action("upgrade_contract", [], code=spec)
        assert action == {
            "kind": "upgrade_contract",
            "name": "escrow",
            "code_hash": code_hash(load_class(spec)),
        }
        assert build_action("set_consensus", ["round_ms=900"]) == {
            "kind": "set_consensus",
            "params": {"round_ms": 900},
        }
    finally:
        sys.path.remove(str(tmp_path))


def test_register_circuit_takes_the_hash_of_a_key_file(tmp_path: Path) -> None:
    from accord.base.errors import ValidationError
    from accord.base.genesis import vk_hash
    from accord.cli.gov import build_action

    vk = {"protocol": "groth16", "curve": "bn128", "nPublic": 1, "IC": [["1", "2", "1"]]}
    (tmp_path / "vk.json").write_text(json.dumps(vk))
    action = build_action(
        "register_circuit", ["name=kyc", f"transcript_hash=0x{'ab' * 32}"], vk=tmp_path / "vk.json"
    )
    assert action["vk_hash"] == vk_hash(vk) and action["name"] == "kyc"
    with pytest.raises(ValidationError, match="--vk is for register_circuit"):
        build_action("rotate_regulator", [], vk=tmp_path / "vk.json")
    with pytest.raises(ValidationError, match="cannot read the verification key"):
        build_action("register_circuit", [], vk=tmp_path / "absent.json")
