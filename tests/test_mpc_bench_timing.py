"""The bench's clock stops only when every server holds its result (not when server 0 does)."""

from __future__ import annotations

import threading

from accord.mpc.local import run_local
from accord.mpc.programs import timed_until_all


def test_the_timing_waits_for_the_slowest_server():
    """Server 2 is the straggler: it waits until server 0 has stopped its clock (or gives up
    after 5 s). A clock that stops when server 2 is done must see server 2 finish first."""
    stopped0 = threading.Event()
    order: list[str] = []

    def work(p):
        if p.i == 2:
            stopped0.wait(5)
            order.append("2 done")

    def prog(p):
        timed_until_all(p, lambda: work(p))
        if p.i == 0:
            order.append("0 stopped")
            stopped0.set()

    run_local(prog, timeout=30)
    assert order == ["2 done", "0 stopped"]
