"""``accord status|query|send`` against a real 4-validator network (in process), which runs
with ``skip_empty_blocks``: idle, it makes no block while rounds go by; a transaction sent by
``accord send`` then commits within a few rounds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.base.genesis import Genesis
from accord.cli.main import main
from accord.client import Client
from accord.node.config import DEMO_BALANCE, demo_account

from .support.inproc import ThreadedNetwork


def _skip_empty(g: Genesis) -> Genesis:
    return g.model_copy(
        update={"consensus": g.consensus.model_copy(update={"skip_empty_blocks": True})}
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedNetwork]:
    n = ThreadedNetwork(tmp_path_factory.mktemp("ops"), customize=_skip_empty, name="cli-ops")
    try:
        yield n
    finally:
        n.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _wait_round(c: Client, at_least: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = int(c.status()["round"])
        if r >= at_least:
            return r
        time.sleep(0.1)
    raise AssertionError("rounds do not advance")


def test_idle_then_send_commits_and_status_query_report_it(
    net: ThreadedNetwork, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    c = Client(net.urls[0])
    start = _wait_round(c, 0)
    idle_until = _wait_round(c, start + 8)  # eight rounds on an idle chain
    assert all(Client(u).status()["height"] == 0 for u in net.urls), "an idle chain made a block"

    key = demo_account(0)
    key_file = tmp_path / "sender.json"
    key.save(key_file)
    to = demo_account(1).address
    code, out, err = _cli(
        capsys,
        "send",
        "token",
        "transfer",
        f"to=0x{to.hex()}",
        "amount=25",
        "--key",
        str(key_file),
        "--node",
        str(net.root / "validator-1"),
        "--json",
    )
    assert code == 0, (out, err)
    doc = json.loads(out)
    assert doc["status"] == "committed" and doc["receipt"]["ok"] is True
    assert doc["receipt"]["events"][0]["name"]  # the transfer's event, printed back
    block = c.block_json(doc["height"])
    assert block["header"]["round"] - idle_until <= 10  # promptly, counted in rounds

    code, out, _ = _cli(
        capsys,
        "query",
        "call",
        "token",
        "balance_of",
        f"account=0x{to.hex()}",
        "--url",
        net.urls[2],
        "--json",
    )
    assert code == 0 and json.loads(out)["result"] > 0
    code, out, _ = _cli(capsys, "query", "tx", doc["tx_hash"], "--url", net.urls[3])
    assert code == 0 and "committed" in out and "ok" in out
    code, out, _ = _cli(
        capsys, "query", "account", key.address.hex(), "--url", net.urls[0], "--json"
    )
    assert code == 0 and json.loads(out)["next_nonce"] == 1
    code, out, _ = _cli(capsys, "query", "block", str(doc["height"]), "--url", net.urls[0])
    assert code == 0 and "txs       1" in out
    code, out, _ = _cli(capsys, "status", "--node", str(net.root / "validator-2"), "--json")
    st = json.loads(out)
    assert code == 0 and st["healthy"] is True and st["height"] >= doc["height"]
    code, out, _ = _cli(capsys, "status", "--url", net.urls[0])
    assert code == 0 and "health    ok" in out

    # A transfer beyond the balance commits with a failed receipt: exit 1, the reason printed.
    code, out, _ = _cli(
        capsys,
        "send",
        "token",
        "transfer",
        f"to=0x{to.hex()}",
        f"amount={DEMO_BALANCE + 1}",
        "--key",
        str(key_file),
        "--url",
        net.urls[0],
        "--chain-id",
        c.status()["chain_id"],
    )
    assert code == 1 and "FAILED" in out


def test_bad_input_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _cli(capsys, "status", "--url", "http://127.0.0.1:9", "--timeout", "2")
    assert code == 1 and "unavailable" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "query", "tx", "abcd", "--url", "http://127.0.0.1:9")
    assert code == 1 and "32 bytes" in err
    code, _, err = _cli(
        capsys, "query", "call", "token", "balance_of", "account", "--url", "http://127.0.0.1:9"
    )
    assert code == 1 and "NAME=VALUE" in err
    loose = tmp_path / "loose.json"
    demo_account(3).save(loose)
    loose.chmod(0o644)
    code, _, err = _cli(
        capsys, "send", "token", "transfer", "--key", str(loose), "--url", "http://127.0.0.1:9"
    )
    assert code == 1 and "chmod 600" in err
