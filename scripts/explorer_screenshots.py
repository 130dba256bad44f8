"""Screenshots of every explorer page into docs/explorer/*.png, taken with Playwright driving
Debian's chromium against a real 4-validator in-process network with a few transactions.

    .venv/bin/python scripts/explorer_screenshots.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.progress import Progress  # noqa: E402

from accord.base.types import Tx  # noqa: E402
from accord.node.config import demo_account  # noqa: E402
from tests.support.inproc import ThreadedNetwork  # noqa: E402

OUT = ROOT / "docs" / "explorer"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _json(url: str, doc: object | None = None) -> dict:
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (scripts/dev setup installs it)")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        net = ThreadedNetwork(Path(tmp), name="screenshots")
        try:
            url = net.urls[0]
            hashes = []
            for nonce in range(6):
                tx = Tx.create(
                    demo_account(0),
                    chain_id=net.genesis.chain_id,
                    contract="token",
                    method="transfer",
                    args={"to": demo_account(1 + nonce % 3).address, "amount": 10 + nonce},
                    nonce=nonce,
                    gas_limit=100_000,
                )
                hashes.append(_json(f"{url}/v1/txs", {"tx": tx.encode().hex()})["tx_hash"])
            while _json(f"{url}/v1/txs/{hashes[-1]}")["status"] != "committed":
                time.sleep(0.2)
            time.sleep(4)  # a few more blocks for the charts
            height = _json(f"{url}/v1/txs/{hashes[0]}")["height"]
            pages = {
                "live": "#/",
                "blocks": "#/blocks",
                "block": f"#/block/{height}",
                "tx": f"#/tx/{hashes[0]}",
                "account": f"#/account/{demo_account(0).address.hex()}",
                "shielded": "#/shielded",
                "oracle": "#/oracle",
                "health": "#/health",
            }
            with sync_playwright() as p, Progress() as progress:
                task = progress.add_task("screenshots", total=len(pages))
                browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                for name, frag in pages.items():
                    page.goto(f"{url}/explorer/{frag}")
                    page.wait_for_selector("#main > *")
                    if name == "tx":
                        page.wait_for_selector("#verify.ok")
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                    progress.advance(task)
                browser.close()
        finally:
            net.close()


if __name__ == "__main__":
    main()
