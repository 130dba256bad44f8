"""The explorer's API endpoints on a real single-validator ledger: pagination bounds (no page
reads more than its limit, however long the chain), strict query parsing (bad input is a 4xx
JSON error that changes nothing), search, the bounded explorer index, and the static page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from accord.base.wire import EXPLORER_MAX_LIMIT

from .support.api import ALICE, BOB, ServedNode, http, http_json, transfer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedNode, list[bytes]]]:
    s = ServedNode(tmp_path_factory.mktemp("explorer-api") / "db")
    hashes = []
    for nonce in range(12):  # 12 blocks of one transfer each, then 2 transfers in one block
        hashes.append(s.submit_direct(transfer(ALICE, nonce, BOB.address, 1)))
        s.commit()
    hashes.append(s.submit_direct(transfer(BOB, 0, ALICE.address, 2)))
    hashes.append(s.submit_direct(transfer(ALICE, 12, BOB.address, 3)))
    s.commit()
    try:
        yield s, hashes
    finally:
        s.close()


def _get(s: ServedNode, path: str) -> tuple[int, Any]:
    return http_json(s.url, "GET", path)


def _wait_indexed(s: ServedNode) -> None:
    head = s.head()[0]
    deadline = time.monotonic() + 10
    while _get(s, f"/v1/accounts/{ALICE.address.hex()}/txs")[1]["indexed_to"] < head:
        assert time.monotonic() < deadline, "the explorer index did not catch up"
        time.sleep(0.05)


def test_block_pages_walk_the_chain_once_newest_first(
    served: tuple[ServedNode, list[bytes]],
) -> None:
    s, _ = served
    head = s.head()[0]
    seen: list[int] = []
    path = "/v1/blocks?limit=5"
    while True:
        status, page = _get(s, path)
        assert status == 200
        assert len(page["blocks"]) <= 5
        assert page["head_height"] == head
        seen += [b["height"] for b in page["blocks"]]
        if page["next_before"] is None:
            break
        path = f"/v1/blocks?limit=5&before={page['next_before']}"
    assert seen == list(range(head, -1, -1))
    status, page = _get(s, "/v1/blocks?limit=1")
    assert page["blocks"][0]["signers"] == [0]  # the certificate's signer


def test_block_page_bounds_on_a_long_chain(served: tuple[ServedNode, list[bytes]]) -> None:
    s, _ = served
    head = s.head()[0]
    # a cursor far beyond the head (a 100,000-block chain's) is clamped, never a scan
    status, page = _get(s, "/v1/blocks?before=100000&limit=3")
    assert status == 200 and [b["height"] for b in page["blocks"]] == [head, head - 1, head - 2]
    status, page = _get(s, f"/v1/blocks?limit={EXPLORER_MAX_LIMIT}")
    assert status == 200 and len(page["blocks"]) == head + 1
    for bad in (
        f"limit={EXPLORER_MAX_LIMIT + 1}",
        "limit=0",
        "limit=-1",
        "limit=1_0",
        "limit=%EF%BC%91",  # a full-width digit
        "before=0",
        "before=18446744073709551616",
        "before=abc",
        "limit=5&limit=6",
        "page=2",
    ):
        status, body = _get(s, f"/v1/blocks?{bad}")
        assert 400 <= status < 500, bad
        assert set(body["error"]) == {"code", "message"}, bad


def test_search_names_heights_hashes_accounts_and_contracts(
    served: tuple[ServedNode, list[bytes]],
) -> None:
    s, hashes = served
    head, head_hash = s.head()
    cases = {
        "3": ("block", "3"),
        head_hash.hex(): ("block", str(head)),
        "0x" + head_hash.hex().upper(): ("block", str(head)),
        hashes[0].hex(): ("tx", hashes[0].hex()),
        ALICE.address.hex(): ("account", ALICE.address.hex()),
        "token": ("contract", "token"),
        "999999": ("none", ""),
        "ff" * 32: ("none", ""),
        "nonsense": ("none", ""),
    }
    for q, (kind, target) in cases.items():
        status, r = _get(s, f"/v1/search?q={q}")
        assert status == 200, q
        assert (r["kind"], r["target"]) == (kind, target), q
    for bad in ("", "q=", "q=" + "a" * 129, "x=1"):
        status, body = _get(s, f"/v1/search?{bad}")
        assert status == 422, bad
        assert "error" in body


def test_account_and_contract_transactions(served: tuple[ServedNode, list[bytes]]) -> None:
    s, hashes = served
    _wait_indexed(s)
    status, r = _get(s, f"/v1/accounts/{BOB.address.hex()}/txs?limit=3")
    assert status == 200
    # BOB sent one and received the others (named in the Transfer events): newest first
    assert [t["tx_hash"] for t in r["txs"]] == [
        hashes[-1].hex(),
        hashes[-2].hex(),
        hashes[-3].hex(),
    ]
    assert r["txs"][1]["sender"] == BOB.address.hex() and r["txs"][0]["gas_used"] > 0
    status, r = _get(s, f"/v1/contracts/token/txs?limit={EXPLORER_MAX_LIMIT}")
    assert status == 200 and len(r["txs"]) == len(hashes)
    assert _get(s, "/v1/contracts/nope/txs")[0] == 404
    assert _get(s, "/v1/accounts/zz/txs")[0] == 422
    assert _get(s, "/v1/accounts/" + "ab" * 20 + f"/txs?limit={EXPLORER_MAX_LIMIT + 1}")[0] == 422
    status, r = _get(s, "/v1/accounts/" + "ab" * 20 + "/txs")
    assert status == 200 and r["txs"] == []


def test_chain_summary_oracle_and_shielded(served: tuple[ServedNode, list[bytes]]) -> None:
    s, _ = served
    head = s.head()[0]
    status, c = _get(s, "/v1/explorer/chain?limit=10")
    assert status == 200
    assert [p["height"] for p in c["window"]] == list(range(head - 9, head + 1))
    assert all(p["interval_ms"] == 1000 for p in c["window"])  # LocalNode's clock: 1 s a block
    assert c["window"][-1]["tx_count"] == 2
    (v,) = c["validators"]
    assert v["last_signed"] == head and v["last_proposed"] == head and v["signed"] == 10
    assert _get(s, f"/v1/explorer/chain?limit={EXPLORER_MAX_LIMIT + 1}")[0] == 422
    status, o = _get(s, "/v1/explorer/oracle")
    assert status == 200 and o["requests"] == []
    status, z = _get(s, "/v1/explorer/shielded")
    assert status == 200 and z["present"] and z["note_count"] == 0 and len(z["root"]) == 64
    assert _get(s, "/v1/explorer/shielded?limit=x")[0] == 422


def test_static_page_and_no_path_from_input(served: tuple[ServedNode, list[bytes]]) -> None:
    s, _ = served
    status, headers, body = http(s.url, "GET", "/explorer/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="/explorer/app.js"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    status, headers, body = http(s.url, "GET", "/explorer/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert len(body) > 10_000
    for bad in ("/explorer/..%2F..%2Fpyproject.toml", "/explorer/__init__.py", "/explorer/nope.js"):
        status, _, body = http(s.url, "GET", bad)
        assert status == 404, bad
        assert b'"error"' in body


def test_account_pages_follow_the_cursor(served: tuple[ServedNode, list[bytes]]) -> None:
    s, hashes = served
    _wait_indexed(s)
    seen: list[str] = []
    path = "/v1/contracts/token/txs?limit=4"
    while True:
        status, r = _get(s, path)
        assert status == 200 and len(r["txs"]) <= 4
        seen += [t["tx_hash"] for t in r["txs"]]
        if r["next_before"] is None:
            break
        path = f"/v1/contracts/token/txs?limit=4&before={r['next_before']}"
    # every transaction once, newest first (the last block's two in reverse block order)
    assert seen == [h.hex() for h in reversed(hashes)]
    status, r = _get(s, f"/v1/contracts/token/txs?before={s.head()[0]}")
    assert status == 200 and [t["tx_hash"] for t in r["txs"]][:1] == [hashes[-3].hex()]
    status, r = _get(s, f"/v1/contracts/token/txs?before={s.head()[0]}:1")
    assert status == 200 and [t["tx_hash"] for t in r["txs"]][:1] == [hashes[-2].hex()]
    too_long = ("1" * 20, "1:" + "1" * 10)  # beyond 64-bit heights or 32-bit indexes
    for bad in (":1", "-1", "1:", "1:2:3", *too_long, "x", "1%20", "1%0A", "%EF%BC%91"):
        status, body = _get(s, f"/v1/contracts/token/txs?before={bad}")
        assert 400 <= status < 500 and "error" in body, bad


def test_openapi_lists_the_explorer_endpoints(served: tuple[ServedNode, list[bytes]]) -> None:
    from openapi_spec_validator import validate

    s, _ = served
    status, doc = _get(s, "/openapi.json")
    assert status == 200
    validate(doc)
    for p in ("/v1/blocks", "/v1/search", "/v1/accounts/{address}/txs", "/v1/explorer/chain"):
        assert p in doc["paths"]
