"""Contracts deployed after genesis: registered, upgraded and retired by vote, installed on
each node from its configuration, and a validator without the approved code stops before the
height that needs it (with what to install), never computing another state."""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.base.errors import AccordError, ValidationError
from accord.base.types import Receipt
from accord.contracts import Token
from accord.contracts.determinism import NondeterministicContract, check_contract
from accord.contracts.installed import (
    load_class,
    load_entry_point,
    own_modules,
    package_code_hash,
)
from accord.contracts.runtime import CodeMissing, Runtime, code_hash
from accord.ledger.application import MissingContractCode
from accord.node.config import InstalledContract, NodeConfig
from accord.node.hooks import installed_contracts

from .support.gov import GovChain, NetworkGov, governed_genesis, make_escrow_package, member_key

M0, M1, M2 = (member_key(i) for i in range(3))


@pytest.fixture
def code(tmp_path: Path) -> Iterator[tuple[type, type]]:
    """Escrow v1 and v2, two releases of one contract (installed as separate packages)."""
    tag = re.sub(r"\W", "_", tmp_path.name)
    sys.path.insert(0, str(tmp_path / "code"))
    v1 = load_class(make_escrow_package(tmp_path / "code", f"escrow1_{tag}", version=1))
    v2 = load_class(make_escrow_package(tmp_path / "code", f"escrow2_{tag}", version=2, fee=1))
    try:
        yield v1, v2
    finally:
        sys.path.remove(str(tmp_path / "code"))


def _pass(gov: GovChain, action: dict, activation: int | None = None) -> int:
    r = gov.propose(M0, action, activation)
    assert r.ok, r.error
    for key in (M1, M2):
        last = gov.call(key, "approve", proposal=r.result)
    assert last.result == "passed", last.error
    return int(gov.query("proposal", proposal=r.result)["effective"])


def _escrow(gov: GovChain, key, method: str, **args) -> Receipt:  # type: ignore[no-untyped-def]
    return gov.block(gov.tx(key, "escrow", method, **args))[0]


def test_a_contract_is_deployed_called_upgraded_and_retired_by_vote(
    tmp_path: Path, code: tuple[type, type]
) -> None:
    v1, v2 = code
    g = governed_genesis(4)
    gov = GovChain(tmp_path, g, Runtime(g, installed=[v1, v2]))
    r = _escrow(gov, M0, "deposit", amount=10)
    assert not r.ok and "no contract 'escrow'" in r.error  # not on this chain yet

    at = _pass(gov, {"kind": "register_contract", "name": "escrow", "code_hash": code_hash(v1)})
    gov.empty(at - 2 - gov.height)
    assert not _escrow(gov, M0, "deposit", amount=10).ok  # block at - 1: not yet
    assert gov.height == at - 1
    r = _escrow(gov, M0, "deposit", amount=10)  # the block at the activation height
    assert r.ok and r.result == 10 and r.events[0].data["version"] == 1
    assert gov.chain.query("escrow", "version", {}) == 1

    # Upgrade: from its height every call runs v2, on the state v1 left.
    up = _pass(
        gov,
        {"kind": "upgrade_contract", "name": "escrow", "code_hash": code_hash(v2)},
        activation=gov.height + 6,
    )
    gov.empty(up - 2 - gov.height)
    r = _escrow(gov, M0, "deposit", amount=10)
    assert gov.height == up - 1 and r.events[0].data["version"] == 1 and r.result == 20
    r = _escrow(gov, M0, "deposit", amount=10)
    assert gov.height == up and r.events[0].data["version"] == 2 and r.result == 29  # fee 1
    assert gov.chain.query("escrow", "held", {"who": M0.address}) == 29

    end = _pass(gov, {"kind": "retire_contract", "name": "escrow"})
    gov.empty(end - gov.height)
    r = _escrow(gov, M0, "deposit", amount=10)
    assert not r.ok and "retired by governance" in r.error
    s = gov.chain.scheduled(gov.height)
    assert "escrow" in s.retired and "escrow" not in s.contracts


