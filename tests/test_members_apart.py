"""Members set up apart (issue 19, deliverable 1): each member makes its own keys, genesis is
built from the public member cards only, the members compare one hash, and node folders say
where the peers are (genesis names no address).

Every refusal is tried the way a careless coordinator or a hostile member would: a proof of
possession for another key, a duplicate name / key / account, a card carrying a secret, a
genesis changed after assembly."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import pytest

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import GenesisError
from accord.base.genesis import Genesis, ValidatorInfo
from accord.base.members import GenesisDraft
from accord.cli.main import main
from accord.devnet import free_ports
from accord.node import Node
from accord.node.config import NodeConfig, init_network

pytestmark = pytest.mark.timeout(180)

MEMBERS = ["acme", "bank", "coop", "dept"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def height(node: Node) -> int:
    head = node.store.head()
    return 0 if head is None else head[0]


def make_members(capsys: pytest.CaptureFixture[str], root: Path) -> dict[str, Path]:
    """Each member's own folder and keys; returns the card files they send."""
    cards = {}
    for m in MEMBERS:
        code, out, _ = run(capsys, "keys", "new", "--validator", "--dir", str(root / m))
        assert code == 0
        card = json.loads(out)  # only the card is printed
        assert set(card) == {"format", "name", "bls_public_key", "pop", "account"}
        assert card["name"] == m
        cards[m] = root / m / "member.json"
    return cards


def assemble(capsys: pytest.CaptureFixture[str], root: Path, cards: dict[str, Path]) -> str:
    draft = root / "coordinator" / "genesis.json"
    draft.parent.mkdir()
    code, _, err = run(
        capsys,
        "genesis",
        "new",
        str(draft),
        "--chain-id",
        "consortium-test",
        "--round-ms",
        "300",
        "--stage2-ms",
        "150",
        "--genesis-time-ms",
        str(int(time.time() * 1000)),
    )
    assert code == 0, err
    code, _, err = run(capsys, "genesis", "add-member", str(draft), *map(str, cards.values()))
    assert code == 0, err
    code, out, err = run(capsys, "genesis", "assemble", str(draft))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["validators"] == MEMBERS and summary["f"] == 1
    return str(summary["genesis_hash"])


def test_four_members_set_up_apart_run_a_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = make_members(capsys, tmp_path)
    for m in MEMBERS:  # secrets are the owner's only
        for f in ("validator.key", "account.json"):
            assert stat.S_IMODE((tmp_path / m / f).stat().st_mode) == 0o600
    agreed = assemble(capsys, tmp_path, cards)
    shared = tmp_path / "coordinator" / "genesis.json"
    text = shared.read_text()
    doc = json.loads(text)
    for m in MEMBERS:  # no secret of any member, no address, in the shared document
        secret = json.loads((tmp_path / m / "validator.key").read_text())["secret"]
        seed = json.loads((tmp_path / m / "account.json").read_text())["seed"]
        assert secret not in text and seed not in text
    for v in doc["validators"]:
        assert set(v) == {"name", "bls_public_key", "pop", "account"}

    ports = free_ports(8)
    where = {m: f"127.0.0.1:{ports[i]}" for i, m in enumerate(MEMBERS)}
    for i, m in enumerate(MEMBERS):
        # each member checks the hash it was told out of band, then configures its node
        code, out, err = run(capsys, "genesis", "hash", str(shared), "--expect", agreed)
        assert code == 0, err
        peers = [f"--peer={p}={a}" for p, a in where.items() if p != m]
        code, out, err = run(
            capsys,
            "genesis",
            "join",
            str(shared),
            "--dir",
            str(tmp_path / m),
            "--hash",
            agreed,
            "--host",
            "127.0.0.1",
            "--port",
            str(ports[i]),
            "--api-port",
            str(ports[4 + i]),
            *peers,
        )
        assert code == 0, err
        cfg = NodeConfig.load(tmp_path / m)
        assert cfg.name == m and cfg.genesis_hash == agreed and len(cfg.peers) == 3

    async def network() -> None:
        nodes = [Node.from_dir(tmp_path / m) for m in MEMBERS]
        for n in nodes:
            await n.start()
        try:
            deadline = time.monotonic() + 90
            while min(height(n) for n in nodes) < 3:
                assert time.monotonic() < deadline, [height(n) for n in nodes]
                await asyncio.sleep(0.1)
            headers = [n.store.get_header(2) for n in nodes]
            assert headers[0] is not None
            assert {h.hash for h in headers if h is not None} == {headers[0].hash}
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(network())


