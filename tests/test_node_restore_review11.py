"""Eleventh hostile review of the restore hold (accord.node.doublesign, accord.node.driver).

The guarantee attacked: a restored validator never signs a vote that conflicts with its
original's, and it either gets back to voting or says plainly why it cannot (a fault in
``/v1/status``, ``accord_healthy 0``), never a silent stall.

Each test failed on the code of the tenth review (17fe5a7) and passes with its fix:

1. Adopting a certificate's vote while holding reads and raises the safety record in the
   commit's task, outside the error handling of the commit itself: a record that failed its
   checksum ended the task with a traceback. The core had already moved past the block,
   which never committed, so the node stalled for good while it reported itself healthy.
   The release read the record the same way. Now both halt the node with the reason.
2. (Fixed by the state-sync set proof, not here.) State sync under the hold, the tenth
   review's way out of a restore older than every peer's pruning, checked a snapshot's
   certificate against *genesis's* validators, also on a chain that runs the governance
   contract: once the set changed, an honest snapshot was refused, and a quorum of genesis
   validators that have left the set could certify any state. State sync now checks the
   certificate against the set in force at the snapshot's height, proved from genesis by
   the peer's checkpoints (``accord.ledger.validatorsets``); the attacks are in
   tests/test_validator_set_checkpoints.py and tests/test_node_setsync.py, and the one
   left (headers an old set signs after its term) in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import time
import types
from pathlib import Path

import pytest

from accord.base.types import Certificate
from accord.consensus import SAFETY_KEY, Commit, SafetyState
from accord.node.doublesign import DoubleSignGuard
from accord.node.driver import CoreDriver
from accord.storage import Store
from accord.storage import backup as bk

from .test_node_restore_review10 import GENESIS, _block, _held_node, _held_worker, _Ledger
from .test_storage_safety_checksum import _flip_p_round

ME = 3  # this validator's index in the 4 of GENESIS


def _damaged_store(path: Path) -> Path:
    """A data folder whose safety record fails its checksum (one bit flipped on disk)."""
    s = SafetyState(p_round=733, p_height=5, p_hash=b"\x11" * 32, c_round=730, c_height=5)
    s.c_hash = b"\x22" * 32
    with Store(path) as st:
        st.put_safety(SAFETY_KEY, s.encode())
    assert _flip_p_round(path, s.encode(), s) >= 1
    return path


@pytest.mark.parametrize("where", ["adopt", "release"])
def test_a_damaged_safety_record_while_holding_halts_instead_of_stalling_silently(
    tmp_path: Path, where: str
) -> None:
    """``adopt``: the certificate of the next block carries this key's commit vote from
    before the restore, so the hold adopts it: it reads the record to raise it, and the
    record fails its checksum. ``release``: the block ends the hold and carries no vote of
    ours; the release reads the record to close the original's rounds. Old code: the
    commit's task died with SafetyRecordDamaged (logged as "node task failed"), ``fault``
    stayed None and the chain never reached the block (``adopt``) or the node held on,
    healthy, retrying at every block (``release``)."""
    now = int(time.time() * 1000)
    data = _damaged_store(tmp_path / "data")
    bk.write_restored_marker(data, {})
    guard = DoubleSignGuard(GENESIS, ME, enabled=True)  # type: ignore[arg-type]
    guard.open(data, now)
    clocks = {0: now, 1: now, 2: now}
    assert guard.vouch_start(clocks, now) and guard.boundary is not None
    h = 20
    ledger = _Ledger(h - 1)
    rnd = guard.boundary - 2 if where == "adopt" else guard.boundary + 1
    block = _block(h, rnd, now)
    signers = bytes([1 << ME | 0b011]) if where == "adopt" else bytes([0b111])
    cert = Certificate(h, rnd, 2, block.hash, signers, b"")
    faults: list[str] = []

    async def run() -> None:
        worker = _held_worker(ledger, now)
        with Store(data, sync=False) as store:
            node = _held_node(guard, store, ledger, worker, clocks, h)
            node.committed = lambda block, receipts: None

            def fail(reason: str) -> None:
                node.fault = reason
                faults.append(reason)

            node.fail = fail
            driver = CoreDriver(node, b"", 100)
            # The held core as the judge sees it: its record is the restored one.
            driver.core = types.SimpleNamespace(  # type: ignore[assignment]
                status=lambda: types.SimpleNamespace(c_height=5, c_round=-1)
            )
            driver.restart = lambda: None  # type: ignore[method-assign]
            driver._perform(Commit(block, cert))  # type: ignore[arg-type]
            for _ in range(200):
                await asyncio.sleep(0.01)
                if faults or (driver.commits_pending == 0 and ledger.head()[0] == h):
                    break
            await asyncio.sleep(0.05)
            assert driver.commits_pending == 0
            await worker.close()

    asyncio.run(run())
    assert faults, "a damaged safety record left the restored node running, healthy and stuck"
    assert "checksum" in faults[0] and "safety record" in faults[0]
    assert guard.holding, "the hold must not end on a record it could not close"
    assert bk.read_restored_marker(data) is not None
    if where == "adopt":
        assert ledger.head()[0] == h - 1, "the block must not commit without its adoption"


def test_liars_of_a_stale_set_cannot_move_the_boundary_below_this_folders_first_start(
    tmp_path: Path,
) -> None:
    """A backup older than a set change holds with the set of its own head, whose members
    removed since are outside every bound: more than f of its reports may lie. They push
    ``vouched_ms`` ten years ahead, then (at the next start) report clocks an hour slow. Old
    code replaced the sound ``started_ms`` by their time too: the boundary fell an hour
    below this folder's first start, below rounds the original voted in."""
    now = int(time.time() * 1000)
    bk.write_restored_marker(tmp_path, {})
    guard = DoubleSignGuard(GENESIS, ME, enabled=True)  # type: ignore[arg-type]
    guard.open(tmp_path, now)
    floor = guard._boundary_after(now)
    far, slow = now + 10 * 365 * 86_400_000, now - 3_600_000
    assert guard.vouch_start({0: now, 1: far, 2: far}, now)
    again = DoubleSignGuard(GENESIS, ME, enabled=True)  # type: ignore[arg-type]
    again.open(tmp_path, now)  # a restart while holding
    assert again.vouch_start({0: now, 1: slow, 2: slow}, now)
    assert again.boundary is not None and again.boundary >= floor
    assert again.started_ms == now
