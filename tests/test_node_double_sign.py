"""A copied data folder must not sign twice (found by the operations review: the folder lock
stops a second process on one folder, not a copy of the folder or of validator.key on another
machine). The copy catches up, meets a certificate with its key's commit vote above its own
safety record, and halts instead of voting; the chain goes on."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from accord.node import Node

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
        # for explicitly: three of four make a quorum, so a certificate may leave it out)
        from accord.consensus import certificate_signers

        first: list[int] = []

        def signed_above_copy() -> bool:
            peer = net.nodes[0]
            if peer.chain is None:
                return False
            head = peer.chain.head()[0]
            for h in range(copied_at + 1, head + 1):
                cert = peer.store.get_certificate(h)
                if cert is not None and restarted.index in certificate_signers(cert, 4):
                    first.append(h)
                    return True
            return False

        _wait(signed_above_copy)
        # The original goes away (a failover to the copy on another machine, or the copy is a
        # restored backup): with it online its peers keep its links and the copy would not
        # get in; the original's votes since the copy are in the chain's certificates.
        net.run(restarted.stop())
        # (same ports: the peers dial the address they know for validator 3)
        cfg = dst / "node.json"
        import json

        doc = json.loads(cfg.read_text())
        doc["double_sign_check"] = True
        cfg.write_text(json.dumps(doc))
        copy = Node.from_dir(dst)
        net.run(copy.start())
        _wait(lambda: copy is not None and copy.fault is not None)
        assert "another instance with this validator's key" in (copy.fault or "")
        assert copy.status()["healthy"] is False
        # the other three (a quorum) keep committing
        h = net.nodes[0].chain.head()[0]  # type: ignore[union-attr]
        _wait(lambda: net.nodes[0].chain.head()[0] >= h + 2)  # type: ignore[union-attr]
        # it stopped before the first block whose certificate carries its key's vote
        assert copy.chain is not None and copy.chain.head()[0] < first[0]
    finally:
        if copy is not None:
            net.run(copy.stop())
        net.close()
