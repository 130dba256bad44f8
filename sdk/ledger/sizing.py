"""Block sizing by measured execution cost: how much a validator puts in a block it builds.

Sans-I/O and clock-free: the caller measures how long executions took (the node on its chain
thread, the simulator on its virtual clock) and asks where to cut the next block. The node's
chain worker (:mod:`accord.node.worker`) and the simulator (:mod:`accord.sim.engine`) use this
one model, so a simulated network sizes blocks as a real one does.
"""

from __future__ import annotations

TRANSFER_GAS = 5_000
"""About what a token transfer uses: the starting guess of gas per transaction."""

MIN_BLOCK_GAS = 250_000
"""Blocks are never cut below this much gas by the build budget (about 50 token transfers, or
one proof check): a cost estimate inflated by one pause must not shrink blocks to nothing."""

COST_SAMPLE_GAS = 250_000
"""Executions lighter than this are too short to measure the cost of gas by."""


class GasModel:
    """What execution costs on this validator, and so how big a block it cuts.

    A block must be built, sent, validated by the others and voted on within one round; a
    proposal that arrives late is dropped by every core, and if every block is too big for the
    round no block ever commits (a livelock, seen on 2 shared cores above ~1,500 tx/s with fixed
    5,000-tx blocks). So the cost of a unit of gas is measured (builds and validations, so it
    includes CPU contention) and a block is cut so that executing it takes ``build_budget`` of
    a round. Gas, not a transaction count, because transactions differ: one proof check costs as
    much as ~40 transfers, and a block of proof checks cut by count would not fit its round.
    Pure arithmetic, no clock: tests/test_node_worker.py holds it to its bounds, and the
    simulator cuts its blocks with it too (``SimConfig.exec_us_per_tx``).
    """

    def __init__(
        self, round_ms: int, max_block_gas: int, max_block_txs: int, build_budget: float
    ) -> None:
        self.round_ms, self.max_block_gas, self.max_block_txs = (
            round_ms,
            max_block_gas,
            max_block_txs,
        )
        self.build_budget = build_budget
        self.cost = 100e-6 / TRANSFER_GAS
        """Seconds per unit of gas (moving average)."""
        self.tx_gas = float(TRANSFER_GAS)
        """Gas per transaction (moving average): how many transactions to take for a block."""

    def observe(self, seconds: float, txs: int, gas: int) -> bool:
        """Fold in one execution; False when it was too light to measure by."""
        if gas < COST_SAMPLE_GAS or txs <= 0 or seconds < 0:
            return False
        self.cost = 0.7 * self.cost + 0.3 * seconds / gas
        self.tx_gas = 0.7 * self.tx_gas + 0.3 * gas / txs
        return True

    def block_gas(self) -> int:
        """How much gas fits the build budget: where blocks are cut. Never below
        ``MIN_BLOCK_GAS``, never above the block gas limit."""
        budget_s = self.build_budget * self.round_ms / 1000
        gas = max(MIN_BLOCK_GAS, int(budget_s / self.cost))
        return min(gas, self.max_block_gas)

    def block_cap(self) -> int:
        """About how many transactions a block built now holds."""
        return min(self.max_block_txs, max(1, int(self.block_gas() / self.tx_gas)))

    def take_count(self) -> int:
        """How many transactions to take from the mempool for a build: a fifth more than the
        budget should hold, since the cut is made by gas while executing."""
        return min(self.max_block_txs, int(1.2 * self.block_gas() / self.tx_gas) + 1)
