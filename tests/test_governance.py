"""The governance contract: members propose and approve changes; each one is scheduled at an
activation height that ``Chain.scheduled`` reports. Every refusal is tried by an attacker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError
from accord.base.genesis import Genesis, GovernanceParams, _jsonable_ints, vk_hash
from accord.contracts.governance import threshold_of
from accord.contracts.runtime import Runtime
from accord.zk.babyjub import BASE8
from accord.zk.verifier import PyProofVerifier

from .support.gov import GovChain, governed_genesis, member_key, validator_info

M0, M1, M2, M3 = (member_key(i) for i in range(4))
OUTSIDER = AccountKey.from_name("not-a-member")


def _pid(receipt) -> bytes:  # type: ignore[no-untyped-def]
    assert receipt.ok, (receipt.error_code, receipt.error)
    return receipt.result


def _new_validator(name: str, account: AccountKey) -> dict:
    v = validator_info(name, account)
    return {
        "kind": "add_validator",
        "name": name,
        "bls_public_key": bytes.fromhex(v.bls_public_key),
        "pop": bytes.fromhex(v.pop),
        "account": account.address,
    }


@pytest.fixture
def gov(tmp_path: Path) -> GovChain:
    return GovChain(tmp_path, governed_genesis(4))


# --- genesis ----------------------------------------------------------------------------


def test_a_genesis_without_the_section_hashes_as_written(tmp_path: Path) -> None:
    g = governed_genesis(4)
    g.save(tmp_path / "genesis.json")
    raw = json.loads((tmp_path / "genesis.json").read_text())
    assert "governance" not in raw
    # The hash of the document exactly as written: what it was before the section existed.
    assert Genesis.load(tmp_path / "genesis.json").hash == encoding.hash_value(
        encoding.canonical(_jsonable_ints(raw))
    )
    with_section = governed_genesis(4, governance=GovernanceParams(threshold=3))
    assert with_section.hash != g.hash
    with_section.save(tmp_path / "g2.json")
    assert Genesis.load(tmp_path / "g2.json").governance_params.threshold == 3


def test_a_threshold_of_half_the_members_or_more_than_all_is_refused() -> None:
    for t in (2, 5):
        with pytest.raises(ValueError, match="governance.threshold"):
            governed_genesis(4, governance=GovernanceParams(threshold=t))
    assert threshold_of(governed_genesis(4), 4) == 3
    assert threshold_of(governed_genesis(4), 3) == 2
    assert threshold_of(governed_genesis(4), 7) == 5


# --- the lifecycle ----------------------------------------------------------------------


def test_a_proposal_passes_at_the_threshold_and_takes_effect_two_blocks_later(
    gov: GovChain,
) -> None:
    r = gov.propose(M0, {"kind": "set_consensus", "params": {"max_block_gas": 20_000_000}})
    pid = _pid(r)
    assert [e.name for e in r.events] == ["Proposed", "Approved"]
    r = gov.call(M1, "approve", proposal=pid)
    assert r.ok and r.result == "open"
    r = gov.call(M2, "approve", proposal=pid)
    assert r.ok and r.result == "passed", r.error
    passed_at = gov.height
    names = [e.name for e in r.events]
    assert names == ["Approved", "Passed"]
    assert r.events[1].data["effective"] == passed_at + 2
    shown = gov.query("proposal", proposal=pid)
    assert shown["status"] == "passed" and shown["effective"] == passed_at + 2
    assert gov.chain.scheduled(passed_at + 1).consensus.max_block_gas == 50_000_000
    assert gov.chain.scheduled(passed_at + 2).consensus.max_block_gas == 20_000_000
    # The rest of the parameters are genesis's, unchanged.
    assert gov.chain.scheduled(passed_at + 2).consensus.round_ms == gov.genesis.consensus.round_ms


def test_too_few_approvals_change_nothing(gov: GovChain) -> None:
    pid = _pid(gov.propose(M0, {"kind": "retire_contract", "name": "loans"}))
    assert gov.call(M1, "approve", proposal=pid).result == "open"
    gov.empty(5)
    assert gov.query("proposal", proposal=pid)["status"] == "open"
    assert "loans" in gov.chain.scheduled(gov.height + 2).contracts


def test_a_non_member_can_neither_propose_nor_approve(gov: GovChain) -> None:
    r = gov.propose(OUTSIDER, {"kind": "retire_contract", "name": "loans"})
    assert not r.ok and "only members may propose" in r.error
    pid = _pid(gov.propose(M0, {"kind": "retire_contract", "name": "loans"}))
    r = gov.call(OUTSIDER, "approve", proposal=pid)
    assert not r.ok and "only members may approve" in r.error
    assert gov.query("proposal", proposal=pid)["approvals"] == [M0.address]


def test_a_member_approves_at_most_once(gov: GovChain) -> None:
    pid = _pid(gov.propose(M0, {"kind": "retire_contract", "name": "loans"}))
    r = gov.call(M0, "approve", proposal=pid)  # the proposer's proposal is its approval
    assert not r.ok and "approved this proposal already" in r.error
    assert gov.call(M1, "approve", proposal=pid).ok
    r = gov.call(M1, "approve", proposal=pid)
    assert not r.ok and "approved this proposal already" in r.error
    assert gov.query("proposal", proposal=pid)["counted"] == 2


def test_an_expired_proposal_can_never_pass(tmp_path: Path) -> None:
    gov = GovChain(tmp_path, governed_genesis(4, governance=GovernanceParams(proposal_lifetime=3)))
    pid = _pid(gov.propose(M0, {"kind": "retire_contract", "name": "loans"}))
    created = gov.height
    assert gov.call(M1, "approve", proposal=pid).ok
    gov.empty(created + 3 - gov.height)  # the last block it may be approved in is created + 3
    r = gov.call(M2, "approve", proposal=pid)
    assert not r.ok and f"expired at height {created + 3}" in r.error
    assert gov.query("proposal", proposal=pid)["status"] == "expired"
    assert "loans" in gov.chain.scheduled(gov.height + 10).contracts


def test_a_bad_proof_of_possession_is_refused(gov: GovChain) -> None:
    action = _new_validator("v4", AccountKey.from_name("member-v4"))
    action["pop"] = bls.pop_prove(bls.demo_secret("someone-else"))  # a rogue key's shape
    r = gov.propose(M0, action)
    assert not r.ok and "proof of possession does not verify" in r.error
    rot = {
        "kind": "rotate_validator_key",
        "name": "v1",
        "bls_public_key": bls.public_key(bls.demo_secret("v1-new")),
        "pop": bls.pop_prove(bls.demo_secret("v1")),  # the old key's proof
    }
    r = gov.propose(M0, rot)
    assert not r.ok and "proof of possession does not verify" in r.error


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"round_ms": 10}, "round_ms must be an integer between 50 and 600000"),
        ({"max_block_gas": 1000}, "max_block_gas must be an integer between"),
        ({"max_block_gas": True}, "max_block_gas must be an integer"),
        ({"expected_leaders": 2}, "cannot be changed by governance"),
        ({"stage2_ms": 1500}, "stage2_ms must be shorter than round_ms"),
        ({"skip_empty_blocks": 1}, "must be true or false"),
        ({}, "params must be a non-empty dict"),
    ],
)
def test_an_out_of_range_parameter_is_refused(gov: GovChain, params: dict, message: str) -> None:
    r = gov.propose(M0, {"kind": "set_consensus", "params": params})
    assert not r.ok and message in r.error, r.error


def test_malformed_actions_are_refused_by_name(gov: GovChain) -> None:
    for action, message in [
        ({"kind": "launch_missiles"}, "unknown action kind"),
        ({"kind": "retire_contract", "name": "loans", "extra": 1}, "unexpected field(s) extra"),
        ({"kind": "register_contract", "name": "x"}, "missing field(s) code_hash"),
        ({"kind": "register_contract", "name": "Bad-Name", "code_hash": bytes(32)}, "[a-z0-9_]"),
        (
            {"kind": "register_contract", "name": "token", "code_hash": bytes(32)},
            "registered already",
        ),
        (
            {"kind": "upgrade_contract", "name": "governance", "code_hash": bytes(32)},
            "part of the node",
        ),
        ({"kind": "remove_validator", "name": "v9"}, "no validator named v9"),
        ({"kind": "rotate_regulator", "public_key": ["1", "2"]}, "BabyJubJub"),
        ({"kind": "set_mpc_servers", "servers": []}, "3 servers"),
    ]:
        r = gov.propose(M0, action)
        assert not r.ok and message in r.error, (action, r.error)
    assert gov.query("proposals", offset=0, limit=10)["total"] == 0


# --- every action ------------------------------------------------------------------------


def _pass(
    gov: GovChain, action: dict, activation: int | None = None, approvers: tuple = (M1, M2)
) -> int:
    """Propose as M0, approve with ``approvers`` in turn; the last one must pass it."""
    pid = _pid(gov.propose(M0, action, activation))
    for key in approvers:
        r = gov.call(key, "approve", proposal=pid)
        assert r.ok, r.error
    assert r.result == "passed", gov.query("proposal", proposal=pid)
    return int(gov.query("proposal", proposal=pid)["effective"])


KYC_VK = {"protocol": "groth16", "curve": "bn128", "note": "a kyc circuit's key"}


def test_every_action_is_scheduled_and_in_force_from_its_height(tmp_path: Path) -> None:
    g = governed_genesis(4)
    verifier = PyProofVerifier({})
    verifier.add(KYC_VK)  # node.json "circuits": a node holds the keys it will need
    gov = GovChain(tmp_path, g, Runtime(g, proof_verifier=verifier))
    new = AccountKey.from_name("member-v4")
    at = _pass(gov, _new_validator("v4", new))
    s = gov.chain.scheduled(at)
    assert [v.name for v in s.validators] == ["v0", "v1", "v2", "v3", "v4"]
    assert new.address in s.members and s.threshold == 4 and s.quorum == 4
    assert len(gov.chain.scheduled(at - 1).validators) == 4
    gov.empty(max(0, at - gov.height))

    # Removing a member: it can no longer approve, and the threshold follows the set.
    at = _pass(gov, {"kind": "remove_validator", "name": "v3"}, approvers=(M1, M2, new))
    gov.empty(max(0, at - gov.height))
    s = gov.chain.scheduled(gov.height)
    assert [v.name for v in s.validators] == ["v0", "v1", "v2", "v4"]
    pid = _pid(gov.propose(new, {"kind": "retire_contract", "name": "loans"}))  # v4 proposes
    r = gov.call(M3, "approve", proposal=pid)
    assert not r.ok and "only members may approve" in r.error

    new_sk = bls.demo_secret("v1-rotated")
    at = _pass(
        gov,
        {
            "kind": "rotate_validator_key",
            "name": "v1",
            "bls_public_key": bls.public_key(new_sk),
            "pop": bls.pop_prove(new_sk),
        },
    )
    assert gov.chain.scheduled(at).validators[1].public_key_bytes == bls.public_key(new_sk)

    # Code no node has: far ahead, so the blocks here never reach the height where the chain
    # would stop for it (tests/test_gov_deploy.py runs real code deployed by vote).
    at = _pass(
        gov,
        {"kind": "register_contract", "name": "escrow", "code_hash": b"\x01" * 32},
        activation=1000,
    )
    assert gov.chain.scheduled(at).contracts["escrow"] == b"\x01" * 32
    at = _pass(
        gov,
        {"kind": "upgrade_contract", "name": "escrow", "code_hash": b"\x02" * 32},
        activation=1001,
    )
    assert gov.chain.scheduled(at).contracts["escrow"] == b"\x02" * 32
    assert gov.chain.scheduled(at - 1).contracts["escrow"] == b"\x01" * 32
    at = _pass(gov, {"kind": "retire_contract", "name": "escrow"}, activation=1002)
    s = gov.chain.scheduled(at)
    assert "escrow" not in s.contracts and "escrow" in s.retired
    r = gov.propose(M0, {"kind": "register_contract", "name": "escrow", "code_hash": bytes(32)})
    assert not r.ok and "never reused" in r.error

    at = _pass(
        gov,
        {
            "kind": "register_circuit",
            "name": "kyc",
            "vk_hash": vk_hash(KYC_VK),
            "transcript_hash": b"\x04" * 32,
        },
    )
    assert gov.chain.scheduled(at).circuits["kyc"].transcript_hash == b"\x04" * 32

    at = _pass(gov, {"kind": "rotate_regulator", "public_key": [str(BASE8[0]), str(BASE8[1])]})
    assert gov.chain.scheduled(at).regulator == (str(BASE8[0]), str(BASE8[1]))
    assert gov.chain.scheduled(at - 1).regulator is None

    servers = [
        {
            "address": bytes([i + 1]) * 20,
            "host": f"mpc{i}.example",
            "port": 7000 + i,
            "public_key": bytes([i + 1]) * 32,
        }
        for i in range(3)
    ]
    at = _pass(gov, {"kind": "set_mpc_servers", "servers": servers})
    assert [s.host for s in gov.chain.scheduled(at).mpc_servers] == [
        "mpc0.example",
        "mpc1.example",
        "mpc2.example",
    ]

    history = gov.query("schedule", kind="contracts")
    assert [h[1]["escrow"]["status"] for h in history] == ["active", "active", "retired"]


def test_the_proposer_names_the_activation_height_and_a_kind_never_goes_back(
    gov: GovChain,
) -> None:
    late = _pass(gov, {"kind": "set_consensus", "params": {"round_ms": 2000}}, activation=40)
    assert late == 40
    # A second change of the same kind asking for an earlier height takes effect with the
    # first, never before it (the schedule of a kind is in the order changes passed).
    early = _pass(
        gov, {"kind": "set_consensus", "params": {"max_block_txs": 10}}, activation=gov.height + 3
    )
    assert early == 40
    s = gov.chain.scheduled(40).consensus
    assert (s.round_ms, s.max_block_txs) == (2000, 10)
    assert gov.chain.scheduled(39).consensus.round_ms == 1000
    r = gov.propose(M0, {"kind": "retire_contract", "name": "loans"}, activation=gov.height + 1)
    assert not r.ok and "two blocks ahead" in r.error


def test_a_proposal_that_no_longer_applies_fails_when_it_reaches_the_threshold(
    gov: GovChain,
) -> None:
    a = _pid(gov.propose(M0, {"kind": "remove_validator", "name": "v3"}))
    b = _pid(gov.propose(M1, {"kind": "remove_validator", "name": "v3"}))
    gov.call(M1, "approve", proposal=a)
    assert gov.call(M2, "approve", proposal=a).result == "passed"
    gov.call(M0, "approve", proposal=b)
    r = gov.call(M2, "approve", proposal=b)
    assert r.ok and r.result == "failed"
    assert [e.name for e in r.events] == ["Approved", "Failed"]
    assert "no validator named v3" in gov.query("proposal", proposal=b)["reason"]


def test_the_action_is_stored_canonically_and_lists_newest_first(gov: GovChain) -> None:
    a = _pid(gov.propose(M0, {"name": "loans", "kind": "retire_contract"}))
    b = _pid(
        gov.propose(M1, {"kind": "set_consensus", "params": {"round_ms": 900, "gossip_fanout": 4}})
    )
    listed = gov.query("proposals", offset=0, limit=10)
    assert listed["total"] == 2 and [p["id"] for p in listed["proposals"]] == [b, a]
    action = gov.query("proposal", proposal=b)["action"]
    assert list(action["params"]) == ["gossip_fanout", "round_ms"]
    assert gov.query("proposals", offset=1, limit=1)["proposals"][0]["id"] == a


def test_a_chain_without_governance_reports_genesis(tmp_path: Path) -> None:
    from accord.contracts.runtime import Runtime

    g = governed_genesis(4).model_copy(update={"contracts": []})
    gov = GovChain(tmp_path, g, Runtime(g))
    s = gov.chain.scheduled(100)
    assert [v.name for v in s.validators] == ["v0", "v1", "v2", "v3"]
    assert s.consensus == g.consensus and dict(s.contracts) == {}
    with pytest.raises(AccordError):
        gov.query("in_force", height=1)
