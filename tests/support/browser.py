"""A real browser for the explorer's tests (Debian's chromium driven by Playwright), and a
server that lies: it forwards to a real node and changes one byte of what a test names."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .inproc import ThreadedNetwork

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


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


def post_json(url: str, doc: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def new_page(browser: Any) -> Any:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    return page


def flip(hex_text: str, at: int) -> str:
    """The hex with one byte changed (its low nibble), ``at`` counted in bytes (negative: from
    the end)."""
    i = (at if at >= 0 else len(hex_text) // 2 + at) * 2 + 1
    return hex_text[:i] + format(int(hex_text[i], 16) ^ 1, "x") + hex_text[i + 1 :]


def tamper_one_byte(kind: str, path: str, doc: Any) -> Any:
    if kind == "proof" and path.startswith("/v1/txs/") and doc.get("proof"):
        p = doc["proof"]
        if p["siblings"]:
            p["siblings"][0] = flip(p["siblings"][0], 7)
        else:
            p["leaf"] = flip(p["leaf"], 7)
    elif kind == "certificate" and path.startswith("/v1/headers/") and doc.get("certificate"):
        doc["certificate"]["raw"] = flip(doc["certificate"]["raw"], -5)  # inside the signature
    elif kind == "header" and path.startswith("/v1/headers/"):
        doc["header"]["raw"] = flip(doc["header"]["raw"], -3)  # inside the body hash
    return doc


class LyingProxy:
    """Forwards to a real node and changes one byte of what ``kind`` names in JSON answers
    (``tamper(kind, path, doc)`` decides how; other pages' tests bring their own)."""

    def __init__(
        self,
        net: ThreadedNetwork,
        upstream: str,
        tamper: Callable[[str, str, Any], Any] = tamper_one_byte,
    ) -> None:
        from aiohttp import ClientSession, web

        self.kind = "none"
        self.net = net

        async def handle(request: web.Request) -> web.StreamResponse:
            async with (
                ClientSession() as http,
                http.request(
                    request.method,
                    upstream + request.rel_url.raw_path_qs,
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
