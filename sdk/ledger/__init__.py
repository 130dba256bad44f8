"""The ledger layer: the application side of consensus.

``chain`` builds candidate blocks, validates proposals by executing them and commits decided
blocks (with ``accord.storage`` and ``accord.contracts``); ``mempool`` holds pending
transactions; ``blocktime`` is the rule for how far a block's time may stray. No socket, no
clock: time comes in as an argument, so every validator computes the same bytes.
"""
