"""``accord node backup|restore``: an online backup of a running validator, restored elsewhere,
verified, started in its place and caught up; damaged backups and live targets are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from accord.base.types import Tx
from accord.node import Node
from accord.node.config import demo_account
from accord.storage import backup as b

from .support.inproc import ThreadedNetwork


def _cli(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``accord`` in its own process (LMDB must not be opened twice in one process)."""
    p = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    return p.returncode, (json.loads(lines[-1]) if lines else None), p.stderr


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_backup_a_running_validator_restore_verify_and_catch_up(tmp_path: Path) -> None:
    net = ThreadedNetwork(tmp_path / "net", round_ms=300, stage2_ms=150, name="backup-net")
    try:
        heights = lambda: [  # noqa: E731
            n.chain.head()[0] if n.running and n.chain is not None else 0 for n in net.nodes
        ]
        alice, bob = demo_account(0), demo_account(1)
        for nonce in range(3):
            net.nodes[0].submit(
                Tx.create(
                    alice,
                    chain_id=net.genesis.chain_id,
                    contract="token",
                    method="transfer",
                    args={"to": bob.address, "amount": 2},
                    nonce=nonce,
                )
            )
        _wait(lambda: min(heights()) >= 4, 60, "height 4 everywhere")
        v3 = net.root / "validator-3"
        rc, out, err = _cli("node", "backup", str(v3), str(tmp_path / "bk"))
        assert rc == 0, err
        assert out is not None and out["head_height"] >= 4 and len(out["sha256"]) == 64
        taken_at = out["head_height"]
        # Refusals: a folder a running validator holds, and one that already holds a store.
        rc, _, err = _cli("node", "restore", str(tmp_path / "bk"), str(net.root / "validator-0"))
        assert rc == 1 and "folder_in_use" in err and "process" in err
        # A byte-flipped backup is refused before anything is written.
        shutil.copytree(tmp_path / "bk", tmp_path / "bad")
        data = tmp_path / "bad" / "data.mdb"
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 3] ^= 0x01
        data.write_bytes(bytes(raw))
        # Validator 3 now goes away for good; its backup takes its place in a new folder.
        net.run(net.nodes[3].stop())
        new = tmp_path / "validator-3-restored"
        new.mkdir()
        # the node folder's configuration and secrets (validator key, link certificate) are
        # the operator's to keep; the backup is the data folder
        for f in v3.iterdir():
            if f.is_file():
                shutil.copy(f, new / f.name)
        cfg = json.loads((new / "node.json").read_text())
        cfg["genesis"] = str(net.root / "genesis.json")
        (new / "node.json").write_text(json.dumps(cfg))
        rc, _, err = _cli("node", "restore", str(tmp_path / "bad"), str(new))
        assert rc == 1 and "backup_refused" in err and "checksum" in err
        assert not (new / "data" / "data.mdb").exists()
        rc, _, err = _cli("node", "restore", str(tmp_path / "bk"), str(v3))
        assert rc == 1 and "already holds a store" in err
        rc, out, err = _cli("node", "restore", str(tmp_path / "bk"), str(new))
        assert rc == 0, err
        assert out is not None and out["ok"] and out["height"] == taken_at  # the verify's report
        restored = Node.from_dir(new)
        net.nodes[3] = restored
        net.run(restored.start())
        _wait(
            lambda: heights()[3] >= max(heights()[:3]) - 1 and heights()[3] > taken_at + 2,
            90,
            "the restored validator to catch up",
        )
        assert restored.chain is not None and restored.chain.nonce_of(alice.address) == 3
        assert restored.healthy
    finally:
        net.close()


def test_a_backup_without_its_manifest_or_with_a_wrong_head_is_refused(tmp_path: Path) -> None:
    from accord.storage import Store

    (tmp_path / "src").mkdir()
    with Store(tmp_path / "src", sync=False) as store:
        store.put_meta(b"x", b"y")
    try:
        b.backup(tmp_path / "src", tmp_path / "bk")
    except b.BackupError as e:
        assert "no chain" in e.message
    else:
        raise AssertionError("a store without a head was backed up")
    assert not (tmp_path / "bk" / b.MANIFEST).exists()
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "data.mdb").write_bytes(b"\x00" * 4096)
    try:
        b.restore(tmp_path / "partial", tmp_path / "dst")
    except b.BackupError as e:
        assert "not a complete backup" in e.message
    else:
        raise AssertionError("a backup without a manifest was restored")


def test_an_embedded_store_is_backed_up_through_its_own_handle(tmp_path: Path) -> None:
    """backup_store copies a store this process has open (LMDB must not be opened twice here)."""
    import random

    from accord.storage import Store

    from .support.chains import make_chain

    with Store(tmp_path / "live", sync=False) as store:
        make_chain(store, 3, 200, random.Random(7))
        manifest = b.backup_store(store, tmp_path / "bk")
        head = store.head()
        assert head is not None and manifest["head_height"] == head[0] == 3
        b.restore(tmp_path / "bk", tmp_path / "restored")
        with Store(tmp_path / "restored", sync=False) as copy:
            assert copy.head() == head and dict(copy.iter_state()) == dict(store.iter_state())
