"""CPython's cyclic garbage collector, tuned for a long-running validator process.

Why: a validator holds tens of thousands of long-lived objects (genesis, contracts,
verification keys, pending transactions, recent blocks). Each full collection walks all of
them while it holds the GIL, so the event loop stops relaying votes and the chain thread stops
executing. Measured on the 2-core development machine under 900 tx/s: full collections of
130-340 ms, several per half minute in each validator, each one a missed deadline somewhere
in a 1-second round. The ledger's own objects form no reference cycles (reference counting
frees them), so the collector can run its full passes rarely:

* :func:`gc.freeze` moves everything start-up built into the permanent generation, which no
  collection walks again;
* the young generations keep collecting often (they are small, a few milliseconds each), and a
  full collection waits for 1,000 collections of the middle one instead of 10.

With both, the consensus benchmark at 900 tx/s offered committed 796-846 tps with a p50
latency of 1.24-1.83 s (four runs), against 654-795 tps and 1.55-2.43 s without. The standalone ``accord node`` process applies this once
it has started; a host application that embeds a :class:`~accord.node.Node` decides for its
own process (``tune_collector()`` after ``await node.start()``).
"""

from __future__ import annotations

import gc

YOUNG = 2_000
"""allocations (net) between collections of the youngest generation (CPython: 700)"""
MIDDLE = 20
"""youngest collections per middle-generation collection (CPython: 10)"""
FULL = 1_000
"""middle collections before a full one is considered (CPython: 10)"""


def tune_collector(young: int = YOUNG, middle: int = MIDDLE, full: int = FULL) -> None:
    """Freeze what exists now and make full collections rare (see the module's reasons)."""
    gc.collect()  # what start-up left as garbage goes now, not into the permanent generation
    gc.freeze()
    gc.set_threshold(young, middle, full)
