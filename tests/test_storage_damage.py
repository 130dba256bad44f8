"""Byte flips in a stopped validator's data file are detected, not served.

The attacker is the disk: one byte of ``data.mdb`` changes while the validator is stopped.
LMDB keeps no checksums, so before this check a flipped balance was served by ``/v1/query``
and a flipped head header was served as the head. Each test flips real bytes in the file
(found by their content: the record's key followed by its value, as LMDB lays them out), then
checks that the node refuses to serve them, says why, and that ``accord node --verify`` names
the damage.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from accord.base.errors import AccordError
from accord.base.types import Tx
from accord.devnet import free_ports
from accord.node import Node
from accord.node.config import demo_account, init_network
from accord.storage import Store
from accord.storage.verify import StorageDamaged, verify_store

pytestmark = pytest.mark.timeout(180)

ALICE, BOB = demo_account(0), demo_account(1)


def _network(root: Path) -> Path:
    ports = free_ports(2)
    init_network(
        root,
        validators=1,
        genesis_time_ms=int(time.time() * 1000),
        deterministic=True,
        ports=ports[:1],
        api_ports=ports[1:],
        demo_accounts=2,
    )
    return root / "validator-0"


async def _run_transfers(home: Path, count: int = 3) -> None:
    node = Node.from_dir(home)
    await node.start()
    try:
        for nonce in range(count):
            tx = Tx.create(
                ALICE,
                chain_id=node.genesis.chain_id,
                contract="token",
                method="transfer",
                args={"to": BOB.address, "amount": 7},
                nonce=nonce,
            )
            h = node.submit(tx)
            deadline = time.monotonic() + 60
            while node.store.get_tx_location(h) is None:
                assert time.monotonic() < deadline, "transfer did not commit"
                await asyncio.sleep(0.05)
    finally:
        await node.stop()


def _flip(file: Path, needle: bytes, offset: int) -> None:
    """Flip one byte at ``offset`` within the only occurrence of ``needle`` in ``file``."""
    raw = bytearray(file.read_bytes())
    at = raw.find(needle)
    assert at >= 0 and raw.find(needle, at + 1) < 0, "the record must occur exactly once"
    raw[at + offset] ^= 0x01
    file.write_bytes(bytes(raw))


def _balance(node: Node, who: bytes) -> object:
    return node.query("token", "balance_of", {"account": who})


def _verify_cli(home: Path) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "node", str(home), "--verify"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in out.stderr.decode(), out.stderr.decode()
    return out.returncode, json.loads(out.stdout.decode().strip().splitlines()[-1])


def test_an_intact_folder_verifies(tmp_path: Path) -> None:
    home = _network(tmp_path / "net")
    asyncio.run(_run_transfers(home, 2))
    code, doc = _verify_cli(home)
    assert code == 0 and doc["ok"] is True and doc["problems"] == [], doc
    assert isinstance(doc["blocks"], int) and doc["blocks"] >= 3
    assert isinstance(doc["state_entries"], int) and doc["state_entries"] >= 3


def test_a_flipped_balance_is_refused_not_served_and_the_node_reports_unhealthy(
    tmp_path: Path,
) -> None:
    home = _network(tmp_path / "net")
    asyncio.run(_run_transfers(home))
    with Store(home / "data", sync=False) as store:
        key, value = next((k, v) for k, v in store.iter_state() if k.endswith(BOB.address))
    _flip(
        home / "data" / "data.mdb", key + value, len(key) + len(value) - 1
    )  # the value's last byte

    async def main() -> None:
        node = Node.from_dir(home)
        await node.start()  # the head is intact: the node starts
        try:
            assert node.healthy
            with pytest.raises(StorageDamaged, match="does not match the state root"):
                _balance(node, BOB.address)  # before: a wrong balance, silently
            st = node.status()
            assert (
                st["healthy"] is False
                and st["running"] is False
                and "storage damaged" in st["fault"]
            )
            assert node.meters.healthy.get() == 0
            assert "accord_healthy 0" in node.metrics.render()
        finally:
            await node.stop()

    asyncio.run(main())
    code, doc = _verify_cli(home)
    assert code == 1 and doc["ok"] is False
    assert any(key.hex()[:32] in str(p) for p in doc["problems"]), doc


def test_a_flipped_head_header_stops_the_start_with_one_clear_line(tmp_path: Path) -> None:
    home = _network(tmp_path / "net")
    asyncio.run(_run_transfers(home))
    with Store(home / "data", sync=False) as store:
        head = store.head()
        assert head is not None
        height = head[0]
        raw_header = store._read(
            lambda t: t.get(height.to_bytes(8, "big"), db=store._db["headers"])
        )
    # the sortition signature's last byte: the header still decodes, but hashes otherwise
    _flip(
        home / "data" / "data.mdb", height.to_bytes(8, "big") + raw_header, 8 + len(raw_header) - 1
    )

    async def main() -> None:
        node = Node.from_dir(home)
        with pytest.raises(StorageDamaged, match=f"header stored at height {height} hashes to"):
            await (
                node.start()
            )  # before: it started and served a head its certificate does not cover
        assert not node.running

    asyncio.run(main())
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "node", str(home)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    err = out.stderr.decode()
    assert out.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (
        err
    )
    assert "storage_damaged" in err and "--verify" in err
    code, doc = _verify_cli(home)
    assert code == 1 and any("head" in str(p) for p in doc["problems"]), doc


def test_verify_report_on_every_single_byte_flip_of_the_head_records(tmp_path: Path) -> None:
    """Each byte of the head's header record flipped in turn (on a copy): never silent."""
    home = _network(tmp_path / "net")
    asyncio.run(_run_transfers(home, 1))
    with Store(home / "data", sync=False) as store:
        head = store.head()
        assert head is not None
        key = head[0].to_bytes(8, "big")
        raw_header = store._read(lambda t: t.get(key, db=store._db["headers"]))
    original = (home / "data" / "data.mdb").read_bytes()
    silent = []
    for i in range(0, len(raw_header), max(1, len(raw_header) // 24)):
        (home / "data" / "data.mdb").write_bytes(original)
        _flip(home / "data" / "data.mdb", key + raw_header, 8 + i)
        try:
            with Store(home / "data", sync=False) as store:
                report = verify_store(store)
        except AccordError:
            continue  # refused to open: not silent
        if report.ok:
            silent.append(i)
    assert silent == []


@pytest.mark.timeout(240)
def test_a_validator_whose_state_is_damaged_halts_instead_of_looping_on_catch_up(
    tmp_path: Path,
) -> None:
    """One of four validators gets a flipped balance while stopped; the next certified block
    that touches it does not apply there. Before: it asked its peers for blocks again and
    again (hundreds of thousands of requests in seconds) while reporting itself running. Now
    it halts, says why, and the other three go on."""
    from .support.inproc import ThreadedNetwork

    net = ThreadedNetwork(tmp_path, validators=4, round_ms=400, stage2_ms=200, name="damage-net")
    try:

        def wait(cond, what: str, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + timeout
            while not cond():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.1)

        wait(lambda: min(n.chain.head()[0] for n in net.nodes if n.chain) >= 2, "the first blocks")
        victim = net.nodes[3]
        home = victim.home
        net.run(victim.stop())
        with Store(home / "data", sync=False) as store:
            key, value = next((k, v) for k, v in store.iter_state() if k.endswith(ALICE.address))
        _flip(home / "data" / "data.mdb", key + value, len(key) + len(value) - 1)
        victim = Node.from_dir(home)
        net.nodes[3] = victim
        net.run(victim.start())
        first = net.nodes[0]
        tx = Tx.create(
            ALICE,
            chain_id=net.genesis.chain_id,
            contract="token",
            method="transfer",
            args={"to": BOB.address, "amount": 5},
            nonce=first.next_nonce(ALICE.address),
        )
        first.submit(tx)
        wait(lambda: victim.fault is not None, "the damaged validator to halt")
        assert "does not apply here" in str(victim.fault)
        st = victim.status()
        assert st["healthy"] is False and st["running"] is False
        assert victim.meters.healthy.get() == 0
        time.sleep(2 * victim.status_interval)  # let any request in flight finish
        asked = victim.meters.sync.get()
        top = first.chain.head()[0] if first.chain else 0
        # the others go on; the halted one asks for nothing more (before: it looped)
        wait(
            lambda: (first.chain.head()[0] if first.chain else 0) >= top + 3, "the others to go on"
        )
        assert victim.meters.sync.get() == asked
    finally:
        net.close()
