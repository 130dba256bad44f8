"""The web explorer in a real browser (Debian's chromium driven by Playwright) against a real
4-validator network: the page follows the chain live, finds a submitted transaction by search
and verifies its proof and certificate in the browser; a lying server that changes one byte
of a proof, a certificate or a header makes the page say the check failed.

Skips (with the reason) only when chromium or Playwright is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.base.types import Tx
from accord.node.config import demo_account

from .support.inproc import ThreadedNetwork

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedNetwork]:
    n = ThreadedNetwork(tmp_path_factory.mktemp("explorer"), name="explorer-net")
    try:
        yield n
    finally:
        n.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Outside CI a missing browser skips; in CI (the README's test command on a fresh machine,
    # which installs both) it fails, so a broken install cannot pass as a skipped test.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if CHROMIUM is None:
        give_up("chromium is not installed (scripts/dev setup installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        give_up("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _post_json(url: str, doc: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


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
        hashes.append(_post_json(f"{net.urls[0]}/v1/txs", {"tx": tx.encode().hex()})["tx_hash"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _get_json(f"{net.urls[0]}/v1/txs/{hashes[0]}")["status"] == "committed":
            return hashes[0]
        time.sleep(0.1)
    raise AssertionError("the transaction was not committed within 30 s")


def _page(browser: Any) -> Any:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    return page


def test_live_view_follows_the_chain(net: ThreadedNetwork, browser: Any) -> None:
    page = _page(browser)
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
    page = _page(browser)
    try:
        page.goto(f"{net.urls[1]}/explorer/")
        page.fill("#search", tx_hash)
        page.press("#search", "Enter")
        page.wait_for_url(f"**#/tx/{tx_hash}")
        status = page.wait_for_selector("#verify.ok #verify-status")
        text = status.text_content() or ""
        signers = _get_json(
            f"{net.urls[1]}/v1/headers/{_get_json(f'{net.urls[1]}/v1/txs/{tx_hash}')['height']}"
        )["certificate"]["signer_indices"]
        assert f"verified against {len(signers)} of 4 validator signatures" in text
        assert len(signers) >= 3
        # a block is found by height too, and its page lists the transaction
        height = _get_json(f"{net.urls[1]}/v1/txs/{tx_hash}")["height"]
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


def _flip(hex_text: str, at: int) -> str:
    """The hex with one byte changed (its low nibble), ``at`` counted in bytes (negative: from
    the end)."""
    i = (at if at >= 0 else len(hex_text) // 2 + at) * 2 + 1
    return hex_text[:i] + format(int(hex_text[i], 16) ^ 1, "x") + hex_text[i + 1 :]


def _tamper(kind: str, path: str, doc: Any) -> Any:
    if kind == "proof" and path.startswith("/v1/txs/") and doc.get("proof"):
        p = doc["proof"]
        if p["siblings"]:
            p["siblings"][0] = _flip(p["siblings"][0], 7)
        else:
            p["leaf"] = _flip(p["leaf"], 7)
    elif kind == "certificate" and path.startswith("/v1/headers/") and doc.get("certificate"):
        doc["certificate"]["raw"] = _flip(doc["certificate"]["raw"], -5)  # inside the signature
    elif kind == "header" and path.startswith("/v1/headers/"):
        doc["header"]["raw"] = _flip(doc["header"]["raw"], -3)  # inside the body hash
    return doc


class LyingProxy:
    """Forwards to a real node and changes one byte of what ``kind`` names in JSON answers
    (``tamper(kind, path, doc)`` decides how; other pages' tests bring their own)."""

    def __init__(
        self,
        net: ThreadedNetwork,
        upstream: str,
        tamper: Callable[[str, str, Any], Any] = _tamper,
    ) -> None:
        from aiohttp import ClientSession, web

        self.kind = "none"
        self.net = net

        async def handle(request: web.Request) -> web.StreamResponse:
            async with (
                ClientSession() as http,
                http.request(
                    request.method,
                    upstream + request.rel_url.path_qs,
                    data=await request.read(),
                    headers={
                        k: v for k, v in request.headers.items() if k.lower() == "content-type"
                    },
                ) as r,
            ):
                body = await r.read()
                ctype = r.headers.get("Content-Type", "application/octet-stream")
                if ctype.startswith("application/json") and r.status == 200:
                    body = json.dumps(
                        tamper(self.kind, request.rel_url.path, json.loads(body))
                    ).encode()
                return web.Response(body=body, status=r.status, headers={"Content-Type": ctype})

        async def start() -> tuple[Any, int]:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            return runner, port

        self.runner, port = net.run(start())
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.net.run(self.runner.cleanup())


@pytest.mark.parametrize(
    ("kind", "check"),
    [("proof", "tx_inclusion"), ("certificate", "certificate"), ("header", "header")],
)
def test_a_lying_server_is_caught(
    net: ThreadedNetwork, browser: Any, kind: str, check: str
) -> None:
    tx_hash = _submit_committed(net)
    proxy = LyingProxy(net, net.urls[2])
    page = _page(browser)
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