def test_a_validator_without_the_approved_code_stops_before_its_height(
    tmp_path: Path, code: tuple[type, type], caplog: pytest.LogCaptureFixture
) -> None:
    v1, v2 = code
    g = governed_genesis(4)
    a = GovChain(tmp_path / "a", g, Runtime(g, installed=[v1, v2]))
    b_store = tmp_path / "b"
    b = GovChain(b_store, g, Runtime(g, installed=[v1]))  # never installed v2

    def follow() -> None:
        for h in range(b.height + 1, a.height + 1):
            block, _ = a.chain.block_and_certificate(h)
            b.chain.commit(block, None)

    at = _pass(a, {"kind": "register_contract", "name": "escrow", "code_hash": code_hash(v1)})
    a.empty(at - a.height)
    assert _escrow(a, M0, "deposit", amount=10).ok
    follow()
    assert b.chain.head() == a.chain.head()  # v1 runs the same on both

    with caplog.at_level(logging.WARNING, logger="accord.ledger.chain"):
        up = _pass(
            a,
            {"kind": "upgrade_contract", "name": "escrow", "code_hash": code_hash(v2)},
            activation=a.height + 8,
        )
        follow()  # b learns of the upgrade: it warns while there is time
    warned = [r.getMessage() for r in caplog.records if "will stop before height" in r.getMessage()]
    assert warned and code_hash(v2).hex() in warned[0] and "'escrow'" in warned[0]

    a.empty(up - a.height)  # a makes the block at the activation height
    follow_to = up - 1
    for h in range(b.height + 1, follow_to + 1):
        b.chain.commit(a.chain.block_and_certificate(h)[0], None)
    assert b.height == up - 1
    block, _ = a.chain.block_and_certificate(up)
    with pytest.raises(MissingContractCode) as refused:
        b.chain.validate(block)  # no vote for it
    message = refused.value.message
    assert "'escrow'" in message and code_hash(v2).hex() in message and "node.json" in message
    with pytest.raises(MissingContractCode):
        b.chain.commit(block, None)  # nor applied: the node halts on this (never forks)
    assert b.height == up - 1
    with pytest.raises(MissingContractCode):
        b.chain.build([], time_ms=block.header.time_ms)  # and it proposes nothing there

    # Restarted without the code: refused at once, with the same message.
    b.chain.store.close()
    with pytest.raises(CodeMissing, match=code_hash(v2).hex()):
        GovChain(b_store, g, Runtime(g, installed=[v1]))
    # Installed: it applies the block the others agreed on and reaches their state.
    b2 = GovChain(b_store, g, Runtime(g, installed=[v1, v2]))
    b2.chain.commit(block, None)
    assert b2.chain.head() == a.chain.head()
    assert b2.chain.head_header().state_root == a.chain.head_header().state_root


