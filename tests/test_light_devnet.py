"""The light client against a running devnet: four in-process validators (Gosig, real BLS
certificates, LMDB) on loopback. Sync, then verify a real transaction, a present and an absent
state value; skip ahead; restart from the stored trusted state without re-syncing; the CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from accord.base.types import Tx
from accord.client import Client
from accord.light import LightClient
from accord.node.config import demo_account

from .support.inproc import ThreadedNetwork

pytestmark = pytest.mark.timeout(180)
T = TypeVar("T")


class Devnet(ThreadedNetwork):
    """Four validators on a private event-loop thread (the tests use blocking clients)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, name="light-devnet")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    d = Devnet(tmp_path_factory.mktemp("light-devnet"))
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def committed(devnet: Devnet) -> tuple[bytes, bytes, int]:
    """A real transfer committed by the devnet: (tx hash, recipient, recipient balance)."""
    sender, recipient = demo_account(0), demo_account(1)
    with Client(devnet.urls[1]) as c:
        tx = Tx.create(
            sender,
            chain_id=devnet.genesis.chain_id,
            contract="token",
            method="transfer",
            args={"to": recipient.address, "amount": 1234},
            nonce=c.account(sender.address)["next_nonce"],
        )
        h = c.submit(tx)
        assert c.wait(h, timeout=30).ok
        # Wait for one more block so every node has the transfer's block and a later head.
        height = c.tx(h).height
        assert height is not None
        deadline = time.monotonic() + 30
        while c.status()["height"] <= height and time.monotonic() < deadline:
            time.sleep(0.1)
        balance = c.query("token", "balance_of", account=recipient.address)
    assert isinstance(balance, int)
    return h, recipient.address, balance


def test_sync_then_verify_tx_and_state(
    devnet: Devnet, committed: tuple[bytes, bytes, int], tmp_path: Path
) -> None:
    tx_hash, recipient, balance = committed
    store = tmp_path / "light.json"
    with LightClient(devnet.root / "genesis.json", devnet.urls, store=store) as lc:
        report = lc.sync()
        assert report.from_height is None and report.to_height is not None and report.to_height >= 2
        # Every header from genesis on was verified; all but genesis by its own certificate.
        assert report.headers_verified >= report.to_height + 1
        assert report.certificates_checked >= report.to_height
        assert set(report.nodes.values()) == {"ok"} and lc.faults == []
        assert lc.store.get(0) is not None and lc.store.get(0).certificate is None
        for h in range(1, report.to_height + 1):
            t = lc.store.get(h)
            assert t is not None and t.certificate is not None
            assert t.header.parent_hash == lc.store.get(h - 1).hash

        vt = lc.verify_tx(tx_hash)
        assert vt.tx.hash == tx_hash and vt.receipt.ok and vt.tx.contract == "token"
        assert vt.tx.args["amount"] == 1234 and vt.receipt.events[0].name == "Transfer"
        assert vt.header.hash == lc.header(vt.height).hash

        present = lc.verify_state("token", recipient)
        assert present.present and present.decoded == balance
        absent = lc.verify_state("token", b"\x00" * 20)
        assert not absent.present and absent.decoded is None
        assert lc.faults == []


def test_restart_resumes_from_the_stored_head(
    devnet: Devnet, committed: tuple[bytes, bytes, int], tmp_path: Path
) -> None:
    store = tmp_path / "light.json"
    with LightClient(devnet.genesis, devnet.urls[:2], store=store) as lc:
        first = lc.sync()
        head = lc.head
        assert head is not None and first.to_height == head.height
    saved = json.loads(store.read_text())
    assert saved["head"] == head.height and saved["fork"] is None

    with LightClient(devnet.genesis, devnet.urls[2:], store=store) as lc:
        assert lc.head is not None and lc.head.hash == head.hash  # resumed before any network call
        again = lc.sync()
        assert again.from_height == head.height
        assert again.to_height is not None and again.to_height >= head.height
        # Only headers above the stored head were fetched and checked.
        assert again.headers_verified == again.to_height - head.height
        assert again.certificates_checked <= again.headers_verified + len(devnet.urls[2:])
        assert lc.verify_tx(committed[0]).receipt.ok


def test_skip_ahead_walks_on_a_chain_whose_set_can_change(
    devnet: Devnet, committed: tuple[bytes, bytes, int]
) -> None:
    """The devnet runs the governance contract: each height's set is fixed by the headers
    before it, so no header can be checked alone and ``skip`` walks (it checked one
    certificate when the set was genesis's for ever; see accord.ledger.validatorsets)."""
    with LightClient(devnet.genesis, devnet.urls[:1]) as lc:
        report = lc.sync(skip=True)
        assert lc.head is not None and lc.head.certificate is not None
        assert report.headers_verified == lc.head.height + 1  # genesis's header included
        sets = lc.inner.sets
        assert sets.known_through is not None and sets.known_through >= lc.head.height
        # A header below the skipped-to head is fetched and checked on demand.
        vt = lc.verify_tx(committed[0])
        assert vt.height <= lc.head.height
        assert lc.store.get(vt.height) is not None


def test_cli_sync_tx_state(
    devnet: Devnet,
    committed: tuple[bytes, bytes, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from accord.cli.main import main

    tx_hash, recipient, balance = committed
    common = ["--genesis", str(devnet.root / "genesis.json"), "--store", str(tmp_path / "cli.json")]
    assert main(["light", "sync", *common, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["to_height"] >= 2 and "certificate" in doc["verified"] and doc["faults"] == []

    assert main(["light", "tx", tx_hash.hex(), *common, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["tx_hash"] == tx_hash.hex() and doc["ok"] is True and "tx_inclusion" in doc["verified"]
    )

    assert main(["light", "state", "token", recipient.hex(), *common, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["present"] is True and doc["decoded"] == balance and "state_proof" in doc["verified"]

    assert main(["light", "state", "token", "00" * 20, *common]) == 0
    out = capsys.readouterr().out
    assert "present" in out and "False" in out and "state_proof" in out

    assert main(["light", "header", "1", *common]) == 0
    assert "certificate_signers" in capsys.readouterr().out
