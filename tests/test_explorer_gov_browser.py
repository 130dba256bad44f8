"""The explorer's governance page in a real browser against a real 4-validator network: a
member proposes, the page shows the proposal open with 1 of 3 approvals, then follows the
approvals live (no reload) to passed and in force; the detail view lists each approval and
checks the proposal's record against a certified state root in the browser; a lying server
that drops an approval or changes a byte of the state proof is caught.

Skips (with the reason) only when chromium or Playwright is not installed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.encoding import Value
from accord.base.types import Tx

from .support.browser import LyingProxy, flip, get_json, new_page, post_json
from .support.inproc import ThreadedNetwork

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedNetwork]:
    n = ThreadedNetwork(tmp_path_factory.mktemp("explorer-gov"), name="explorer-gov-net")
    try:
        yield n
    finally:
        n.close()


class Members:
    """The four validators' member accounts (``accord init`` leaves each an account.json)."""

    def __init__(self, net: ThreadedNetwork) -> None:
        self.net = net
        self.keys = [
            AccountKey.load(net.root / f"validator-{i}" / "account.json") for i in range(4)
        ]
        self.nonces = [0] * 4

    def call(self, i: int, method: str, **args: Value) -> Any:
        """Send a governance call as member ``i`` and wait for its receipt."""
        tx = Tx.create(
            self.keys[i],
            chain_id=self.net.genesis.chain_id,
            contract="governance",
            method=method,
            args=args,
            nonce=self.nonces[i],
            gas_limit=5_000_000,
        )
        self.nonces[i] += 1
        url = self.net.urls[i]
        h = post_json(f"{url}/v1/txs", {"tx": tx.encode().hex()})["tx_hash"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = get_json(f"{url}/v1/txs/{h}")
            if st["status"] == "committed":
                assert st["receipt"]["ok"], st["receipt"]
                return st["receipt"]["result"]
            time.sleep(0.1)
        raise AssertionError(f"governance {method} was not committed within 30 s")


@pytest.fixture(scope="module")
def members(net: ThreadedNetwork) -> Members:
    return Members(net)


def _wait_text(page: Any, selector: str, want: str, seconds: float = 20) -> str:
    """Polled (the page's CSP forbids the string evaluation wait_for_function would use)."""
    deadline = time.monotonic() + seconds
    while True:
        text = page.text_content(selector) or ""
        if want in text:
            return text
        assert time.monotonic() < deadline, f"{selector} never showed {want!r}: {text!r}"
        page.wait_for_timeout(100)


def test_a_proposal_is_followed_live_to_in_force(
    net: ThreadedNetwork, members: Members, browser: Any
) -> None:
    pid = members.call(
        0,
        "propose",
        action={"kind": "set_consensus", "params": {"max_block_gas": 20_000_000}},
        activation=None,
    )["$bytes"]
    names = [v["name"] for v in get_json(f"{net.urls[1]}/v1/validators")["validators"]]
    page = new_page(browser)
    try:
        page.goto(f"{net.urls[1]}/explorer/#/governance")
        row = f"#proposals tr:has(a[href='#/proposal/{pid}'])"
        page.wait_for_selector(row)
        assert "1 / 3" in (page.text_content(row) or "")
        assert page.get_attribute(f"{row} [data-status]", "data-status") == "open"
        assert "set_consensus" in (page.text_content(row) or "")
        assert "3 of 4" in (page.text_content("#gov-threshold") or "")
        code_hashes = {c.name: c.code_hash for c in net.genesis.contracts}
        shown = page.text_content("#gov-contracts") or ""
        assert all(h in shown for h in code_hashes.values())

        # the approvals arrive while the page is open: the stream brings them in
        members.call(1, "approve", proposal=bytes.fromhex(pid))
        _wait_text(page, row, "2 / 3")
        members.call(2, "approve", proposal=bytes.fromhex(pid))
        _wait_text(page, row, "in force")
        _wait_text(page, "#in-force", "20000000")

        page.click(f"{row} a[href='#/proposal/{pid}']")
        page.wait_for_url(f"**#/proposal/{pid}")
        status = page.wait_for_selector("#verify.ok #verify-status")
        assert "record verified against" in (status.text_content() or "")
        rows = page.query_selector_all("#approvals tbody tr")
        assert [r.query_selector_all("td")[2].text_content() for r in rows] == names[:3]
        assert page.get_attribute("[data-status]", "data-status") == "in_force"
    finally:
        page.context.close()


def _tamper(kind: str, path: str, doc: Any) -> Any:
    if kind == "approvals" and path.startswith("/v1/explorer/governance/"):
        doc["proposal"]["approvals"] = doc["proposal"]["approvals"][:1]  # hide the others
    elif kind == "status" and path.startswith("/v1/explorer/governance/"):
        doc["proposal"]["status"] = "in_force"  # an open proposal made to look decided
    elif kind == "state_proof" and path.startswith("/v1/state/governance/"):
        doc["proof_raw"] = flip(doc["proof_raw"], -5)  # inside the last sibling hash
    return doc


@pytest.mark.parametrize(
    ("kind", "check"),
    [("approvals", "record"), ("status", "record"), ("state_proof", "state_proof")],
)
def test_a_lying_server_is_caught_on_the_proposalnew_page(
    net: ThreadedNetwork, members: Members, browser: Any, kind: str, check: str
) -> None:
    pid = members.call(
        3,
        "propose",
        action={"kind": "set_consensus", "params": {"gossip_fanout": 5}},
        activation=None,
    )["$bytes"]
    members.call(0, "approve", proposal=bytes.fromhex(pid))  # 2 of 3: stays open
    proxy = LyingProxy(net, net.urls[2], _tamper)
    page = new_page(browser)
    try:
        page.goto(f"{proxy.url}/explorer/#/proposal/{pid}")  # the truth first: it verifies
        page.wait_for_selector("#verify.ok")
        proxy.kind = kind
        page.goto(f"{proxy.url}/explorer/#/governance")
        page.goto(f"{proxy.url}/explorer/#/proposal/{pid}")
        status = page.wait_for_selector("#verify.bad #verify-status")
        assert f"check failed: {check}" in (status.text_content() or "")
        assert page.query_selector(f"li.bad[data-check='{check}']") is not None
    finally:
        page.context.close()
        proxy.close()
