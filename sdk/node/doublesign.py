"""The double-sign check, and how a restored folder gets back to voting without equivocating.

Every certificate that commits on a node is shown to :class:`DoubleSignGuard` with the
core's :class:`~accord.consensus.Status`. The core persists each commit (C) vote before it
sends it and C votes only move up, so a certificate carrying this validator's C vote for a
(height, round) above the record was not signed by this folder. Two folders can explain it:

* **A copy** (the folder or ``validator.key`` on another machine): it signs on its own and
  this folder cannot know what it signed, so the verdict is :attr:`Verdict.HALT`.
* **A restore** (``accord node restore`` of an older backup): the original signed after the
  backup and then went away. The restore leaves a marker in the data folder
  (:data:`accord.storage.backup.RESTORED`), and while it is there the node *holds*: it commits
  by certificate only (no P or C vote, no proposal, no ticket: the node feeds its core nothing
  but fetched, certified blocks) and each certificate carrying its vote from before this
  folder was started is *adopted* (:attr:`Verdict.ADOPT`): the persisted record is raised to
  cover it, synced before the block commits. A vote of ours in a round after the folder was
  started is not the original's (the original was gone by then) but a live second instance:
  HALT, marker or not.

**Leaving the hold** is decided by certificates (:meth:`DoubleSignGuard.ends_hold`): the hold
ends when a block *proposed* in a round at or after the boundary commits here. A block proposed
in round r can be decided only in round r or later, and only one block is decided per height, so
that height was still open when the original stopped: the original never reached the next
height, and whatever it signed (prepare votes, commit votes that made no certificate, the lock
it held) is at heights this node has now committed by certificate. Voting at the next height
therefore conflicts with nothing the original signed. (Releasing on "level with f+1 peers'
heads" did not hold: one liar, or a lagging honest peer, released a node before the height the
original was locked at, and a single Byzantine validator could then fork the chain.)

Peers' reports can only delay the release, never cause it, and at most f of them lie, so each
is read as an order statistic that f liars cannot move outside the honest reports
(:func:`vouched`): the block must be at least the (f+1)-th highest head peers report (the
network's newest, so the core restarts at the tip: a liar claiming a far head cannot hold the
node for ever, as it could while heads were filtered by who served what), and the (f+1)-th
lowest clock peers report must not be more than three drifts ahead of this one (below).
At release the record also closes every round below the boundary and up to the network's time
plus ``max_time_drift`` for P, and the core is rebuilt from it.

**The clock.** The boundary is this machine's first start, plus five drifts and three rounds,
in rounds: the original's clock may have been the drift ahead, this one behind. Before any
certificate is judged, 2f+1 peers' clocks vouch for the start (:meth:`DoubleSignGuard.vouch_start`):
their (f+1)-th lowest, at least one honest clock, replaces the start when later, so a clock
that was behind at the first start and was stepped right since (sixth review) no longer
leaves the boundary below the original's rounds. A clock that is behind now is seen too;
two checks see it. Peers send their clocks with their heads (``STATUS``): the (f+1)-th lowest is at least
one honest validator's clock (at least true time minus the drift, less the trip), so it
passing within three drifts of ours bounds ours to four drifts and a trip behind, inside the
margin; it needs f+1 reports to release, and 2f+1 to halt (with fewer, a liar's high report
could be the statistic, so the node waits). This holds when the network has stalled and no
fresh block exists (fourth review: a stalled chain hid a clock 15.6 s behind from the block
check). And :meth:`DoubleSignGuard.check_clock` halts on any certified block stamped more than
three drifts ahead of this clock. So the hold's safety assumes honest clocks within the
drift, as block-time checks do. The hold costs nothing but time: the node commits by
certificate meanwhile. It lasts until the others commit a block proposed after the restore,
so a holding validator counts as a faulty one for liveness.

**A start from the future.** The marker's ``started_ms`` (and ``vouched_ms``) is kept even
when it is ahead of this clock: a clock stepped back must not lower the boundary (second
review). But a damaged or hostile value decades ahead made the boundary unreachable, so the
peers bound it when they vouch (:meth:`DoubleSignGuard.vouch_start`): a marker time more than
two drifts ahead of both this clock and the time the peers vouch for now (V) cannot be a past
start, and is replaced (that value only: a start by the later of V and this clock, a vouched time by V), with an error logged. That is safe because the boundary only has
to lie above the original's rounds: the original was gone before this folder first started
(T0), so true time now is past T0; V is at least one honest clock, so at least true time
minus the drift, hence at least T0 minus the drift, and the margin (five drifts and three
rounds) still covers the original's clock running the drift ahead. A start written by a
clock within the drift (at most T0 plus the drift) is at most two drifts ahead of V, so it is
never replaced; only one written by a clock that was wrong, or by no clock at all, is (and
the threshold matters only for that: replacing by V is safe whatever was there). The
boundary never drops below a round already adopted (the start is vouched for again mid-hold
after a set change).

**A set of one.** A validator alone in the set of the next height cannot be restored: its
commit vote alone is a certificate, so the original committed every height it voted at after
the backup, only it held those blocks, and no one else can send them, vouch for a clock or
propose the block that ends the hold. Releasing on this clock would sign a second block at
one of those heights. The node stops instead (:meth:`DoubleSignGuard.alone`, a fault in
``/v1/status`` and ``accord_healthy 0``), saying what the operator can do. That includes a
backup taken while the set was this validator alone on a chain whose set grew since: the
node cannot tell, from the set of its next height, that others hold the later blocks (and
counts no non-member's report), so it stops too; a backup taken after the set grew holds
and releases as usual.

**Pruned peers.** A backup older than every peer's retained blocks cannot catch up by blocks:
peers answer "pruned" and, once f+1 members said it of the next height and no other is left
to ask, catch-up stops asking and reports the node unhealthy with that reason
(:mod:`accord.node.catchup`). State sync can then take over under the hold: a data folder
emptied of all but the marker state-syncs from a peer's snapshot at a certified height while
holding (it votes nowhere meanwhile), and the hold ends by the same rule. The backup's safety record is dropped with its store, which is safe for
the same reason the release is: everything the original signed is at heights at or below the
block that ends the hold, and the core votes only above it, in rounds past the boundary.

**Releasing after the last commit.** The core is rebuilt from the record at release, so the
release waits until every commit asked for has returned, started or not
(``CoreDriver.commits_pending``): a commit the held core asked for while the releasing one
returned was not counted by the worker yet and landed after the rebuild, below the store's
head. The record could not end below a vote that way (that block was proposed after the
releasing one, in a round at or past the boundary, so it carries no vote of the original's),
but the core must start at the head every commit asked for leads to.

The record only moves up: adoption raises ``c_round`` only to a higher round (the core's rule
on C votes is on rounds alone) and ``c_height`` only to a higher height, and release only
raises ``p_round``. After release (and after any restart without the marker)
the check is strict again, except that within the same run a certificate from before this
folder was started is still recognised as the original's (a quorum of the height the
original was voting at when it stopped can complete after the release).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import Certificate
from accord.consensus import SAFETY_KEY, SafetyState, Status, certificate_signers
from accord.storage import backup as backup_files

log = logging.getLogger("accord.node")


def vouched(reports: Mapping[int, int], f: int, *, highest: bool) -> int | None:
    """The (f+1)-th highest (``highest``) or lowest of peers' ``reports``: with at most f
    liars among them, at least one honest report is at or beyond it, so liars cannot push it
    past every honest report in that direction (a single liar claiming head 10**9, or a clock
    an hour slow, moves nothing). None with f or fewer reports (then all may be lies)."""
    if len(reports) <= f:
        return None
    ordered = sorted(reports.values(), reverse=highest)
    return ordered[f]


class Verdict(Enum):
    OK = "ok"
    """The certificate does not carry our vote above the record."""
    ADOPT = "adopt"
    """Our vote from before this folder started (the original's, before a restore)."""
    HALT = "halt"
    """Our vote that this folder did not sign and cannot be the original's: stop voting."""


class DoubleSignGuard:
    """One node's double-sign check and restore hold (see the module docstring).

    ``enabled`` is node.json's ``double_sign_check``: off, no certificate halts the node
    (a restored folder still holds until caught up: that costs nothing and closes the rounds
    the original may have voted in)."""

    def __init__(self, genesis: Genesis, index: int, *, enabled: bool) -> None:
        self.genesis = genesis
        self.index = index
        self.enabled = enabled
        self.data_dir: Path | None = None
        self.holding = False
        """Restored and not caught up: the node neither votes nor proposes."""
        self.boundary: int | None = None
        """After a restore: our votes in rounds below this are the original's, in this
        round or later another instance's. The first round past the one this folder first
        started in, by a clock up to the drift ahead (the original's may have been)."""
        self.adopted: tuple[int, int] = (0, -1)
        """The highest (height, round) of our C votes adopted so far (what the persisted
        record covers while the core, not driven, still holds the restored one)."""
        self.adoptions = 0
        self.timing: Callable[[], tuple[int, ConsensusParams]] = lambda: (
            genesis.genesis_time_ms,
            genesis.consensus,
        )
        """The round anchor and consensus parameters of the height the node works on
        (genesis's until the driver follows governance: :meth:`follow_timing`)."""
        self.signer_at: Callable[[int], tuple[int, int | None]] = lambda height: (
            genesis.n,
            index,
        )
        """The size of the validator set of a height and our index in it (None: not a
        member); the driver replaces it once validator sets can change (accord.node.sets)."""
        self.started_ms = 0
        self.vouched_ms = 0
        self.start_vouched = False
        """2f+1 peers' clocks have vouched for the restore boundary (see vouch_start)."""

    # --- rounds --------------------------------------------------------------------------

    def round_of(self, now_ms: int) -> int:
        """The round at ``now_ms`` on the schedule of the heights the node works on."""
        anchor, c = self.timing()
        return (now_ms - anchor) // c.round_ms

    def follow_timing(self, timing: Callable[[], tuple[int, ConsensusParams]]) -> None:
        """Rounds as the next height counts them from now on (governance may change
        ``round_ms``, and the round schedule moves with it: see
        :meth:`accord.contracts.runtime.Runtime.round_anchor`). A boundary not vouched for
        yet is recomputed on that schedule: it was taken by genesis's at open, and on a
        schedule of shorter rounds genesis's numbers lie below rounds the original voted in
        (the release waits for the vouching, which only raises it from there)."""
        self.timing = timing
        if self.holding and not self.start_vouched and self.boundary is not None:
            self.boundary = self._boundary_after(max(self.started_ms, self.vouched_ms))

    # --- lifecycle -----------------------------------------------------------------------

    def open(self, data_dir: Path, now_ms: int) -> None:
        """Read the restore marker of ``data_dir`` at start. The first start after a restore
        writes its time into the marker, so a restart while still holding keeps the same
        boundary between the original's votes and anyone else's."""
        self.data_dir = data_dir
        marker = backup_files.read_restored_marker(data_dir)
        self.holding = marker is not None
        self.adopted = (0, -1)
        if marker is None:
            self.boundary = None
            return
        started = marker.get("started_ms")
        # Kept even if it is ahead of this clock (stepped back, or another host): lowering it
        # would move the boundary below rounds the original may have voted in.
        if type(started) is not int or started <= 0:
            started = now_ms
            backup_files.write_restored_marker(data_dir, {**marker, "started_ms": started})
        self.started_ms = started
        vouched_ms = marker.get("vouched_ms")
        # Anything but a positive int is no vouching (a damaged or hand-edited marker): the
        # start is then vouched for again by the peers, which can only raise the boundary.
        if type(vouched_ms) is not int or vouched_ms <= 0:
            vouched_ms = 0
        self.vouched_ms = vouched_ms
        # Vouched for again at every start while holding: a copy of a holding folder (a VM
        # clone, a standby copy) starts later than the instance that wrote the marker, which
        # may have released and voted since; the marker's times alone let the copy release on
        # a block that instance had already voted past (eighth review). Raising the boundary
        # is always safe: a holding folder has signed nothing.
        self.start_vouched = False
        # The original's clock may have been the drift ahead of true time, and this one
        # behind it: the margin covers up to 4 drifts + 3 rounds behind. The start is then
        # vouched for by the peers' clocks (vouch_start), which raises the boundary if this
        # clock was further behind when the folder first started.
        self.boundary = self._boundary_after(max(started, vouched_ms))
        log.warning(
            "%s restored from a backup: catching up by certificates only, no votes until "
            "a block proposed after this start commits (see the double-sign check in "
            "docs/operations.md)",
            data_dir,
        )

    def _boundary_after(self, start_ms: int) -> int:
        c = self.timing()[1]
        return self.round_of(start_ms + 5 * c.time_drift() + 3 * c.round_ms) + 1

    def _f(self, n: int | None) -> int:
        """f of a set of ``n`` validators (None: genesis's). The hold's order statistics use
        the set the node runs, never genesis's once governance changed it (ninth review: two
        Byzantine members of a set grown from 4 to 7 chose the boundary with genesis's f)."""
        return ((self.genesis.n if n is None else n) - 1) // 3

    def vouch_start(
        self, peer_clocks: Mapping[int, int], now_ms: int | None = None, n: int | None = None
    ) -> bool:
        """While holding, once 2f+1 peers have told their clocks: raise the boundary to what
        their (f+1)-th lowest clock (at least one honest clock, at most another) says, and
        keep that in the marker; with f+1 reports, to their highest if it is within three
        drifts of this clock (``now_ms``). Returns whether the start is vouched for (release
        and catch-up wait for it). Every start while holding is vouched for again.

        The boundary must lie above every round the original voted in, and the original
        was gone before this folder first started, so a boundary from any later time is
        safe too (it only adopts more and holds a little longer). The peers' time does not
        depend on this clock: a clock that was behind at the first start and was stepped
        right since (a VM snapshot booted before NTP synced) was judged only as it is now,
        and the boundary from its slow start lay below the original's rounds (sixth
        review). Needs 2f+1 reports so that f liars can neither lower the statistic nor
        push it (and the hold) far ahead; with the restored node counted faulty, the peers
        that are up are enough (docs/operations.md)."""
        if not self.holding or self.start_vouched or self.data_dir is None:
            return self.start_vouched
        f = self._f(n)
        if len(peer_clocks) > 2 * f:
            network = vouched(peer_clocks, f, highest=False)
        elif len(peer_clocks) > f and now_ms is not None:
            # f+1 reports: their highest is at least one honest clock, so never too low; it is
            # taken only within three drifts of this clock, so f liars cannot push the hold far
            # ahead. Waiting for 2f+1 let f validators silent in STATUS hold a restored node for
            # ever (eighth review).
            network = max(peer_clocks.values())
            if network > now_ms + 3 * self.timing()[1].time_drift():
                return False
        else:
            return False
        assert network is not None
        marker = backup_files.read_restored_marker(self.data_dir) or {}
        latest = max(network, now_ms or 0)
        if self._from_the_future(latest, marker):
            # Only a time from the future is replaced, and by the later of the peers' time
            # and this clock, never by the peers' alone: the set a restored node runs can be
            # one that governance has changed since the backup, whose removed members no
            # bound covers, so more than f of its reports may lie. Replacing a sound
            # started_ms by their time let them first push vouched_ms ahead, then (at the
            # next start) report clocks an hour slow and move the boundary below rounds the
            # original voted in (eleventh review). This clock is trusted as far as the hold
            # trusts it anyway (check_clock halts it when it is behind).
            limit = latest + 2 * self.genesis.consensus.time_drift()
            if self.started_ms > limit:
                self.started_ms = latest
            if self.vouched_ms > limit:
                self.vouched_ms = network
            # Never below a round already adopted (after a set change the start is vouched
            # for again mid-hold).
            self.boundary = max(
                self._boundary_after(max(self.started_ms, self.vouched_ms)), self.adopted[1] + 1
            )
        network = max(network, self.vouched_ms)
        backup_files.write_restored_marker(
            self.data_dir, {**marker, "started_ms": self.started_ms, "vouched_ms": network}
        )
        self.vouched_ms = network
        raised = self._boundary_after(max(self.started_ms, network))
        if self.boundary is None or raised > self.boundary:
            log.warning(
                "restored folder: the peers' clocks put this start %d ms later than this "
                "clock did; the restore boundary moves from round %s to %d",
                network - self.started_ms,
                self.boundary,
                raised,
            )
            self.boundary = raised
        self.start_vouched = True
        return True

    def _from_the_future(self, now_ms: int, marker: Mapping[str, Any]) -> bool:
        """Whether the marker's start or vouched time lies more than two drifts ahead of
        ``now_ms`` (the later of this clock and the time the peers vouch for now): no first
        start or vouching by a clock within the drift can have happened then, so the value is
        damaged, hand-edited, or was written by a clock that was wrong (see "A start from the
        future" in the module docstring for why replacing it by the peers' time is safe).
        Logged as an error."""
        limit = now_ms + 2 * self.genesis.consensus.time_drift()
        future = max(self.started_ms, self.vouched_ms)
        if future <= limit:
            return False
        log.error(
            "%s: the restore marker says this folder first started or was vouched for at "
            "%d ms, %d ms ahead of the network's time: it cannot be a past start (damaged, "
            "edited, or written by a clock that was wrong). The start is taken as the peers' "
            "time now; the hold goes on from there (marker was %s)",
            self.data_dir,
            future,
            future - now_ms,
            {k: marker.get(k) for k in ("started_ms", "vouched_ms")},
        )
        return True

    # --- the check -----------------------------------------------------------------------

    def judge(self, cert: Certificate, status: Status) -> Verdict:
        """Whether ``cert`` (already verified by the core) says another holder of our key
        signed; ``status`` is the core's snapshot (its record)."""
        n, me = self.signer_at(cert.height)
        if me is None or me not in certificate_signers(cert, n):
            return Verdict.OK
        record = max((status.c_height, status.c_round), self.adopted)
        if (cert.height, cert.round) <= record:
            return Verdict.OK
        if self.boundary is not None and cert.round < self.boundary:
            return Verdict.ADOPT
        return Verdict.HALT if self.enabled else Verdict.OK

    def check(self, cert: Certificate, status: Status, store: Any) -> str | None:
        """Judge ``cert``; adopt it (record raised and synced before this returns, so before
        the block commits) or return why the node must halt (None: go on)."""
        verdict = self.judge(cert, status)
        if verdict is Verdict.OK:
            return None
        if verdict is Verdict.ADOPT:
            if self.holding:
                # Only while holding: the core is not driven then and will be rebuilt from
                # the store. Once it votes again it owns the record (a write here would be
                # overwritten by its next one); its p_round, raised at release, already
                # covers every round before this folder started.
                store.put_safety(SAFETY_KEY, self.raised(store.get_safety(SAFETY_KEY), cert))
            self.adopted = max(self.adopted, (cert.height, cert.round))
            self.adoptions += 1
            log.info(
                "adopted the commit vote of this validator's key in the certificate of block "
                "%d (round %d): signed before this folder was restored",
                cert.height,
                cert.round,
            )
            return None
        record = max((status.c_height, status.c_round), self.adopted)
        if self.boundary is not None:
            return (
                f"the certificate of block {cert.height} (round {cert.round}) carries this "
                f"validator's commit vote from a round after this restored folder started "
                f"(round {self.boundary}), which it did not sign: another instance with "
                "this validator's key is running. Stop it; see double_sign_check in "
                "docs/operations.md"
            )
        return (
            f"the certificate of block {cert.height} (round {cert.round}) carries this "
            f"validator's commit vote, but its own record has signed only up to height "
            f"{record[0]} round {record[1]}: another instance with this validator's key is "
            "running (a copied data folder or validator.key), or this folder was copied "
            "from an older one without `accord node restore`. Stop the other instance; see "
            "double_sign_check in docs/operations.md"
        )

    def raised(self, raw: bytes | None, cert: Certificate) -> bytes:
        """The safety record ``raw`` raised to cover our C vote in ``cert`` (never lowered)."""
        s = SafetyState.decode(raw, self._lock_n) if raw is not None else SafetyState()
        # C votes move up in round (the core's rule 3, on rounds alone): never lower c_round,
        # and keep c_height at the highest height this key is known to have C-voted at.
        if cert.round > s.c_round:
            s.c_round, s.c_hash = cert.round, cert.block_hash
        s.c_height = max(s.c_height, cert.height)
        # The original was at this round or later: nothing of ours below it may be signed.
        s.p_round = max(s.p_round, cert.round)
        return s.encode()

    def _lock_n(self, height: int) -> int:
        """The size of the set a persisted lock of ``height`` was made under."""
        return self.signer_at(height)[0]

    # --- leaving the hold ----------------------------------------------------------------

    def check_clock(
        self,
        header_time_ms: int,
        now_ms: int,
        peer_clocks: Mapping[int, int] | None = None,
        n: int | None = None,
    ) -> str | None:
        """While holding: why this node must not go on, if a certified block's time or the
        peers' clocks show this clock behind the network's by more than the margin allows
        (None: fine, or not enough reports to tell).

        The boundary between the original's rounds and ours comes from this clock. Honest
        validators stamp blocks at most the drift ahead of their own clocks, so a certified
        block stamped further ahead of ours than three drifts means ours is behind, and the
        boundary may lie below rounds the original voted in (review finding: a restored VM
        snapshot 600 ms behind, drift 300 ms, signed a second prepare in its original's
        round). A stalled network makes no fresh block, so peers' clocks are judged too:
        with 2f+1 reports the (f+1)-th lowest is at most an honest clock (``peer_clocks``:
        peer -> its clock now, estimated from its last status)."""
        if not self.holding:
            return None
        limit = 3 * self.timing()[1].time_drift()
        # A stamp may be the drift ahead of its voters' clocks, theirs the drift off ours:
        # beyond that, and a drift of slack for the trip, ours is behind.
        ahead = header_time_ms - now_ms
        what = "a certified block's time"
        f = self._f(n)
        if ahead <= limit and peer_clocks is not None and len(peer_clocks) > 2 * f:
            low = vouched(peer_clocks, f, highest=False)
            assert low is not None
            ahead, what = low - now_ms, f"the clocks of {len(peer_clocks)} peers"
        if ahead <= limit:
            return None
        return (
            f"this restored validator's clock is {ahead} ms behind {what} (more than three "
            f"drifts, {limit} ms): its restore boundary cannot be trusted. Fix the clock (NTP), "
            "remove the data folder's contents and run `accord node restore` again"
        )

    def alone(self, n: int, member: bool) -> str | None:
        """While holding: why this node must stop if the set of the next height (``n``
        validators, this one among them if ``member``) is this validator alone.

        With one validator its commit vote alone is a certificate, so every height the
        original voted at after the backup is committed, and only the original held those
        blocks: no peer of the set can send them, vouch for a clock, or propose the block
        after the boundary that would end the hold (the node waited for it for ever, and
        releasing on the clock alone would sign a second block at a height the original
        committed: a fork of the chain under one key). Nothing this folder can see tells
        how far the original got, so it cannot release safely: it stops and says so."""
        if not self.holding or not member or n != 1:
            return None
        return (
            "this restored folder's validator is the only one in the validator set: the "
            "original may have committed blocks after the backup that no one else holds, and "
            "voting again could sign a second block at one of those heights (a fork). Start "
            "the original data folder if it survives; remove restored.json from the data "
            "folder only if the original never ran after this backup was taken (see the "
            "double-sign check in docs/operations.md)"
        )

    def ends_hold(
        self,
        header_round: int,
        head: int,
        peer_heads: Mapping[int, int],
        peer_clocks: Mapping[int, int],
        now_ms: int,
    ) -> bool:
        """Whether committing a block proposed in ``header_round``, now the head at ``head``,
        ends the hold: that height was still undecided when the original stopped (see the
        module docstring); the block is at least the (f+1)-th highest head peers report
        (the network's newest, so the core restarts at the tip); and the (f+1)-th lowest
        of the peers' clocks is within three drifts of ``now_ms``, which bounds how far
        behind this clock is even when no fresh block exists. Reports only delay: with f
        or fewer of them the node waits. A set of this validator alone never ends the hold
        (:meth:`alone`)."""
        if not self.holding or self.boundary is None or header_round < self.boundary:
            return False
        n = self.signer_at(head + 1)[0]  # the set the next height's votes come from
        f, others = self._f(n), n - 1
        if others == 0:
            return False  # never alone: see alone(), which stops such a node instead
        if not self.start_vouched:
            return False
        newest = vouched(peer_heads, f, highest=True)
        low = vouched(peer_clocks, f, highest=False)
        if newest is None or low is None:
            return False
        return head >= newest and low - now_ms <= 3 * self.timing()[1].time_drift()

    def release(
        self,
        store: Any,
        now_ms: int,
        peer_clocks: Mapping[int, int] | None = None,
        n: int | None = None,
    ) -> int:
        """Close every round the original may have voted in, persist that, then remove the
        marker (in this order: a crash in between holds again at the next start, never the
        reverse). Returns the last closed round. The caller rebuilds its core from the store.

        Closed: every round below the boundary (the original's, by construction), and every
        round up to the drift past the later of this clock and, with 2f+1 ``peer_clocks``,
        their (f+1)-th lowest: between two honest clocks, so liars can neither lower it nor
        raise it (with f+1 reports it could be a liar's clock a year ahead, and the node
        would close a year of rounds)."""
        assert self.data_dir is not None
        raw = store.get_safety(SAFETY_KEY)
        s = SafetyState.decode(raw, self._lock_n) if raw is not None else SafetyState()
        now, f = now_ms, self._f(n)
        if peer_clocks is not None and len(peer_clocks) > 2 * f:
            now = max(now, vouched(peer_clocks, f, highest=False) or now)
        closed = max(s.p_round, self.round_of(now + self.timing()[1].time_drift()))
        if self.boundary is not None:
            closed = max(closed, self.boundary - 1)
        s.p_round = closed
        store.put_safety(SAFETY_KEY, s.encode())
        backup_files.clear_restored_marker(self.data_dir)
        self.holding = False
        log.warning(
            "restored folder caught up (%d certificates adopted): voting again from round %d",
            self.adoptions,
            closed + 1,
        )
        return closed


__all__ = ["DoubleSignGuard", "Verdict", "vouched"]
