"""Which chain job runs next: the one scheduling policy the node and the simulator share.

The core asks its driver for two kinds of slow work, ``BuildBlock`` and ``ValidateBlock``, and
both run on one chain thread, one at a time. What the thread runs next decides whether a round's
best proposal is voted on in time, so the policy lives here, once, as a small deterministic
object: the node (:mod:`accord.node.node`) and the simulator (:mod:`accord.sim.engine`) both
feed it and ask it. (The simulator used to keep a hand copy "chosen as the node chooses"; it had
already lost the one-round deferral below.)

Rules this module keeps:

* **Builds first**, and only a current one: a build whose (height, round) is not the core's
  any more is dropped and counted (``stale_builds``) instead of run, since the core would drop
  the block.
* **Validations of committed heights are dropped**: the core forgot those candidates.
* **The newest round's best ticket is validated first** (ties by block hash, so the order is a
  function of the inputs). A proposal whose round already has a *better* ticket found valid is
  deferred by one round: it is needed only if that round's block is re-proposed under a lock
  later, and usually its height commits first, which drops it. Deferring delays, never refuses,
  so no proposal the core waits on is left unanswered while its height is open.
* No clock is read here: every call that needs time is given ``now`` (seconds, any origin) by
  its driver, real on the node, virtual in the simulator.
"""

from __future__ import annotations

from accord.base.types import Block
from accord.consensus.crypto import sortition_value
from accord.consensus.state import BuildBlock


class ChainJobs:
    """Pending builds and validations of one validator, and the order to run them in."""

    def __init__(self, round_s: float) -> None:
        self.round_s = round_s
        """How long a validation is deferred behind a better valid ticket of its round."""
        self._builds: list[BuildBlock] = []
        self._validations: dict[bytes, tuple[Block, float]] = {}  # hash -> (block, arrived)
        self._valid_best: dict[tuple[int, int], int] = {}  # (height, round) -> best valid ticket
        self.stale_builds = 0
        """Builds dropped because the core had moved past their round when the thread was free."""

    def __len__(self) -> int:
        return len(self._builds) + len(self._validations)

    def build(self, action: BuildBlock) -> None:
        self._builds.append(action)

    def validate(self, block: Block, now: float) -> None:
        self._validations[block.hash] = (block, now)

    def found_valid(self, block: Block) -> None:
        """``block`` validated (or was built here): worse tickets of its round may wait."""
        key = (block.height, block.header.round)
        ticket = sortition_value(block.header.sortition)
        self._valid_best[key] = min(ticket, self._valid_best.get(key, ticket))

    def clear(self) -> None:
        """Forget everything (a stop, a halt, a restart: nothing learned survives them)."""
        self._builds.clear()
        self._validations.clear()
        self._valid_best.clear()

    def next(
        self, *, committed: int, height: int, round: int, now: float
    ) -> tuple[BuildBlock | Block | None, float | None]:
        """The job to run now, or (None, seconds until a deferred one is due; None: nothing).

        ``committed`` is the last committed height; ``(height, round)`` is where the core is
        (from its :class:`~accord.consensus.state.Status`)."""
        while self._builds:
            build = self._builds.pop(0)
            if (build.height, build.round) == (height, round):
                return build, None
            self.stale_builds += 1
        for h in [h for h, (b, _) in self._validations.items() if b.height <= committed]:
            del self._validations[h]
        for key in [k for k in self._valid_best if k[0] <= committed]:
            del self._valid_best[key]
        due: list[tuple[tuple[int, int, bytes], Block]] = []
        wait: float | None = None
        for b, arrived in self._validations.values():
            ticket = sortition_value(b.header.sortition)
            better = self._valid_best.get((b.height, b.header.round))
            if better is not None and better < ticket and now < arrived + self.round_s:
                left = arrived + self.round_s - now
                wait = left if wait is None else min(wait, left)
                continue
            due.append(((-b.header.round, ticket, b.hash), b))
        if not due:
            return None, wait
        best = min(due, key=lambda x: x[0])[1]
        del self._validations[best.hash]
        return best, None
