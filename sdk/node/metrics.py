"""The metrics a validator node owns (the transport, API and worker define their own).

One object holds them so the parts that move them (the driver, admission, catch-up) name them
the same way, and one collector refreshes the gauges that mirror other parts' counters
(mempool, core, ledger) each time ``/metrics`` is read, so nothing polls between reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from accord.base.metrics import Gauge, Registry
from accord.base.types import Block

if TYPE_CHECKING:
    from accord.node.node import Node


class NodeMetrics:
    """The node's own metrics, registered in ``registry``."""

    def __init__(self, registry: Registry) -> None:
        m = registry
        self.height = m.gauge("accord_height", "height of the last committed block")
        self.healthy = m.gauge(
            "accord_healthy",
            "1 while the node takes part; 0 once it halted on a fault "
            "(damaged storage, a certified block that does not apply)",
        )
        self.healthy.set(1)
        self.stranded = m.gauge(
            "accord_catch_up_stranded",
            "1 while the blocks this node needs next are pruned on every peer that could send "
            "them (a newer backup or state sync from an empty folder is needed)",
        )
        self.txs = m.counter("accord_txs_committed_total", "transactions committed")
        self.blocks = m.counter("accord_blocks_committed_total", "blocks committed")
        self.mempool = m.gauge("accord_mempool_txs", "transactions waiting in the mempool")
        self.rejected = m.gauge(
            "accord_mempool_rejected", "transactions the mempool refused, by reason", ["code"]
        )
        self.latency = m.histogram(
            "accord_tx_latency_seconds",
            "submit-to-commit latency of transactions submitted here",
            buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30),
        )
        self.consensus = m.gauge("accord_consensus_events", "consensus core counters", ["kind"])
        self.sync = m.counter(
            "accord_sync_blocks_total", "blocks fetched from peers while catching up"
        )
        self.bad_msgs = m.counter(
            "accord_bad_messages_total", "malformed messages from peers", ["kind"]
        )
        self.shed = m.counter(
            "accord_submissions_shed_total", "client submissions refused: backlog too long"
        )
        self.evicted = m.gauge(
            "accord_mempool_evicted", "pending transactions evicted, by reason", ["reason"]
        )
        self.mismatch = m.gauge(
            "accord_root_mismatches",
            "proposals refused for a tx-root or state-root mismatch, by reason and by the "
            "suspected transaction's contract",
            ["what"],
        )

    def committed(self, block: Block, submitted_at: dict[bytes, float]) -> None:
        """Count a committed block; the latency of each of its transactions submitted here
        (their submit times are taken out of ``submitted_at``)."""
        now = time.monotonic()
        self.height.set(block.height)
        self.blocks.inc()
        self.txs.inc(len(block.txs))
        for tx in block.txs:
            at = submitted_at.pop(tx.hash, None)
            if at is not None:
                self.latency.observe(now - at)

    def collect(self, node: Node) -> None:
        """Refresh the gauges that mirror the mempool's, the core's and the ledger's counts."""
        if node.mempool is not None:
            self.mempool.set(len(node.mempool))
            _mirror(self.rejected, node.mempool.rejected, "code")
            _mirror(self.evicted, node.mempool.evicted, "reason")
        if node.core is not None:
            _mirror(self.consensus, node.core.status().stats, "kind")
        if node.chain is not None:
            _mirror(self.mismatch, node.chain.mismatch_counts(), "what")


def _mirror(gauge: Gauge, counts: Mapping[str, int], label: str) -> None:
    for key, count in counts.items():
        gauge.set(count, **{label: key})
