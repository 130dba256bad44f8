"""Runs ``examples/lender_app.py``: a lender's aiohttp app embedding validator-0 of a 4-validator
network (the other three are ``accord node`` processes), driven through the app's own routes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from accord.client import Client
from accord.devnet import Devnet, ensure_network, free_ports
from accord.node.config import DEMO_BALANCE, demo_account

from .support.network import check_store

pytestmark = pytest.mark.timeout(180)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lender_app.py"


def http(method: str, url: str, doc: Any = None) -> tuple[int, Any]:
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(body) if "json" in ctype else body.decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_lender_app_embeds_a_validator_and_disburses_a_loan(tmp_path: Path) -> None:
    root = tmp_path / "net"
    genesis = ensure_network(root, round_ms=500, stage2_ms=250, accounts=4)
    net = Devnet(root, genesis)
    port = free_ports(1)[0]
    app: subprocess.Popen[bytes] | None = None
    base = f"http://127.0.0.1:{port}"
    try:
        net.start(1)
        net.start(2)
        net.start(3)
        app = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE),
                "--node-dir",
                str(root / "validator-0"),
                "--port",
                str(port),
                "--demo-account",
                "0",
                "--mount-api",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        asyncio.run(net.wait_ready(60.0, [1, 2, 3]))
        deadline = time.monotonic() + 60
        while True:
            try:
                status, loans = http("GET", base + "/loans")
                break
            except OSError:
                assert app.poll() is None, app.stdout.read().decode() if app.stdout else ""
                assert time.monotonic() < deadline, "the lender app did not come up"
                time.sleep(0.2)
        assert status == 200 and loans == []
        borrower = demo_account(3).address
        # bad input to the app's own route: refused, nothing booked
        assert http("POST", base + "/loans", {"borrower": "zz", "amount": 5})[0] == 400
        assert http("POST", base + "/loans", {"borrower": borrower.hex(), "amount": -5})[0] == 400
        status, loan = http("POST", base + "/loans", {"borrower": borrower.hex(), "amount": 1234})
        assert status == 201 and loan["status"] == "pending" and len(loan["tx_hash"]) == 64
        deadline = time.monotonic() + 30
        while loan["status"] == "pending":
            assert time.monotonic() < deadline, "the loan was never disbursed"
            time.sleep(0.2)
            loan = http("GET", base + f"/loans/{loan['id']}")[1]
        assert loan["status"] == "disbursed" and loan["height"] >= 1
        status, page = http("GET", base + "/")
        assert status == 200 and "disbursed" in page and "Loan book" in page
        assert http("GET", base + "/loans/99")[0] == 404
        # the client API mounted under /ledger, and another validator, agree on the outcome
        status, st = http("GET", base + "/ledger/v1/status")
        assert status == 200 and st["name"] == "validator-0"
        with Client(net.validators[1].api_url) as c:
            st1 = c.tx(bytes.fromhex(loan["tx_hash"]))
            assert st1.committed and st1.receipt is not None and st1.receipt.ok
            deadline = time.monotonic() + 10
            while c.query("token", "balance_of", account=borrower) != DEMO_BALANCE + 1234:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        # the app stops its validator cleanly on shutdown
        app.send_signal(signal.SIGTERM)
        assert app.wait(30) == 0
        app = None
        check_store(root / "validator-0" / "data", genesis)
    finally:
        if app is not None and app.poll() is None:
            app.kill()
            app.wait()
        net.stop()
