"""A chain of 100,000 blocks stays usable in the explorer: the index catches up in bounded
passes, and the endpoints the pages use (block list pages, search by height, hash and
account, an account's page) each cost a bounded number of store reads and bytes, counted,
not timed. The chain is written straight into a real ledger's store (tests/support/
explorer_chain.py) and cached under ~/.cache/accord."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.node.explorer import ExplorerIndex, IndexLimits
from accord.storage import Store

from .support.api import LocalNode, ServedNode, http
from .support.explorer_chain import LONG_ACCOUNTS, long_chain

HEIGHTS = 99_999  # blocks 1..99,999 after genesis: 100,000 blocks
TX_EVERY = 25
PER_PASS = 5000


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explorer-long")
    LocalNode(root / "genesis").close()  # the real genesis of the API tests' ledger
    long_chain(root / "db", root / "genesis", HEIGHTS, TX_EVERY)
    return root / "db"


class Reads:
    """Counts the store's read transactions (every read goes through ``Store._read``)."""

    def __init__(self, store: Store) -> None:
        self.n = 0
        inner: Callable[..., Any] = store._read

        def counted(fn: Callable[..., Any]) -> Any:
            self.n += 1
            return inner(fn)

        store._read = counted  # type: ignore[method-assign]


def test_index_catches_up_in_bounded_passes(long_dir: Path) -> None:
    store = Store(long_dir, sync=False)
    try:
        reads = Reads(store)
        index = ExplorerIndex(store, IndexLimits(per_pass=PER_PASS))
        passes, worst = 0, 0
        while True:
            before = reads.n
            done = index.catch_up()
            worst = max(worst, reads.n - before)
            assert done <= PER_PASS
            if not done:
                break
            passes += 1
        assert passes == -(-HEIGHTS // PER_PASS)
        assert worst <= PER_PASS // 50 + 10  # one range read per write batch, plus a few
        assert index.coverage() == (1, HEIGHTS)
    finally:
        store.close()


@pytest.fixture(scope="module")
def served(long_dir: Path) -> Iterator[ServedNode]:
    s = ServedNode(long_dir)
    try:
        yield s
    finally:
        s.close()


def _get(s: ServedNode, reads: Reads, path: str, max_reads: int) -> Any:
    before = reads.n
    status, _, body = http(s.url, "GET", path)
    used = reads.n - before
    assert status == 200, (path, body[:200])
    # the background indexer's idle passes read a few times a second: allow for them
    assert used <= max_reads + 12, f"{path} took {used} store reads"
    assert len(body) <= 64 * 1024, f"{path} answered {len(body)} bytes"
    return json.loads(body)


def test_endpoints_stay_bounded_on_100000_blocks(served: ServedNode) -> None:
    s = served
    store = s.node.store
    reads = Reads(store)
    status, _, body = http(s.url, "GET", "/v1/accounts/" + "00" * 20 + "/txs")
    deadline = 600  # polls, not a speed assertion: the index resumes where it stopped
    while json.loads(body)["indexed_to"] < HEIGHTS and deadline:
        import time

        time.sleep(0.1)
        deadline -= 1
        status, _, body = http(s.url, "GET", "/v1/accounts/" + "00" * 20 + "/txs")
    assert json.loads(body)["indexed_to"] == HEIGHTS

    # block list: pages of 100 headers (and certificates), walked by cursor
    page = _get(s, reads, "/v1/blocks?limit=100", 2 * 100 + 4)
    assert page["head_height"] == HEIGHTS
    seen = [b["height"] for b in page["blocks"]]
    for _ in range(2):
        page = _get(s, reads, f"/v1/blocks?limit=100&before={page['next_before']}", 2 * 100 + 4)
        seen += [b["height"] for b in page["blocks"]]
    assert seen == list(range(HEIGHTS, HEIGHTS - 300, -1))
    page = _get(s, reads, "/v1/blocks?limit=5&before=50000", 2 * 5 + 4)
    assert [b["height"] for b in page["blocks"]] == list(range(49_999, 49_994, -1))

    # search: height, block hash, tx hash, account
    header = store.get_header(12_345)
    assert header is not None
    tx_block = store.get_block(77_775)
    assert tx_block is not None and tx_block.txs
    cases = {
        "77777": ("block", "77777"),
        header.hash.hex(): ("block", "12345"),
        tx_block.txs[0].hash.hex(): ("tx", tx_block.txs[0].hash.hex()),
        LONG_ACCOUNTS[3].address.hex(): ("account", LONG_ACCOUNTS[3].address.hex()),
    }
    for q, want in cases.items():
        r = _get(s, reads, f"/v1/search?q={q}", 8)
        assert (r["kind"], r["target"]) == want, q

    # an account's page: its balances, and its transactions by cursor (the newest 100 kept)
    addr = LONG_ACCOUNTS[3].address.hex()
    _get(s, reads, f"/v1/accounts/{addr}", 40)
    got: list[tuple[int, int]] = []
    path = f"/v1/accounts/{addr}/txs?limit=25"
    for _ in range(10):
        r = _get(s, reads, path, 4)
        assert len(r["txs"]) <= 25
        got += [(t["height"], t["index"]) for t in r["txs"]]
        if r["next_before"] is None:
            break
        path = f"/v1/accounts/{addr}/txs?limit=25&before={r['next_before']}"
    assert len(got) == 100 and got == sorted(got, reverse=True)
    # the newest transaction naming it: it sends every 40th transfer and receives the next-lower's
    touching = [
        h
        for h in range(TX_EVERY, HEIGHTS + 1, TX_EVERY)
        if (h // TX_EVERY) % len(LONG_ACCOUNTS) in (3, 2)
    ]
    assert [h for h, _ in got] == touching[::-1][:100]


def test_pages_page_through_100000_blocks_in_a_browser(served: ServedNode) -> None:
    """Debian's chromium on the same node: the account page lists 50 transactions and its
    "older" link the next 50 from the cursor; the blocks page's "older" link pages on."""
    import os
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if chromium is None:
        give_up("chromium is not installed (scripts/dev setup installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        give_up("playwright is not installed (pip install -e '.[dev]')")
    addr = LONG_ACCOUNTS[5].address.hex()
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{served.url}/explorer/#/account/{addr}")
            page.wait_for_selector("#older-txs a", timeout=20_000)

            def heights() -> list[int]:
                rows = page.locator("table.txs tbody tr td:first-child")
                return [int(x) for x in rows.all_inner_texts()]

            first = heights()
            assert len(first) == 50 and first == sorted(first, reverse=True)
            page.click("#older-txs a")
            page.wait_for_url(f"**#/account/{addr}?before=*")
            # the second page is the last (no "older" link): drawn once the old link is gone and
            # a table is back (a polled script would be refused by the page's CSP)
            page.wait_for_selector("#older-txs", state="detached")
            page.wait_for_selector("table.txs")
            second = heights()
            assert len(second) == 50 and max(second) < min(first)  # the next 50, older
            page.goto(f"{served.url}/explorer/#/blocks")
            page.wait_for_selector("text=older blocks")
            page.click("text=older blocks")
            page.wait_for_url(f"**#/blocks?before={HEIGHTS + 1 - 25}")
        finally:
            browser.close()
