"""Block time: how far a proposal's ``time_ms`` may stray from the clock and the round schedule.

Contracts read ``ctx.time_ms`` (interest epochs, deadlines), and a block's time is at least
its parent's. Without an upper bound one proposer stamping a block ten years ahead moves the
chain's clock there for good: every later block must be at least as late. So an honest
validator refuses to vote for a proposal whose time is

* ahead of its own clock by more than the drift tolerance (``ConsensusParams.time_drift()``), or
* outside its round's slot of the schedule (``genesis_time_ms + round * round_ms``, one round
  long) by more than that tolerance: an honest proposer stamps the time at which it builds,
  which is inside the round it builds for on its own clock, whatever that clock's skew.

The lower bound keeps a proposer from freezing the clock (stamping its parent's time forever).
Both bounds give way to the parent's time: a block may always carry exactly its parent's time
(or later, up to the bounds), so a chain whose head is already stamped ahead (a block committed
before this rule existed) stays live, and its time stands still until the clocks catch up.

This check uses the local clock, so it decides only this validator's *vote*, as CometBFT's
proposal timestamp check does. It is never applied when re-executing a block that carries a
commit certificate (catch-up, restart): a quorum, hence at least f+1 honest validators, judged
it when it was proposed, and a node must accept the chain whatever its own clock says today.
"""

from __future__ import annotations


def ahead_of_clock_ms(*, time_ms: int, now_ms: int, drift_ms: int) -> int:
    """How long until a block stamped ``time_ms`` is no longer too far ahead of a clock that
    reads ``now_ms`` (0: it is not). The one refusal of :func:`block_time_error` that waiting
    cures: a validator whose clock is a little behind the proposer's judges the block again
    once its clock has moved on, instead of refusing it for the whole height."""
    return max(0, time_ms - (now_ms + drift_ms))


def block_time_error(
    *,
    time_ms: int,
    round: int,
    parent_time_ms: int,
    now_ms: int,
    genesis_time_ms: int,
    round_ms: int,
    drift_ms: int,
) -> str | None:
    """Why an honest validator must not vote for a block stamped ``time_ms`` (None: it may).

    ``now_ms`` is the validator's clock, ``round`` the round the block was built for (its
    header's), ``parent_time_ms`` its parent's time. Pure and integer-only, so that the node
    and the simulator apply one rule.
    """
    if time_ms < parent_time_ms:
        return f"block time {time_ms} is before its parent's ({parent_time_ms})"
    if round < 0:
        return f"block round {round} is negative"
    start = genesis_time_ms + round * round_ms
    end = start + round_ms
    # Never later than the end of its round's slot, nor than this validator's clock, by more
    # than the tolerance; a stamp of exactly the parent's time is always allowed.
    upper = max(parent_time_ms, min(now_ms, end) + drift_ms)
    if time_ms > upper:
        if time_ms > now_ms + drift_ms:
            return (
                f"block time {time_ms} is {time_ms - now_ms} ms ahead of this validator's clock "
                f"(tolerance {drift_ms} ms)"
            )
        return (
            f"block time {time_ms} is {time_ms - end} ms past the end of round {round} "
            f"(tolerance {drift_ms} ms)"
        )
    lower = max(parent_time_ms, start - drift_ms)
    if time_ms < lower:
        return (
            f"block time {time_ms} is {start - time_ms} ms before the start of round {round} "
            f"(tolerance {drift_ms} ms)"
        )
    return None
