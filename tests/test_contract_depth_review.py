"""Hostile review of the contract call-depth bound: recursion through builtins that add
Python and C frames between two levels of contract code."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.contracts import meter
from accord.testing import Sandbox

from .support.modules import load_module

DEEP = textwrap.dedent(
    """\
    from __future__ import annotations

    from accord.contracts.base import Context, Contract, method


    class Key:
        def __init__(self, n: int) -> None:
            self.n = n

        def __lt__(self, other: Key) -> bool:
            return bool([down(self.n - 1) for _ in [0]])


    down = lambda n: n if n <= 0 else len(sorted([Key(n), Key(n)], key=lambda k: k))


    class Deep(Contract):
        name = "deep"

        @method
        def dive(self, ctx: Context, n: int) -> int:
            return down(n)
    """
)


_load = load_module


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    mod = _load(tmp_path, "depth_review_deep", DEEP)
    sb = Sandbox([mod.Deep], validators=2)
    yield sb
    sb.close()
    sys.modules.pop("depth_review_deep", None)


@pytest.mark.timeout(120)
def test_a_recursion_through_builtins_ends_at_the_meter_whatever_the_stack(
    sandbox: Sandbox,
) -> None:
    # Each level passes through sorted (C), a key lambda, __lt__, a comprehension and the
    # outer lambda: several Python and C frames per counted level.
    chain = sandbox.chain
    tx = sandbox.sign("alice", "deep", "dive", n=10**6)

    def run() -> bytes:
        with chain.store.snapshot() as snap:
            result = chain.runtime.execute_block(snap, [tx], height=sandbox.height + 1, time_ms=1)
        receipt = result.receipts[0]
        assert receipt.error_code == "revert", (receipt.error_code, receipt.error)
        assert f"nested deeper than {meter.MAX_DEPTH} calls" in (receipt.error or "")
        return receipt.encode()

    def at_depth(frames: int) -> bytes:
        return run() if frames == 0 else at_depth(frames - 1)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        assert run() == at_depth(400)
    finally:
        sys.setrecursionlimit(old)
