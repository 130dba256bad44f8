"""The explorer's governance endpoints on a real governed ledger (store, runtime, chain, API):
statuses as the head decides them (open, passed, in force, expired), each approval and
whether it still counts, what is in force at the head, cursor pages that never repeat or skip
a proposal while new ones arrive, and bad input as a 4xx JSON error (never a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.encoding import Value
from accord.base.genesis import GovernanceParams
from accord.base.types import Tx

from .support.api import ServedNode, http_json
from .support.genesis import make_genesis
from .support.gov import governed_genesis, member_key

M = [member_key(i) for i in range(4)]
GENESIS = governed_genesis(4, governance=GovernanceParams(proposal_lifetime=4))


class Members:
    def __init__(self, served: ServedNode) -> None:
        self.s = served
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: AccountKey, method: str, **args: Value) -> bytes:
        nonce = self.nonces.get(key.address, 0)
        self.nonces[key.address] = nonce + 1
        tx = Tx.create(
            key,
            chain_id=GENESIS.chain_id,
            contract="governance",
            method=method,
            args=args,
            nonce=nonce,
            gas_limit=5_000_000,
        )
        return self.s.submit_direct(tx)

    def propose(self, key: AccountKey, action: dict[str, Value]) -> bytes:
        return self.tx(key, "propose", action=action, activation=None)

    def result(self, tx_hash: bytes) -> Any:
        status, doc = http_json(self.s.url, "GET", f"/v1/txs/{tx_hash.hex()}")
        assert status == 200 and doc["receipt"]["ok"], doc
        return doc["receipt"]["result"]


def _circuit(name: str) -> dict[str, Value]:
    return {
        "kind": "register_circuit",
        "name": name,
        "vk_hash": bytes(32),
        "transcript_hash": bytes(32),
    }


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedNode, dict[str, str]]]:
    s = ServedNode(tmp_path_factory.mktemp("gov-api") / "db", genesis=GENESIS)
    m = Members(s)
    try:
        ids: dict[str, str] = {}
        first = m.propose(M[0], {"kind": "set_consensus", "params": {"max_block_gas": 20_000_000}})
        s.commit()
        ids["gas"] = m.result(first)["$bytes"]
        pid = bytes.fromhex(ids["gas"])
        m.tx(M[1], "approve", proposal=pid)
        s.commit()
        m.tx(M[2], "approve", proposal=pid)
        s.commit()  # passes here: in force two blocks later
        stale = m.propose(M[3], _circuit("stale"))
        s.commit()
        fresh = m.propose(M[1], _circuit("fresh"))
        s.commit()
        ids["stale"] = m.result(stale)["$bytes"]
        ids["open"] = m.result(fresh)["$bytes"]
        yield s, ids
    finally:
        s.close()


def _get(s: ServedNode, path: str) -> tuple[int, Any]:
    return http_json(s.url, "GET", path)


def test_statuses_approvals_and_what_is_in_force(chain: tuple[ServedNode, dict[str, str]]) -> None:
    s, ids = chain
    status, doc = _get(s, "/v1/explorer/governance?limit=10")
    assert status == 200 and doc["present"] and doc["total"] == 3
    head = doc["head_height"]
    by_id = {p["id"]: p for p in doc["proposals"]}
    gas = by_id[ids["gas"]]
    assert gas["status"] == "in_force" and gas["effective"] <= head
    assert gas["effective"] == gas["passed_at"] + 2
    assert gas["kind"] == "set_consensus" and gas["counted"] == 3 and gas["threshold"] == 3
    assert [a["member"] for a in gas["approvals"]] == [k.address.hex() for k in M[:3]]
    assert [a["validator"] for a in gas["approvals"]] == ["v0", "v1", "v2"]
    assert all(a["counted"] for a in gas["approvals"])
    assert by_id[ids["open"]]["status"] == "open"
    assert [p["number"] for p in doc["proposals"]] == [2, 1, 0]
    assert doc["next_before"] is None
    f = doc["in_force"]
    assert f["height"] == head and f["consensus"]["max_block_gas"] == 20_000_000
    assert [v["name"] for v in f["validators"]] == ["v0", "v1", "v2", "v3"]
    assert f["members"] == [k.address.hex() for k in M] and f["threshold"] == 3
    names = {c["name"]: c for c in f["contracts"]}
    assert names["token"]["status"] == "active" and len(names["token"]["code_hash"]) == 64

    status, one = _get(s, f"/v1/explorer/governance/{ids['gas']}")
    assert status == 200 and one["proposal"]["status"] == "in_force"
    assert one["proposal"]["state_key"] == "70" + ids["gas"]
    assert one["proposal"]["action"] == {
        "kind": "set_consensus",
        "params": {"max_block_gas": 20_000_000},
    }


def test_a_proposal_left_unapproved_expires(chain: tuple[ServedNode, dict[str, str]]) -> None:
    s, ids = chain
    status, one = _get(s, f"/v1/explorer/governance/{ids['stale']}")
    assert status == 200 and one["proposal"]["status"] == "open"
    while s.head()[0] <= one["proposal"]["expires"]:
        s.commit()
    status, one = _get(s, f"/v1/explorer/governance/0x{ids['stale']}")
    assert status == 200 and one["proposal"]["status"] == "expired"
    assert one["proposal"]["counted"] == 1 and one["proposal"]["effective"] is None


def test_pages_follow_the_cursor_while_proposals_arrive(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    s = ServedNode(tmp_path_factory.mktemp("gov-pages") / "db", genesis=GENESIS)
    m = Members(s)
    try:
        for i in range(7):
            m.propose(M[i % 4], _circuit(f"c{i}"))
        s.commit()
        status, page = _get(s, "/v1/explorer/governance?limit=3")
        assert status == 200 and [p["number"] for p in page["proposals"]] == [6, 5, 4]
        seen = [p["number"] for p in page["proposals"]]
        # two more proposals land between pages: the cursor neither repeats nor skips
        m.propose(M[0], _circuit("late0"))
        m.propose(M[1], _circuit("late1"))
        s.commit()
        while page["next_before"] is not None:
            status, page = _get(s, f"/v1/explorer/governance?limit=3&before={page['next_before']}")
            assert status == 200 and len(page["proposals"]) <= 3
            seen += [p["number"] for p in page["proposals"]]
        assert seen == [6, 5, 4, 3, 2, 1, 0]
        assert page["total"] == 9
        status, page = _get(s, "/v1/explorer/governance?limit=2&before=1000000")
        assert status == 200 and [p["number"] for p in page["proposals"]] == [8, 7]
    finally:
        s.close()


def test_bad_input_is_a_clear_4xx(chain: tuple[ServedNode, dict[str, str]]) -> None:
    s, ids = chain
    for bad in (
        "limit=0",
        "limit=101",
        "limit=x",
        "before=0",
        "before=-1",
        "before=1.5",
        "before=99999999999999999999",
        "limit=%EF%BC%91",
        "other=1",
    ):
        status, body = _get(s, f"/v1/explorer/governance?{bad}")
        assert 400 <= status < 500 and "error" in body, bad
    for bad, code in (("zz", 400), ("ab" * 31, 400), (ids["gas"] + "00", 400), ("00" * 32, 404)):
        status, body = _get(s, f"/v1/explorer/governance/{bad}")
        assert status == code and "error" in body, bad
    status, doc = _get(s, "/openapi.json")
    assert "/v1/explorer/governance" in doc["paths"]
    assert "/v1/explorer/governance/{proposal}" in doc["paths"]


def test_a_chain_without_governance_says_so(tmp_path_factory: pytest.TempPathFactory) -> None:
    s = ServedNode(tmp_path_factory.mktemp("no-gov") / "db", genesis=make_genesis(1))
    try:
        status, doc = _get(s, "/v1/explorer/governance")
        assert status == 200 and doc["present"] is False and doc["proposals"] == []
        status, body = _get(s, "/v1/explorer/governance/" + "00" * 32)
        assert status == 404 and "no governance" in body["error"]["message"]
    finally:
        s.close()
