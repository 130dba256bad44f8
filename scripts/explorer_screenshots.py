"""Screenshots of every explorer page into docs/explorer/*.png, taken with Playwright driving
Debian's chromium against a real 4-validator in-process network with a few transactions.

    .venv/bin/python scripts/explorer_screenshots.py [page ...]   (default: every page)
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

from accord.base.crypto.ed25519 import AccountKey  # noqa: E402
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


def _governance(net: ThreadedNetwork) -> str:
    """Members propose and approve: one change in force, one waiting for approvals; the id of
    the one in force."""
    keys = [AccountKey.load(net.root / f"validator-{i}" / "account.json") for i in range(4)]
    nonces = [0] * 4

    def call(i: int, method: str, **args: object) -> object:
        tx = Tx.create(
            keys[i],
            chain_id=net.genesis.chain_id,
            contract="governance",
            method=method,
            args=args,  # type: ignore[arg-type]
            nonce=nonces[i],
            gas_limit=5_000_000,
        )
        nonces[i] += 1
        h = _json(f"{net.urls[i]}/v1/txs", {"tx": tx.encode().hex()})["tx_hash"]
        while (st := _json(f"{net.urls[i]}/v1/txs/{h}"))["status"] != "committed":
            time.sleep(0.2)
        return st["receipt"]["result"]

    gas = {"kind": "set_consensus", "params": {"max_block_gas": 20_000_000}}
    pid = call(0, "propose", action=gas, activation=None)["$bytes"]  # type: ignore[index]
    call(1, "approve", proposal=bytes.fromhex(pid))
    call(2, "approve", proposal=bytes.fromhex(pid))
    circuit = {
        "kind": "register_circuit",
        "name": "transfer_v2",
        "vk_hash": bytes(range(32)),
        "transcript_hash": bytes(range(32, 64)),
    }
    call(3, "propose", action=circuit, activation=None)
    return str(pid)


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
            pid = _governance(net)
            pages = {
                "live": "#/",
                "blocks": "#/blocks",
                "block": f"#/block/{height}",
                "tx": f"#/tx/{hashes[0]}",
                "account": f"#/account/{demo_account(0).address.hex()}",
                "shielded": "#/shielded",
                "oracle": "#/oracle",
                "health": "#/health",
                "governance": "#/governance",
                "proposal": f"#/proposal/{pid}",
            }
            only = set(sys.argv[1:])
            pages = {k: v for k, v in pages.items() if not only or k in only}
            with sync_playwright() as p, Progress() as progress:
                task = progress.add_task("screenshots", total=len(pages))
                browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                for name, frag in pages.items():
                    page.goto(f"{url}/explorer/{frag}")
                    page.wait_for_selector("#main > *")
                    if name in ("tx", "proposal"):
                        page.wait_for_selector("#verify.ok")
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                    progress.advance(task)
                browser.close()
        finally:
            net.close()


if __name__ == "__main__":
    main()
