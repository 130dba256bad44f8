"""The web explorer in a real browser (Debian's chromium driven by Playwright) against a real
4-validator network: the page follows the chain live, finds a submitted transaction by search
and verifies its proof and certificate in the browser; a lying server that changes one byte
of a proof, a certificate or a header makes the page say the check failed.

Skips (with the reason) only when chromium or Playwright is not installed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.base.types import Tx
from accord.node.config import demo_account

from .support.browser import LyingProxy, get_json, new_page, post_json
from .support.inproc import ThreadedNetwork

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedNetwork]:
    n = ThreadedNetwork(tmp_path_factory.mktemp("explorer"), name="explorer-net")
    try:
        yield n
    finally:
        n.close()


_nonce = {"n": 0}


def _submit_committed(net: ThreadedNetwork, count: int = 3) -> str:
    """Submit ``count`` transfers at once (so the block has several leaves and the proof has
    siblings) and wait until the first is committed; its hash."""
    hashes = []
    for _ in range(count):
        tx = Tx.create(
            demo_account(0),
            chain_id=net.genesis.chain_id,
            contract="token",
            method="transfer",
            args={"to": demo_account(1).address, "amount": 3},
            nonce=_nonce["n"],
            gas_limit=100_000,
        )
        _nonce["n"] += 1
        hashes.append(post_json(f"{net.urls[0]}/v1/txs", {"tx": tx.encode().hex()})["tx_hash"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if get_json(f"{net.urls[0]}/v1/txs/{hashes[0]}")["status"] == "committed":
            return hashes[0]
        time.sleep(0.1)
    raise AssertionError("the transaction was not committed within 30 s")


def test_live_view_follows_the_chain(net: ThreadedNetwork, browser: Any) -> None:
    page = new_page(browser)
    try:
        page.goto(f"{net.urls[0]}/explorer/")
        page.wait_for_selector("#validators table")
        first = int(page.text_content("#height") or "0")
        # the stream pushes new heights into the page without a reload (polled from here:
        # the page's CSP forbids the string evaluation wait_for_function would use)
        deadline = time.monotonic() + 20
        while int(page.text_content("#height") or "0") <= first:
            assert time.monotonic() < deadline, "the page's height did not grow"
            page.wait_for_timeout(100)
        rows = page.query_selector_all("#validators tbody tr")
        assert len(rows) == 4
        assert page.query_selector_all("#charts svg polyline")
    finally:
        page.context.close()


def test_search_finds_a_transaction_and_verifies_it(net: ThreadedNetwork, browser: Any) -> None:
    tx_hash = _submit_committed(net)
    page = new_page(browser)
    try:
        page.goto(f"{net.urls[1]}/explorer/")
        page.fill("#search", tx_hash)
        page.press("#search", "Enter")
        page.wait_for_url(f"**#/tx/{tx_hash}")
        status = page.wait_for_selector("#verify.ok #verify-status")
        text = status.text_content() or ""
        signers = get_json(
            f"{net.urls[1]}/v1/headers/{get_json(f'{net.urls[1]}/v1/txs/{tx_hash}')['height']}"
        )["certificate"]["signer_indices"]
        assert f"verified against {len(signers)} of 4 validator signatures" in text
        assert len(signers) >= 3
        # a block is found by height too, and its page lists the transaction
        height = get_json(f"{net.urls[1]}/v1/txs/{tx_hash}")["height"]
        page.fill("#search", str(height))
        page.press("#search", "Enter")
        page.wait_for_url(f"**#/block/{height}")
        page.wait_for_selector(f"a[href='#/tx/{tx_hash}']")
        # and the sender's account page lists it from the explorer index
        sender = demo_account(0).address.hex()
        page.fill("#search", sender)
        page.press("#search", "Enter")
        page.wait_for_url(f"**#/account/{sender}")
        page.wait_for_selector(f"a[href='#/tx/{tx_hash}']")
        assert "token" in (page.text_content("#balances") or "")
    finally:
        page.context.close()


# --- a lying server -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "check"),
    [("proof", "tx_inclusion"), ("certificate", "certificate"), ("header", "header")],
)
def test_a_lying_server_is_caught(
    net: ThreadedNetwork, browser: Any, kind: str, check: str
) -> None:
    tx_hash = _submit_committed(net)
    proxy = LyingProxy(net, net.urls[2])
    page = new_page(browser)
    try:
        proxy.kind = "none"  # the same proxy telling the truth: the page verifies
        page.goto(f"{proxy.url}/explorer/#/tx/{tx_hash}")
        page.wait_for_selector("#verify.ok")
        proxy.kind = kind
        page.goto(f"{proxy.url}/explorer/#/blocks")
        page.goto(f"{proxy.url}/explorer/#/tx/{tx_hash}")
        status = page.wait_for_selector("#verify.bad #verify-status")
        assert f"check failed: {check}" in (status.text_content() or "")
        assert page.query_selector(f"li.bad[data-check='{check}']") is not None
    finally:
        page.context.close()
        proxy.close()


def test_static_assets_are_in_the_package() -> None:
    from accord.node import explorer

    names = {p.name for p in Path(explorer.STATIC).iterdir()}
    assert {"index.html", "app.js", "style.css"} <= names
    # offline: the page loads nothing from another origin
    html = (Path(explorer.STATIC) / "index.html").read_text()
    assert "http://" not in html and "https://" not in html
