"""``accord bench net``: the validator transport alone (see :mod:`accord.net.loadtest`).

N validator processes on loopback gossip transaction batches at an open-loop rate, over TLS
(``--tls``, the default for new networks) or plaintext (``--no-tls``): alternate the two to see
what encryption costs (``cpu_us_per_tx_received``; delivered rates if the load saturates).
"""

from __future__ import annotations

from accord.net.loadtest import add_arguments, run

__all__ = ["add_arguments", "run"]