def test_keys_new_validator_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "keys", "new", "--validator", "--dir", str(tmp_path / "m"))
    assert code == 0
    before = {f: (tmp_path / "m" / f).read_bytes() for f in os.listdir(tmp_path / "m")}
    code, out, err = run(capsys, "keys", "new", "--validator", "--dir", str(tmp_path / "m"))
    assert code == 1 and "refusing to overwrite" in err and out == ""
    after = {f: (tmp_path / "m" / f).read_bytes() for f in os.listdir(tmp_path / "m")}
    assert after == before


def _draft(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    assert run(capsys, "genesis", "new", str(path), "--chain-id", "c")[0] == 0


def _refused(capsys: pytest.CaptureFixture[str], draft: Path, card: Path, words: str) -> None:
    before = draft.read_bytes()
    code, _, err = run(capsys, "genesis", "add-member", str(draft), str(card))
    assert code == 1, err
    assert words in err and "Traceback" not in err
    assert draft.read_bytes() == before  # a refused card changes nothing


def test_add_member_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cards = make_members(capsys, tmp_path)
    draft = tmp_path / "draft.json"
    _draft(capsys, draft)
    assert run(capsys, "genesis", "add-member", str(draft), str(cards["acme"]))[0] == 0
    acme = json.loads(cards["acme"].read_text())
    bank = json.loads(cards["bank"].read_text())

    def card(name: str, doc: dict[str, object]) -> Path:
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(doc))
        return p

    # a rogue key: bank's public key with a proof made by another key (acme's)
    _refused(capsys, draft, card("rogue", {**bank, "pop": acme["pop"]}), "proof of possession")
    # acme's key with its own valid proof, sent again under another name: still one seat
    _refused(
        capsys,
        draft,
        card("dup-key", {**bank, "bls_public_key": acme["bls_public_key"], "pop": acme["pop"]}),
        "BLS key is already",
    )
    _refused(capsys, draft, card("dup-name", {**bank, "name": "acme"}), "name is already")
    _refused(
        capsys, draft, card("dup-acct", {**bank, "account": acme["account"]}), "account is already"
    )
    # a card carrying a secret, and the secret key file sent by mistake
    secret = json.loads((tmp_path / "bank" / "validator.key").read_text())["secret"]
    _refused(capsys, draft, card("leaky", {**bank, "secret": secret}), "holds a secret")
    _refused(capsys, draft, tmp_path / "bank" / "validator.key", "holds a secret")
    _refused(capsys, draft, tmp_path / "bank" / "account.json", "holds a secret")
    _refused(capsys, draft, card("extra", {**bank, "host": "10.0.0.1"}), "bad member card")
    _refused(capsys, draft, card("short", {**bank, "pop": "00"}), "bad member card")
    nonjson = tmp_path / "garbage.json"
    nonjson.write_bytes(b"\xff\x00not json")
    _refused(capsys, draft, nonjson, "not JSON")
    # the real bank card still goes in
    assert run(capsys, "genesis", "add-member", str(draft), str(cards["bank"]))[0] == 0
    assert [v.name for v in json_validators(draft)] == ["acme", "bank"]


def json_validators(path: Path) -> list[ValidatorInfo]:
    return GenesisDraft.load(path).validators


