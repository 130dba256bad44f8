"""A copied data folder must not sign twice (found by the operations review: the folder lock
stops a second process on one folder, not a copy of the folder or of validator.key on another
machine). The copy catches up, meets a certificate with its key's commit vote above its own
safety record, and halts instead of voting; the chain goes on. The same folder restored with
`accord node restore` instead adopts those votes, catches up without voting, and votes again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from accord.consensus import SAFETY_KEY, SafetyState, certificate_signers
from accord.node import Node
from accord.storage import backup as b

from .support.inproc import ThreadedNetwork


def _wait(pred, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_copy_of_a_validator_folder_halts_instead_of_signing(tmp_path: Path) -> None:
    net = ThreadedNetwork(tmp_path / "net", name="double-sign")
    copy: Node | None = None
    try:
        original = net.nodes[3]
        _wait(lambda: original.chain is not None and original.chain.head()[0] >= 2)
        # the copy is taken from a stopped validator (as an operator would copy a folder)
        net.run(original.stop())
        src = net.root / "validator-3"
        dst = net.root / "validator-3-copy"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("node.lock"))
        restarted = Node.from_dir(src)
        net.run(restarted.start())
        copied_at = restarted.chain.head()[0] if restarted.chain is not None else 0
        # the original signs on: certificates above the copy's record carry its vote (waited
        # for explicitly: three of four make a quorum, so a certificate may leave it out; and
        # at every peer, since the copy catches up from whichever is ahead: with node 0 only,
        # a copy syncing from another peer could meet no such certificate and never halt)
        first: list[int] = []

        def signed_above_copy() -> bool:
            found = [_first_cert_with(net.nodes[i], restarted.index, copied_at) for i in range(3)]
            if any(h is None for h in found):
                return False
            first.append(max(h for h in found if h is not None))
            return True

        _wait(signed_above_copy)
        # The original goes away (a failover to the copy on another machine, or the copy is a
        # restored backup): with it online its peers keep its links and the copy would not
        # get in; the original's votes since the copy are in the chain's certificates.
        net.run(restarted.stop())
        # (same ports: the peers dial the address they know for validator 3; node.json as
        # copied: the check is on by default)
        copy = Node.from_dir(dst)
        net.run(copy.start())
        _wait(lambda: copy is not None and copy.fault is not None)
        assert "another instance with this validator's key" in (copy.fault or "")
        assert copy.status()["healthy"] is False
        # the other three (a quorum) keep committing
        h = net.nodes[0].chain.head()[0]  # type: ignore[union-attr]
        _wait(lambda: net.nodes[0].chain.head()[0] >= h + 2)  # type: ignore[union-attr]
        # it halted no later than at the last of the peers' first certificates carrying its vote
        assert copy.chain is not None and copy.chain.head()[0] < first[0]
    finally:
        if copy is not None:
            net.run(copy.stop())
        net.close()


def _first_cert_with(node: Node, signer: int, above: int) -> int | None:
    """The first height above ``above`` whose stored certificate carries ``signer``."""
    if node.chain is None:
        return None
    for h in range(above + 1, node.chain.head()[0] + 1):
        cert = node.store.get_certificate(h)
        if cert is not None and signer in certificate_signers(cert, 4):
            return h
    return None


def test_a_restored_backup_adopts_its_votes_catches_up_and_votes_again(tmp_path: Path) -> None:
    """Backup at height h, the original signs on above h and goes away, the folder is restored
    with `accord node restore` and started with the default node.json: it must neither halt
    (old code, check on) nor vote before it has caught up, and must vote again after."""
    net = ThreadedNetwork(tmp_path / "net", round_ms=300, stage2_ms=150, name="restore-sign")
    try:
        v3 = net.root / "validator-3"
        original = net.nodes[3]
        _wait(lambda: original.chain is not None and original.chain.head()[0] >= 2)
        backup_dir = tmp_path / "bk"
        taken_at = b.backup_store(original.store, backup_dir)["head_height"]
        assert original.core is not None
        # at least what the backup's record covers (it only moves up)
        covered = original.core.status().c_height
        # The original signs on: every peer (whichever one the restored node fetches from)
        # holds a certificate above that record carrying its vote, which halts the old code.
        _wait(lambda: all(_first_cert_with(net.nodes[i], 3, covered) for i in range(3)))
        net.run(original.stop())
        (v3 / "data").rename(tmp_path / "old-data")  # the original's folder is gone for good
        p = subprocess.run(
            [sys.executable, "-m", "accord.cli.main", "node", "restore", str(backup_dir), str(v3)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert p.returncode == 0, p.stderr
        assert b.read_restored_marker(v3 / "data") is not None
        restored = Node.from_dir(v3)  # node.json as `accord init` wrote it: check on
        assert restored.config.double_sign_check
        net.nodes[3] = restored
        net.run(restored.start())
        assert restored.double_sign.holding and restored.status()["holding"] is True
        seen_holding: list[int] = []

        def caught_up_and_released() -> bool:
            assert restored.fault is None, restored.fault
            if restored.double_sign.holding:
                # not one vote while holding: the core sees certified blocks only
                st = restored.core.status() if restored.core is not None else None
                assert st is not None and st.round == -1 and st.p_height <= taken_at + 1
                seen_holding.append(restored.chain.head()[0] if restored.chain else 0)
                return False
            return True

        _wait(caught_up_and_released, 90)
        assert restored.double_sign.adoptions >= 1  # the original's votes above the backup
        assert b.read_restored_marker(v3 / "data") is None
        assert restored.status()["holding"] is False
        released_at = restored.chain.head()[0]  # type: ignore[union-attr]
        assert released_at > taken_at
        # the record closes every round the original may have signed in
        rec = SafetyState.decode(restored.store.get_safety(SAFETY_KEY), 4)
        assert restored.double_sign.boundary is not None
        assert rec.p_round >= restored.double_sign.boundary - 1
        # ...and it votes again: a certificate above the release carries its vote
        _wait(
            lambda: (
                restored.fault is None
                and _first_cert_with(net.nodes[0], 3, released_at) is not None
            ),
            90,
        )
        assert restored.healthy and restored.status()["healthy"] is True
    finally:
        net.close()
