"""Stopping the child processes a local cluster started (MPC servers, a benchmark's etcd)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every process still running, then wait for each; SIGKILL one that has not
    exited within ``timeout`` seconds. All are signalled before any is waited for, so they
    shut down side by side instead of one after another."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