def test_a_genesis_edited_after_assembly_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = make_members(capsys, tmp_path)
    agreed = assemble(capsys, tmp_path, cards)
    shared = tmp_path / "coordinator" / "genesis.json"
    # an assembled genesis is final: no member can be slipped in afterwards
    code, _, err = run(capsys, "genesis", "add-member", str(shared), str(cards["acme"]))
    assert code == 1 and "not a genesis draft" in err
    member = tmp_path / "acme"
    port = free_ports(1)[0]
    code, _, err = run(
        capsys,
        "genesis",
        "join",
        str(shared),
        "--dir",
        str(member),
        "--hash",
        agreed,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    assert code == 0, err
    # someone edits the member's copy afterwards (a longer round, say)
    copy = member / "genesis.json"
    doc = json.loads(copy.read_text())
    doc["consensus"]["round_ms"] = 400
    copy.write_text(json.dumps(doc))
    code, _, err = run(capsys, "genesis", "hash", str(copy), "--expect", agreed)
    assert code == 1 and "not the genesis the members agreed on" in err
    with pytest.raises(GenesisError, match="pinned in node.json"):
        Node.from_dir(member)
    # joining with the wrong hash is refused before anything is written
    other = tmp_path / "bank"
    code, _, err = run(
        capsys,
        "genesis",
        "join",
        str(copy),
        "--dir",
        str(other),
        "--hash",
        agreed,
        "--port",
        str(port),
    )
    assert code == 1 and not (other / "node.json").exists()


def test_init_devnet_shortcut_puts_addresses_in_node_json_not_genesis(tmp_path: Path) -> None:
    g = init_network(
        tmp_path / "net",
        validators=4,
        deterministic=True,
        ports=[1, 2, 3, 4],
        api_ports=[5, 6, 7, 8],
        p2p_tls=False,
        demo_accounts=1,
    )
    doc = json.loads((tmp_path / "net" / "genesis.json").read_text())
    # No address; each validator's member account (its governance key) is public, its key
    # file stays in the validator's folder.
    assert all(set(v) == {"name", "bls_public_key", "pop", "account"} for v in doc["validators"])
    member = AccountKey.load(tmp_path / "net" / "validator-1" / "account.json")
    assert doc["validators"][1]["account"] == member.address.hex()
    cfg = NodeConfig.load(tmp_path / "net" / "validator-1")
    assert cfg.peers == {
        "validator-0": "127.0.0.1:1",
        "validator-2": "127.0.0.1:3",
        "validator-3": "127.0.0.1:4",
    }
    assert cfg.peer_addresses(g) == {0: ("127.0.0.1", 1), 2: ("127.0.0.1", 3), 3: ("127.0.0.1", 4)}


def test_an_older_genesis_with_addresses_still_loads_with_its_hash(tmp_path: Path) -> None:
    """Genesis files written before addresses left genesis keep their hash (a running chain
    keeps its identity) and their addresses remain the dial fallback."""
    sk = bls.demo_secret("legacy")
    old = {
        "chain_id": "old",
        "genesis_time_ms": 0,
        "validators": [
            {
                "name": "v0",
                "bls_public_key": bls.public_key(sk).hex(),
                "pop": bls.pop_prove(sk).hex(),
                "host": "10.1.2.3",
                "port": 26650,
                "api_port": 8650,
            }
        ],
    }
    (tmp_path / "g.json").write_text(json.dumps(old))
    g = Genesis.load(tmp_path / "g.json")
    assert g.validators[0].port == 26650
    assert g.model_dump(mode="json")["validators"][0] == old["validators"][0]  # as written
    g.save(tmp_path / "again.json")
    assert Genesis.load(tmp_path / "again.json").hash == g.hash


def test_a_member_governance_is_to_add_joins_with_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fifth member after genesis: its node.json is written from its own card (name, key)
    with --added; without it, or with a card that is not its key's, it is refused by name."""
    cards = make_members(capsys, tmp_path)
    agreed = assemble(capsys, tmp_path, cards)
    shared = str(tmp_path / "coordinator" / "genesis.json")
    code, _, _ = run(capsys, "keys", "new", "--validator", "--dir", str(tmp_path / "erin"))
    assert code == 0
    base = ["genesis", "join", shared, "--dir", str(tmp_path / "erin"), "--hash", agreed]
    code, _, err = run(capsys, *base, "--port", "7001")
    assert code != 0 and "--added" in err
    code, out, err = run(capsys, *base, "--port", "7001", "--added", "--peer=acme=127.0.0.1:7002")
    assert code == 0, err
    cfg = NodeConfig.load(tmp_path / "erin")
    assert cfg.name == "erin" and cfg.peers == {"acme": "127.0.0.1:7002"}
    # a genesis validator's name is not a newcomer's
    (tmp_path / "dup").mkdir()
    run(capsys, "keys", "new", "--validator", "--dir", str(tmp_path / "dup"), "--name", "acme")
    code, _, err = run(
        capsys,
        "genesis",
        "join",
        shared,
        "--dir",
        str(tmp_path / "dup"),
        "--hash",
        agreed,
        "--port",
        "7003",
        "--added",
    )
    assert code != 0 and "acme" in err
