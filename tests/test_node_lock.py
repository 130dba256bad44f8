"""One process per validator: the folder lock, clear start-up errors, and no orphan validators.

Attackers and accidents played here: a second start on a running validator's folder (Flask's
debug reloader, an operator's second terminal), a port taken by another program, and the
supervisor (``accord devnet``) killed with SIGKILL while its validators run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accord.devnet import ephemeral_range, free_ports
from accord.node import Node
from accord.node.config import NodeConfig, init_network
from accord.storage.lock import LOCK_NAME, FolderInUse, FolderLock

pytestmark = pytest.mark.timeout(240)

ACCORD = [sys.executable, "-m", "accord.cli.main"]


def _one_validator(root: Path) -> Path:
    ports = free_ports(2)
    init_network(
        root,
        validators=1,
        genesis_time_ms=int(time.time() * 1000),
        deterministic=True,
        ports=ports[:1],
        api_ports=ports[1:],
    )
    return root / "validator-0"


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone: it holds no port, no lock)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_the_lock_is_exclusive_names_its_holder_and_goes_with_it(tmp_path: Path) -> None:
    a = FolderLock(tmp_path / "data")
    a.acquire()
    b = FolderLock(tmp_path / "data")
    with pytest.raises(FolderInUse, match=f"process {os.getpid()}"):
        b.acquire()  # even from the same process: flock locks are per open file
    a.release()
    b.acquire()
    assert (tmp_path / "data" / LOCK_NAME).read_text().strip() == str(os.getpid())
    b.release()


def test_a_second_node_on_the_same_folder_is_refused_in_process(tmp_path: Path) -> None:
    home = _one_validator(tmp_path / "net")

    async def main() -> None:
        first = Node.from_dir(home)
        await first.start()
        try:
            second = Node.from_dir(home)
            with pytest.raises(FolderInUse, match=f"in use by process {os.getpid()}"):
                await second.start()
            assert not second.running and first.running
            assert first.chain is not None and first.chain.head()[0] >= 0  # untouched
        finally:
            await first.stop()
        again = Node.from_dir(home)  # the lock went with the first node's stop
        await again.start()
        await again.stop()

    asyncio.run(main())


def _run_once(home: Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*ACCORD, "node", str(home)], capture_output=True, timeout=timeout, check=False
    )


def test_a_second_accord_node_is_refused_with_one_line_naming_the_first(tmp_path: Path) -> None:
    home = _one_validator(tmp_path / "net")
    first = subprocess.Popen(
        [*ACCORD, "node", str(home), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = home / "data" / LOCK_NAME
        _wait(
            lambda: lock.exists() and lock.read_text().strip() == str(first.pid),
            60,
            "the first to lock",
        )
        out = subprocess.run(
            [*ACCORD, "node", str(home)], capture_output=True, timeout=60, check=False
        )
        err = out.stderr.decode()
        assert out.returncode == 1, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"in use by process {first.pid}" in err and "folder_in_use" in err
        assert first.poll() is None  # the first one runs on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)


def test_a_busy_port_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    home = _one_validator(tmp_path / "net")
    cfg = NodeConfig.load(home)
    with socket.socket() as squatter:
        squatter.bind((cfg.host, cfg.port))
        squatter.listen()
        out = _run_once(home)
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"cannot listen on {cfg.host}:{cfg.port}" in err and "already in use" in err
    # nothing was left locked: the port free again, the node starts and stops
    first = subprocess.Popen(
        [*ACCORD, "node", str(home), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = home / "data" / LOCK_NAME
        _wait(
            lambda: lock.exists() and lock.read_text().strip() == str(first.pid),
            60,
            "the node to lock",
        )
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0


def test_ports_are_chosen_outside_the_ephemeral_range() -> None:
    lo, hi = ephemeral_range()
    for p in free_ports(50):
        assert not lo <= p <= hi


def test_sigkill_of_devnet_leaves_no_validator_running_and_a_rerun_reuses_the_chain(
    tmp_path: Path,
) -> None:
    root = tmp_path / "net"
    args = [
        *ACCORD,
        "devnet",
        "--dir",
        str(root),
        "--validators",
        "1",
        "--rate",
        "5",
        "--round-ms",
        "500",
        "--stage2-ms",
        "250",
    ]
    devnet = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid: int | None = None
    try:
        lock = root / "validator-0" / "data" / LOCK_NAME

        def locked() -> bool:
            nonlocal pid
            text = lock.read_text().strip() if lock.exists() else ""
            pid = int(text) if text.isdigit() else None
            return pid is not None and _alive(pid)

        _wait(locked, 120, "the devnet's validator to start")
        assert pid is not None and pid != devnet.pid
        devnet.send_signal(signal.SIGKILL)
        devnet.wait(10)
        # the validator sees its lifeline close and stops (before: it lived on, holding its ports)
        _wait(lambda: not _alive(pid), 60, f"validator {pid} to exit after its supervisor died")
    finally:
        if devnet.poll() is None:
            devnet.kill()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
    # the folder is reusable at once: same chain, further blocks
    out = subprocess.run(
        [*args, "--blocks", "2", "--json"], capture_output=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    doc = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert doc["height"] >= 2