def test_the_code_hash_covers_the_contracts_own_package(tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    try:
        spec = make_escrow_package(tmp_path, "escrow_hashed", version=1)
        cls = load_class(spec)
        names = [n for n, _ in own_modules(cls)]
        # The package's __init__ runs on import too: it is part of the code.
        assert names == ["escrow_hashed", "escrow_hashed.escrow", "escrow_hashed.rules"]
        before = package_code_hash(cls)
        assert code_hash(cls) == before
        rules = tmp_path / "escrow_hashed" / "rules.py"
        rules.write_text(rules.read_text().replace("FEE = 0", "FEE = 5"))  # a helper changed
        assert package_code_hash(cls) != before
    finally:
        sys.path.remove(str(tmp_path))
    # A one-file contract (each built-in) hashes as its file: genesis hashes stay as they were.
    token_file = Path(sys.modules[Token.__module__].__file__ or "")
    assert code_hash(Token) == hashlib.sha256(token_file.read_bytes()).digest()


def test_a_helper_module_is_held_to_the_determinism_rules(tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    try:
        make_escrow_package(tmp_path, "escrow_random", version=1)
        rules = tmp_path / "escrow_random" / "rules.py"
        rules.write_text(rules.read_text() + "import random\nFEE = random.randrange(3)\n")
        cls = load_class("escrow_random.escrow:Escrow")
        with pytest.raises(NondeterministicContract, match=r"rules\.py:\d+: import random"):
            check_contract(cls)
    finally:
        sys.path.remove(str(tmp_path))


def test_node_json_names_installed_code(tmp_path: Path) -> None:
    make_escrow_package(tmp_path / "node" / "contracts", "escrow_cfg", version=3)
    cfg = NodeConfig(
        name="v0",
        genesis="genesis.json",
        contracts=[InstalledContract(module="escrow_cfg.escrow:Escrow", path="contracts")],
    )
    try:
        (cls,) = installed_contracts(cfg, tmp_path / "node")
        assert cls.name == "escrow" and importlib.import_module("escrow_cfg.rules").VERSION == 3
    finally:
        sys.path.remove(str((tmp_path / "node" / "contracts").resolve()))
    with pytest.raises(ValueError, match="exactly one"):
        InstalledContract(module="a:B", entry_point="b")
    with pytest.raises(ValidationError, match="cannot import contract module"):
        load_class("no_such_package_here.mod:Thing")
    with pytest.raises(ValidationError, match="is not a contract class"):
        load_class("json:dumps")
    with pytest.raises(ValidationError, match="pip install"):
        load_entry_point("no-such-contract")


# --- a real network ------------------------------------------------------------------------


def test_on_a_network_the_validator_lacking_an_upgrade_halts_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    """Four in-process validators; validator-3 never installs v2 of the contract. At the
    upgrade's height it halts, saying what to install; the other three (a quorum) go on."""
    import time

    from .support.inproc import ThreadedNetwork

    code_dir = tmp_path / "code"
    v1_spec = make_escrow_package(code_dir, "escrow_net1", version=1)
    v2_spec = make_escrow_package(code_dir, "escrow_net2", version=2)

    def install(root: Path) -> None:
        for i in range(4):
            folder = root / f"validator-{i}"
            cfg = NodeConfig.load(folder)
            specs = [v1_spec] if i == 3 else [v1_spec, v2_spec]
            cfg.contracts = [InstalledContract(module=s, path=str(code_dir)) for s in specs]
            cfg.save(folder)

    net = ThreadedNetwork(tmp_path / "net", name="gov-deploy", prepare=install)
    try:
        gov = NetworkGov(net, 3)
        clients = gov.clients

        def vote(action: dict, activation: int | None = None) -> int:
            return gov.vote(action, [0, 1, 2], activation)

        v1, v2 = load_class(v1_spec), load_class(v2_spec)
        with pytest.raises(AccordError, match="no contract 'escrow'"):
            clients[0].query("escrow", "version")
        at = vote({"kind": "register_contract", "name": "escrow", "code_hash": code_hash(v1)})
        while clients[3].status()["height"] < at:
            time.sleep(0.1)
        # Deployed by vote, it answers through every node's API (validator-3 has v1 too).
        assert [c.query("escrow", "version") for c in clients] == [1, 1, 1, 1]
        height = clients[0].status()["height"]
        up = vote(
            {"kind": "upgrade_contract", "name": "escrow", "code_hash": code_hash(v2)},
            activation=max(at, height) + 12,
        )
        deadline = time.monotonic() + 90
        lagging = net.nodes[3]
        while time.monotonic() < deadline:
            heights = [c.status()["height"] for c in clients[:3]]
            if min(heights) >= up + 3 and lagging.fault is not None:
                break
            time.sleep(0.2)
        assert min(c.status()["height"] for c in clients[:3]) >= up + 3, "the others stalled"
        fault = lagging.fault or ""
        assert "'escrow'" in fault and code_hash(v2).hex() in fault and "node.json" in fault
        assert lagging.chain is not None and lagging.chain.head()[0] == up - 1
        # The three that went on agree on every block.
        assert len({clients[i].block(up).hash for i in range(3)}) == 1
    finally:
        net.close()
