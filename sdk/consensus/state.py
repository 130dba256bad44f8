"""The Gosig state machine: events in, actions out.

Rules this file keeps
=====================

1. **No I/O, no clock, no randomness.** The core never opens a socket, reads a clock, starts a
   thread, touches a disk or draws a random number. Time arrives as :class:`Tick`, bytes as
   :class:`MessageReceived`, application answers as :class:`BlockBuilt` /
   :class:`BlockValidated` / :class:`BlockFetched`. Same events in the same order, same actions.
   Gossip peers are drawn from a xorshift generator seeded with the validator's index: a
   deterministic function of the core's own state.
2. **Persist before you speak.** Every vote and every lock is first put into the
   :class:`SafetyState`, and a :class:`Persist` action carrying the whole state precedes, *in the
   same batch*, every action that reveals the vote. The driver MUST complete a ``Persist``
   (durably) before performing any later action of the batch. After a crash the driver passes
   the last persisted state back (``Core(..., safety=SafetyState.decode(bytes))``); the core
   then never signs a second, different vote for a (round, phase) it already voted in.
3. **One P vote per round, one C vote per round, monotone.** P is signed only for a round above
   ``p_round``; C only for a round above ``c_round``; both are persisted as above.
4. **Locks only move up.** At a height, the lock is the P-quorum aggregate of the highest round
   seen; it is replaced only by a P-quorum of a higher round. Moving to the next height (by
   committing) is the only way a lock stops mattering.
5. **C only above every P.** C for (B, r) is signed only while the lock is (B, r) and no round
   above r is closed for P (``p_round <= r``: no P vote, no abstention there). A P-quorum may
   reach a validator long after it voted P in later rounds (late votes, reordered delivery);
   such a validator locks on it but does not commit-vote for it.
6. **Behind your own votes, only catch up.** At a height below one this validator already
   voted or locked at (``p_height``, ``c_height``, the lock's height), it neither locks nor
   votes: it commits there by certificate only. The block store can lag the persisted safety
   state (commits run after the vote that follows them; a crash or a rebuild of the core from
   the store comes back at an older head), and a lock of a later height must not be replaced
   by a quorum of an earlier one, nor be ignored there.
7. **Bad input changes nothing.** Undecodable bytes, bad signatures, bad sortition tickets,
   wrong heights or parents are counted (``Status.stats``) and dropped.
8. **One validator set, only at the heights it is known for.** A core is built for one set
   (``crypto``, ``n``) and one set of parameters (``Params``: governance may change the
   timing too) and decides only heights through ``through`` (:class:`SetKnown`; None:
   every height). It neither votes, leads nor validates at a later height, and refuses every
   certificate and vote of one (counted ``beyond_set``): with another set there, its quorum
   means nothing here, and a set that handed over could otherwise still certify a block its
   successors never saw.

Theory of operation
===================

Rounds come from the local clock: ``round = (now - genesis_time) // round_ms``. Each round has
stage I (proposal) and, for its last ``stage2_ms``, stage II (agreement). A core whose clock
is behind runs it ahead by what f+1 validators' own messages prove about theirs
(``_observe_clock``), and one whose clock is ahead leads at a height committed during its
stage I (``_commit``), so skewed validators still lead their share. With
``Params.skip_empty`` a leader leads only while the driver reports transactions pending
(:class:`TxsPending`).

* **Round start.** The validator signs the sortition message for (height, round, parent); if
  the ticket wins (value below D) it is a potential leader: if locked at this height it
  re-proposes its locked block with the lock's P-quorum as justification, otherwise it asks the
  application for a block (:class:`BuildBlock`) and proposes what comes back.
* **Tickets first (``ticket_wait_ms`` > 0, broadcast mode).** Building a block costs as much as
  executing it, and only the best-ticket proposal gets votes, so a leader first broadcasts its
  ticket (:class:`Ticket`) and waits ``ticket_wait_ms``: if by then a better ticket was
  announced for the round it does not build, unless by the fallback time (half of the rest of
  stage I, up to three quarters when proposals have lately arrived that late) no proposal at
  least as good as its own arrived (a better leader that announced and went silent), in which
  case it builds then. Likewise a validator holds off validating a proposal
  while a better ticket of the round is announced and its proposal has not arrived, at most
  until stage II starts. Tickets are checked like a proposal's and change only who builds and
  when blocks are validated, never votes.
* **Proposals.** A proposal is accepted if its ticket verifies and wins for (height, round,
  our parent), its block extends our head, and (for a re-proposal) its justification is a valid
  P-quorum for that block. The application then checks the block (:class:`ValidateBlock`),
  lazily: only the round's best proposal not known to be invalid (and a re-proposed locked
  block), since no other can get this validator's P vote.
* **Stage II start: prepare.** Take the best-priority (lowest ticket) proposal of the round. If
  the application found it valid and the lock rules allow it, sign P for it. Lock rules: not
  locked at this height, or the candidate is the locked block, or the candidate's justification
  is from a round above the lock's. Otherwise abstain. If no proposal has arrived yet, prepare
  the first acceptable one that arrives before the round ends.
* **Late prepare.** A block that takes longer to build and validate than a round gives (one
  costly transaction suffices) is found valid only after its round ended. A validator that
  has not signed P in that round or a later one still prepares it during the next
  ``LATE_ROUNDS`` rounds (leaders likewise propose a build that ends that late). Votes stay
  monotone (rule 3), so a late vote is exactly what a validator whose clock runs slow would
  sign.
* **P-quorum (2f+1 P votes on B in round r): lock and commit-vote.** Lock on (B, r) if r is
  above the current lock's round, persist, and if r > ``c_round`` and rule 5 allows, sign C
  for B. A lock on a block whose body never arrived fetches the body from a signer of the
  quorum (and validates it: a block's hash covers only its header, so a peer can put other
  transactions under it; a body that fails under a P-quorum is dropped and fetched again,
  never the block). A P-quorum above our lock is never stale, however old its round: it is
  what unlocks validators after a long partition.
* **C-quorum: commit.** Emit :class:`Commit` with the certificate (fetching the block body
  first if it is missing) and move to the next height.
* **Aggregation.** Votes travel as weighted aggregates (:mod:`.aggregate`). With at most
  ``broadcast_max`` validators every vote is broadcast as a singleton and a quorum aggregate is
  broadcast once when it forms. With more validators votes gossip: the aggregate of the block a
  validator prepared (and every C aggregate) is forwarded to ``gossip_fanout`` peers when its
  signer set grows, at most once per ``gossip_interval_ms`` (growth in between is coalesced),
  until it reaches a quorum and once when it does. A validator whose aggregate stalls below a
  quorum pulls: it sends it to one random peer every two intervals, and a peer holding the
  quorum (or having already committed that height) answers with it. Proposals gossip the same
  way, push-pull: a peer that sends us a worse proposal than our best gets our best back.
* **Vote bookkeeping.** Everything held about votes lives in one record per slot
  (:class:`SlotKey`: height, round, phase), with one tally per block voted for in it: the
  merged aggregate, the single signatures and the largest every-count-once aggregate (the
  certificate's raw material), whether its quorum was acted on, and its gossip timers. A
  slot is created with its first block's first verified vote (``_open_tally``) and
  forgotten whole (``_forget_slots``): every height below a commit, and at the current
  height every round more than ``KEEP_ROUNDS`` behind, so live slots stay bounded by the
  rounds kept, whatever the number of heights.
* **Liveness after partitions.** Every ``resend_ms`` the core re-sends its own proposal, its
  latest votes and its lock (the highest P-quorum it knows, which unlocks validators locked on
  older rounds), and re-requests missing blocks. Proposals carry the parent's commit
  certificate so a validator that missed a commit catches up from the next proposal; a
  C-quorum or proposal for a later height makes it fetch blocks (:class:`FetchBlock`).

Validator-set changes (epochs)
==============================

Governance changes the set by committed transactions; one that commits at height h takes
effect at h + 2 at the earliest (:mod:`accord.ledger.schedule`), so once a driver has executed
block h it knows the set of every height through h + 2, whatever block h + 1 holds. It says so
with ``SetKnown(through)``; a core at a height above ``through`` waits (execution lags a commit
by a moment: messages meanwhile are dropped, the resend timer brings them again). When the set
changes at height e + 1 the driver sends ``SetKnown(e, final=True)``; the core commits e and is
then done (``Status.done``). The driver builds the next core for the new set at head e,
passing the same :class:`SafetyState` (its lock, of a decided height, is gone): a validator's
own votes stay monotone across the handoff, rule 6 still holds, and each height is decided by
exactly one set, the one that committed state fixed for it, so the argument below holds
height by height. A certificate is checked against the set of its height; the first block of
an epoch carries its parent's certificate from the old set, which the new set's cores do not
check (catch-up does, against the old set).

Consensus parameters changed by governance hand over the same way: the driver compares the
set and the ``Params`` of each height, so all validators switch at the same height and rounds
line up. Timing is no part of the safety argument (it counts only each validator's own votes,
in order), but rule 3 makes votes monotone in the round number across heights, so round
numbers must never go back: when ``round_ms`` changes the driver passes, as
``genesis_time_ms``, the anchor the ledger fixed from the round of the last block of the old
timing (:meth:`accord.contracts.runtime.Runtime.round_anchor`), so the new rounds continue
the count from a few rounds past that block's instead of restarting it from genesis time.

Safety argument (f < n/3 Byzantine, any message schedule)
=========================================================

Quorums have ``q = n - f`` validators, so two quorums share ``2q - n >= f + 1`` validators, at
least one honest. Nothing below assumes an order in which votes arrive, rounds end or
quorums form: a P-quorum of round r may form at a validator before, during or long after its
rounds r + 1, r + 2, ... (late prepares make "during r + 1" routine; a scheduler can make it
"after r + 5"). Only the order of each honest validator's *own* signatures matters, and rule
2 makes that order survive crashes.

*I1 (one P-quorum per round).* Two P-quorums of round r for different blocks would share an
honest validator that signed P twice in r, which rule 3 forbids. So each round has at most one
P-certified block, whenever its votes arrive.

*I2 (an honest C vote binds every later P vote).* An honest validator v signs C(B, r) only
while locked on (B, r) and with no round above r closed for P (rule 5). So every P vote v
casts in a round above r comes after that lock, under the lock rules, with v's lock on a
round >= r from then on (rule 4). (Without rule 5 this fails: v may have voted P(B', r + 1)
unlocked, then received the round-r quorum, locked and signed C(B, r). The old core did, and
four honest validators forked.)

*I3 (nothing but B is P-certified above a commit).* Suppose B commits at height h with a
C-quorum of round r: at least f + 1 honest signers, each bound as in I2. Among the P-quorums
at height h of rounds above r for blocks other than B, take Q, the first whose signatures all
exist in real time (not the lowest round: with late votes and any delivery order they need
not come in round order). Q shares an honest validator v with the C-quorum. v's P vote in Q
came after its C(B, r) (I2), when v held a lock at height h of a round >= r; rule 6 keeps that
lock through restarts, since v never locks or votes below h again. That lock is a P-quorum
whose signatures all existed before v's vote: for a block other than B above r it would be
a complete quorum before Q, so (with I1 at round r) it is for B. v prepares a block B' != B
only under a justification, a P-quorum for B' from a round above its lock, hence above r,
which v verified before voting: again complete before Q. Contradiction: every P-quorum above
round r at height h is for B.

*I4 (at most one block commits per height).* A C-quorum of round r'' for B'' needs an honest
C signer, which was locked on a P-quorum of r'' for B'' (rule 5). If r'' > r, I3 makes B'' = B;
if r'' < r, I3 applied to B'' makes B = B''; if r'' = r, I1 does. Fetched blocks commit only
with a C-quorum certificate for their header hash, so catch-up adds no other way to commit.

A restart (or the node rebuilding its core from the store) may come back at an older head
than the persisted safety state; rule 6 makes such a validator a pure follower until its
store reaches its own votes, so the argument above, which only counts each honest
validator's signatures in the order it made them, is unchanged.

Liveness is not part of the argument (a round may commit nothing), but every rule above that
restricts votes has its way out: a lock on a body never received fetches it, the highest lock
is accepted however old, locked leaders re-propose with their quorum as justification, and a
validator barred from C by rule 5 locks anyway and commits in a later round's quorum.

The simulator (:mod:`accord.sim`) asserts on every run what the argument rests on and
concludes: no honest validator signs two different votes for one (height, round, phase) (I1's
premise), no honest validator signs C for a round below one it closed for P (rule 5, I2), no
two honest validators commit different blocks at a height (I4), and every commit certificate
verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from accord.base import encoding
from accord.base.errors import AccordError, DecodeError, GenesisError
from accord.base.types import Block, Certificate, vote_message
from accord.consensus.aggregate import (
    PHASE_C,
    PHASE_P,
    Aggregate,
    certificate_counts,
    verify_certificate,
)
from accord.consensus.crypto import Crypto, Signer, sortition_value
from accord.consensus.messages import Proposal, ProposalCache, Ticket, TxCache, decode_message
from accord.consensus.sortition import sortition_message, sortition_seed, threshold

SAFETY_KEY = b"consensus/safety"
KEEP_ROUNDS = 8  # vote slots of older rounds (at the current height) are forgotten
LATE_ROUNDS = 2
"""A block may get P votes this many rounds after its own (late prepare). In the simulator,
with every build and validation taking 0.8 of a round, 6-7 of 20 rounds commit with 2 and
2 with 1 (none without late prepares)."""


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """Local time advanced to ``now_ms`` (milliseconds, same epoch as genesis_time_ms)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Raw bytes from validator ``from_index`` (the transport authenticates the peer)."""

    from_index: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class BlockBuilt:
    """The application's answer to :class:`BuildBlock`."""

    block: Block


@dataclass(frozen=True, slots=True)
class BlockValidated:
    """The application's answer to :class:`ValidateBlock`."""

    block_hash: bytes
    ok: bool


@dataclass(frozen=True, slots=True)
class BlockFetched:
    """A block obtained from a peer; ``certificate`` is its commit certificate if the peer
    had committed it (then the core may commit it after checking the certificate)."""

    block: Block
    certificate: Certificate | None = None


@dataclass(frozen=True, slots=True)
class TxsPending:
    """Whether the driver's mempool holds transactions (sent when that changes). Only read
    with ``Params.skip_empty``: a leader then proposes only while it has transactions."""

    pending: bool


@dataclass(frozen=True, slots=True)
class SetKnown:
    """The driver has executed enough to know that this core's validator set decides every
    height through ``through`` (rule 8); with ``final``, the set changes after it and this core
    stops there. Never lowers what it said before (a lower ``through`` is ignored)."""

    through: int
    final: bool = False


Event = Tick | MessageReceived | BlockBuilt | BlockValidated | BlockFetched | TxsPending | SetKnown


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildBlock:
    height: int
    round: int
    parent_hash: bytes
    proposer_index: int
    sortition: bytes


@dataclass(frozen=True, slots=True)
class CancelBuild:
    """Stop the build asked for by ``BuildBlock(height, round, ...)`` if it still runs: a
    better ticket's proposal for that round is here, so the block could not win and building
    it only delays validating the better one. Advisory: a driver may ignore it, and a
    :class:`BlockBuilt` that comes anyway is handled as before (proposed, it cannot win).
    Emitted at most once per build, and only while its ``BlockBuilt`` has not come."""

    height: int
    round: int


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    block: Block


@dataclass(frozen=True, slots=True)
class Persist:
    """Write ``value`` under ``key`` durably BEFORE performing any later action of the batch."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``payload`` to every other validator."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Send:
    to_index: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """``block`` is final; store it with ``certificate`` and execute it."""

    block: Block
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class FetchBlock:
    """Ask validator ``from_index`` for the block (and its commit certificate if it has one);
    answer with :class:`BlockFetched`. The core re-asks on its resend timer if nothing comes."""

    block_hash: bytes
    from_index: int


Action = BuildBlock | CancelBuild | ValidateBlock | Persist | Broadcast | Send | Commit | FetchBlock


# --- parameters and safety state -----------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """What the core needs from genesis (plus two transport knobs)."""

    chain_id: str
    n: int
    genesis_time_ms: int = 0
    round_ms: int = 1000
    stage2_ms: int = 500
    expected_leaders: float = 3.0
    gossip_fanout: int = 3
    max_block_bytes: int = 8 * 1024 * 1024
    broadcast_max: int = 64
    resend_ms: int = 0  # 0: round_ms // 4
    gossip_interval_ms: int = 0  # gossip mode: at most one forward of an aggregate per interval
    ticket_wait_ms: int = (
        0  # 0: leaders build at once; else announce tickets and wait (broadcast mode)
    )
    skip_empty: bool = False  # leaders propose only with transactions pending (TxsPending)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        return self.n - self.f

    @classmethod
    def from_genesis(cls, genesis: Any, **overrides: Any) -> Params:
        """Parameters of a genesis whose proofs of possession verify (else GenesisError)."""
        genesis.check()
        return cls.of(genesis, genesis.consensus, **overrides)

    @classmethod
    def of(cls, genesis: Any, c: Any, **overrides: Any) -> Params:
        """Parameters of ``genesis``'s chain with the consensus parameters ``c`` (genesis's,
        or those governance put in force at a height: the driver builds a core per set and
        parameters, rule 8), for a set of ``overrides["n"]`` validators (genesis's size if
        not given). Proofs of possession are not checked here (see :meth:`from_genesis`)."""
        if c.stage2_ms >= c.round_ms:
            raise GenesisError("stage2_ms must be shorter than round_ms")
        kw: dict[str, Any] = dict(
            chain_id=genesis.chain_id,
            n=genesis.n,
            genesis_time_ms=genesis.genesis_time_ms,
            round_ms=c.round_ms,
            stage2_ms=c.stage2_ms,
            expected_leaders=c.expected_leaders,
            gossip_fanout=c.gossip_fanout,
            max_block_bytes=c.max_block_bytes,
            ticket_wait_ms=c.ticket_wait_ms,
            skip_empty=c.skip_empty_blocks,
        )
        kw.update(overrides)
        return cls(**kw)


@dataclass
class SafetyState:
    """What must survive a crash: the last vote of each phase and the lock."""

    p_round: int = -1
    p_height: int = 0
    p_hash: bytes = b""
    c_round: int = -1
    c_height: int = 0
    c_hash: bytes = b""
    lock: Aggregate | None = None
    lock_block: Block | None = None

    def encode(self) -> bytes:
        # The locked block goes in as its cached canonical bytes: the same encoding as
        # walking it, without re-checking thousands of transactions on every vote.
        return encoding.encode_encoded_list(
            [
                *(
                    encoding.encode(x)
                    for x in (
                        self.p_round,
                        self.p_height,
                        self.p_hash,
                        self.c_round,
                        self.c_height,
                        self.c_hash,
                        None if self.lock is None else self.lock.to_obj(),
                    )
                ),
                encoding.encode(None) if self.lock_block is None else self.lock_block.encode(),
            ]
        )

    @classmethod
    def decode(cls, data: bytes, n: int | Callable[[int], int]) -> SafetyState:
        """``n``: the validator count the lock's aggregate was made under, or a function of
        the lock's height giving it (the set may have changed since, rule 8)."""
        f = encoding.decode(data)
        if type(f) is not list or len(f) != 8:
            raise DecodeError("not a safety state")
        if callable(n):
            lock = f[6]
            if lock is None:
                n = 1
            elif type(lock) is list and len(lock) > 1 and type(lock[1]) is int and lock[1] >= 0:
                n = n(lock[1])
            else:
                raise DecodeError("the safety state's lock is malformed")
        return cls(
            int(f[0]),
            int(f[1]),
            bytes(f[2]),
            int(f[3]),
            int(f[4]),
            bytes(f[5]),
            None if f[6] is None else Aggregate.from_obj(f[6], n),
            None if f[7] is None else Block.from_obj(f[7]),
        )


@dataclass
class _WaitingBuild:
    """A leader's build held back until ``until`` (tickets first)."""

    height: int
    round: int
    ticket: bytes
    value: int
    until: int
    deferred: bool = False  # waiting past ``until`` for a better announced leader


class SlotKey(NamedTuple):
    """Where an honest validator signs at most one block (rule 3). Ordered as a tuple, so
    sorting slot keys (then block hashes) is sorting by height, round, phase, block."""

    height: int
    round: int
    phase: int


@dataclass(slots=True)
class _Tally:
    """Everything the core holds about the votes for one block in one slot."""

    agg: Aggregate  # every verified aggregate for the block, merged (a count may exceed 1)
    # Each validator's own signature, from singleton votes: a quorum of them sums into a
    # certificate with every count 1 when the merged aggregate has weights above 1.
    singles: dict[int, bytes] = field(default_factory=dict)
    # The largest aggregate in which every signer counts once (joining disjoint ones): it
    # becomes the stored certificate as a bitmap plus one signature.
    pure: Aggregate | None = None
    quorum_seen: bool = False  # the merged aggregate reached a quorum (acted on once)
    # Gossip mode: when the aggregate was last forwarded and with how many signers (None:
    # never), and when to look at it again (forward growth, or pull), if at all.
    last_sent: tuple[int, int] | None = None
    due: int | None = None


@dataclass(slots=True)
class _Slot:
    """The votes of one (height, round, phase), per block hash in arrival order.

    ``signers`` is the union of the signers each block came in with. A block enters only with
    a signer the slot has not seen (``Core._on_aggregate_verified``), so a slot holds at most
    n blocks and a Byzantine validator's junk votes cost it its own place in the slot, never
    an honest one's. A slot is created with its first block (``Core._open_tally``) and
    forgotten whole with everything its blocks hold (``Core._forget_slots``): no record of a
    block outlives its slot, and no slot stays without a block."""

    signers: int = 0
    tallies: dict[bytes, _Tally] = field(default_factory=dict)


@dataclass
class _Candidate:
    value: int
    proposal: Proposal

    @property
    def order(self) -> tuple[int, bytes]:
        return (self.value, self.proposal.block.hash)


@dataclass
class Stats:
    garbage: int = 0
    bad_signature: int = 0
    bad_proposal: int = 0
    stale: int = 0
    received: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LockStatus:
    """The lock that binds at the current height, as :class:`Status` reports it."""

    height: int
    round: int
    block_hash: bytes
    have_block: bool  # whether the locked block's body is held (else it is being fetched)


@dataclass(frozen=True, slots=True)
class Status:
    """What a driver may know about a core, as one immutable snapshot (:meth:`Core.status`).

    Drivers (the node, the simulator, tests) read this instead of the core's fields, so the
    boundary runs one way: events in, actions and snapshots out, and nothing a driver holds
    can change the core. ``stats`` is a fresh plain dict: the fixed counters
    (``garbage``, ``bad_signature``, ``bad_proposal``, ``stale``, ``received``) and every
    named extra counter (``abstain``, ``late_prepare``, ...)."""

    height: int  # the height being decided
    round: int  # the current round (-1 before genesis time)
    head_hash: bytes  # the last committed block's hash
    head_cert: Certificate | None  # its commit certificate, if any
    seed: bytes  # this height's sortition seed
    now_ms: int  # the driver's clock as the last Tick gave it (-1: no tick yet)
    skew_ms: int  # how far the core runs its clock ahead of the driver's
    next_wakeup_ms: int  # see Core.next_wakeup_ms
    txs_pending: bool  # the last TxsPending the driver sent
    p_round: int  # the last round closed for P (voted or abstained), from the safety state
    p_height: int
    p_hash: bytes
    c_round: int  # the last round with a C vote
    c_height: int
    c_hash: bytes
    lock: LockStatus | None
    stats: dict[str, int]
    through: int | None = None  # the last height this core's set is known to decide (rule 8)
    done: bool = False  # the set handed over after the last height: build the next core


# --- the machine ---------------------------------------------------------------------------


class Core:
    """One validator's Gosig state machine. Drive it with :meth:`handle`.

    ``head`` is the last committed (height, block hash) from the node's store (height 0 is
    genesis); ``head_cert`` its certificate if any. ``safety`` is the last persisted
    :class:`SafetyState` (None on first start).

    The boundary runs one way: drivers send events to :meth:`handle`, perform the actions it
    returns, and read :meth:`status` (a frozen :class:`Status`). Every field that changes is
    private, so no driver can read a half-updated value or write one behind the rules above;
    what stays public (``p``, ``signer``, ``index``, ``crypto``, ``n``, ``quorum``, ``d``,
    ...) is fixed at construction.
    """

    def __init__(
        self,
        params: Params,
        signer: Signer,
        crypto: Crypto,
        *,
        head: tuple[int, bytes],
        head_cert: Certificate | None = None,
        head_sortition: bytes = b"",
        safety: SafetyState | None = None,
        decode_cache: dict[bytes, Any] | None = None,
        tx_cache: TxCache | None = None,
        through: int | None = None,
    ) -> None:
        if params.stage2_ms >= params.round_ms or params.n < 1:
            raise GenesisError("bad consensus parameters")
        if crypto.n != params.n or not 0 <= signer.index < params.n:
            raise GenesisError("crypto, signer and validator set disagree")
        self.p = params
        self.signer = signer
        self.index = signer.index
        self.crypto = crypto
        self.n = params.n
        self.quorum = params.quorum
        self.gossip = params.n > params.broadcast_max
        self.d = threshold(params.n, params.expected_leaders)
        self.resend_ms = params.resend_ms or max(1, params.round_ms // 4)
        self.max_msg = params.max_block_bytes + 64 * 1024 + 8 * params.n

        self._height = head[0] + 1  # the height being decided
        self._head_hash = head[1]
        self._seed = sortition_seed(head[1], head_sortition)  # this height's sortition seed
        self._head_cert = head_cert
        self._safety = safety if safety is not None else SafetyState()
        if through is not None and through < head[0]:
            raise GenesisError("a core's set must be known for a height above its head")
        self._through = through  # rule 8; None: this set decides every height
        self._final = False

        self._now = -1  # the core's clock: the driver's plus ``skew_ms`` (see _observe_clock)
        self._raw_now = -1  # the driver's clock, as the last Tick gave it
        self._skew_ms = 0
        # Per peer: (round of the observation, how far ahead of our clock that peer's clock at
        # least was, in ms), from the earliest moment its own messages could have been sent.
        self._leads: dict[int, tuple[int, int]] = {}
        self._txs_pending = False
        self._round = -1
        self._stage2_round = -1
        self._next_resend = 0
        self._prng = (
            self.index * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
        ) & 0xFFFFFFFFFFFFFFFF or 1

        self._blocks: dict[bytes, Block] = {}
        if self._safety.lock_block is not None:
            self._blocks[self._safety.lock_block.hash] = self._safety.lock_block
        self._valid: dict[bytes, bool | None] = {}
        self._cands: dict[int, dict[bytes, _Candidate]] = {}
        # All vote bookkeeping, one record per (height, round, phase) in creation order (see
        # _Slot): aggregates, single signatures, pure aggregates and gossip timers per block.
        self._slots: dict[SlotKey, _Slot] = {}
        self._pending_commit: dict[bytes, Certificate] = {}
        self._future: dict[int, tuple[Block, Certificate]] = {}
        self._fetch_from: dict[bytes, int] = {}
        self._led: set[tuple[int, int]] = set()
        self._my_proposal: Proposal | None = None
        # Tickets first (see the theory of operation): the best ticket value announced per
        # round at this height, and our own build while it waits.
        self._tickets: dict[int, int] = {}
        self._ticket_by: dict[int, int] = {}  # who announced the best ticket of each round
        # Leaders that announced the best ticket of a round and never delivered its proposal
        # (_judge_announcements): their tickets are not waited for until the given round.
        self._silent_until: dict[int, int] = {}
        self._silent_count: dict[int, int] = {}
        self._waiting: _WaitingBuild | None = None
        self._lag_ms = 0  # how late into a round fresh proposals arrive (_note_proposal_lag)
        # How long the application takes to build and to validate a block, as this core saw
        # it (from the request to the answer, in its own clock): the fallback of tickets
        # first must leave that much of the round (_fallback_ms).
        self._build_ms = 0
        self._validate_ms = 0
        self._hop_ms = 0  # how late into their round verified tickets arrive: one message's trip
        self._build_started: tuple[int, int, int] | None = None
        # The build asked for and not answered yet: (height, round, our ticket value), until
        # a better proposal of that round makes us emit CancelBuild for it (_cancel_if_beaten).
        self._pending_build: tuple[int, int, int] | None = None
        self._validate_started: dict[bytes, int] = {}
        self._stats = Stats()
        self._out: list[Action] = []
        # Optional cache of decoded messages shared by many cores in one process (the
        # simulator): decoding is a pure function of the bytes and decoded messages are never
        # mutated, so sharing them changes no result. Nodes leave it None.
        self._decode_cache = decode_cache
        # Without a shared cache, recent proposals are still decoded once each: validators
        # re-send their proposal during the round and a block holds thousands of transactions.
        self._proposals = ProposalCache() if decode_cache is None else None
        # Decoded transactions by hash (messages.TxCache): a proposal's are taken from there
        # instead of being decoded again. A pure lookup: the core never learns what keeps
        # them, and the decoded proposal is the same with or without it.
        self._tx_cache = tx_cache
        self._head_agg: Aggregate | None = None  # the C-quorum of our last commit, for laggards
        self._helped: set[int] = set()

    @classmethod
    def from_genesis(
        cls, genesis: Any, signer: Signer, crypto: Crypto | None = None, **kw: Any
    ) -> Core:
        """Build a core for a genesis; refuses one whose proofs of possession fail."""
        from accord.consensus.crypto import BlsCrypto

        params = Params.from_genesis(genesis, **kw.pop("overrides", {}))
        return cls(
            params, signer, crypto or BlsCrypto(genesis.validator_keys(), checked=True), **kw
        )

    # --- public ------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return the actions to perform, in order (see rule 2)."""
        self._out = []
        if isinstance(event, SetKnown):
            self._on_set_known(event.through, event.final)
        elif self._beyond(self._height):
            self._wait_for_set(event)
        elif isinstance(event, MessageReceived):
            self._on_message(event.from_index, event.payload)
        elif isinstance(event, Tick):
            self._on_tick(event.now_ms)
        elif isinstance(event, BlockValidated):
            self._on_validated(event.block_hash, event.ok)
        elif isinstance(event, BlockBuilt):
            self._on_built(event.block)
        elif isinstance(event, BlockFetched):
            self._on_fetched(event.block, event.certificate)
        elif isinstance(event, TxsPending):
            self._on_txs_pending(event.pending)
        out, self._out = self._out, []
        return out

    def status(self) -> Status:
        """A snapshot of what drivers read (see :class:`Status`)."""
        s, st, lk = self._safety, self._stats, self._lock
        return Status(
            height=self._height,
            round=self._round,
            head_hash=self._head_hash,
            head_cert=self._head_cert,
            seed=self._seed,
            now_ms=self._raw_now,
            skew_ms=self._skew_ms,
            next_wakeup_ms=self.next_wakeup_ms(),
            txs_pending=self._txs_pending,
            p_round=s.p_round,
            p_height=s.p_height,
            p_hash=s.p_hash,
            c_round=s.c_round,
            c_height=s.c_height,
            c_hash=s.c_hash,
            lock=None
            if lk is None
            else LockStatus(lk.height, lk.round, lk.block_hash, lk.block_hash in self._blocks),
            through=self._through,
            done=self._final and self._beyond(self._height),
            stats={
                "garbage": st.garbage,
                "bad_signature": st.bad_signature,
                "bad_proposal": st.bad_proposal,
                "stale": st.stale,
                "received": st.received,
                **st.extra,
            },
        )

    # Read-only queries kept beside :meth:`status` where a snapshot would copy too much:
    # the simulator serves fetches from a core's held blocks and stores its locked block by
    # reference (a megabyte block, thousands of validators), and Byzantine strategies pick
    # a candidate of a round to vote against. None of them returns anything mutable.

    def block(self, block_hash: bytes) -> Block | None:
        """A block (proposal or fetched body) held at the current height, if any."""
        return self._blocks.get(block_hash)

    def locked_block(self) -> Block | None:
        """The locked block as the safety state holds it (what ``Persist`` encodes last)."""
        return self._safety.lock_block

    def candidate_hashes(self, round: int) -> list[bytes]:
        """Hashes of the proposals held for ``round`` at this height, in arrival order."""
        return list(self._cands.get(round, {}))

    def next_wakeup_ms(self) -> int:
        """The local time at which the next :class:`Tick` matters (drivers may tick more often),
        on the driver's clock (the core's own runs ``skew_ms`` ahead of it)."""
        return self._next_wakeup() - self._skew_ms

    def _next_wakeup(self) -> int:
        p = self.p
        if self._now < p.genesis_time_ms:
            return p.genesis_time_ms
        start = p.genesis_time_ms + self._round * p.round_ms
        stage2 = start + p.round_ms - p.stage2_ms
        nxt = start + p.round_ms
        if self._stage2_round < self._round:
            nxt = min(nxt, stage2)
        due = self._earliest_due()
        if due is not None:
            nxt = min(nxt, due)
        if self._waiting is not None:
            nxt = min(nxt, self._waiting.until)
        return min(nxt, self._next_resend)

    # --- validator sets (rule 8) -------------------------------------------------------

    def _beyond(self, height: int) -> bool:
        return self._through is not None and height > self._through

    def _count(self, name: str) -> None:
        self._stats.extra[name] = self._stats.extra.get(name, 0) + 1

    def _on_set_known(self, through: int, final: bool) -> None:
        if self._through is None or self._final:
            return  # unbounded from the start, or already told where the set ends
        if through < self._through:
            return
        waited = self._beyond(self._height)
        self._through, self._final = through, final
        if waited and not self._beyond(self._height):
            self._lead_if_stage1()  # the height it waited at is ours now

    def _wait_for_set(self, event: Event) -> None:
        """At a height whose set is not known yet: keep the clock and the mempool flag,
        drop the rest (peers re-send; a later set's votes mean nothing to this one)."""
        if isinstance(event, Tick):
            self._raw_now = max(self._raw_now, event.now_ms)
        elif isinstance(event, TxsPending):
            self._txs_pending = event.pending
        elif isinstance(event, MessageReceived | BlockFetched):
            self._count("beyond_set")

    def round_of(self, now_ms: int) -> int:
        return (
            (now_ms - self.p.genesis_time_ms) // self.p.round_ms
            if now_ms >= self.p.genesis_time_ms
            else -1
        )

    def stage2_start_ms(self, round: int) -> int:
        return self.p.genesis_time_ms + round * self.p.round_ms + self.p.round_ms - self.p.stage2_ms

    @property
    def _lock(self) -> Aggregate | None:
        """The lock that matters at the current height (None if unlocked)."""
        lk = self._safety.lock
        return lk if lk is not None and lk.height == self._height else None

    # --- time --------------------------------------------------------------------------

    def _on_tick(self, raw: int) -> None:
        self._raw_now = max(self._raw_now, raw)
        now = self._raw_now + self._skew_ms
        if now <= self._now:
            return
        self._now = now
        r = self.round_of(now)
        if r < 0:
            return
        if r > self._round:
            self._enter_round(r)
        if self._waiting is not None:
            self._check_waiting()
        if now >= self.stage2_start_ms(r) and self._stage2_round < r:
            self._stage2_round = r
            self._request_validation(r)  # a validation held for a better leader is due now
            self._try_prepare()
        if self.gossip:  # the only mode with per-block timers (_forward)
            self._flush(now)
        if now >= self._next_resend:
            self._next_resend = now + self.resend_ms
            self._resend()

    def _on_txs_pending(self, pending: bool) -> None:
        self._txs_pending = pending
        if pending:
            self._lead_if_stage1()

    def _lead_if_stage1(self) -> None:
        """Lead in the current round if it is still in stage I (a proposal made in stage II
        reaches validators after they prepared): after transactions arrive on an idle chain,
        or after a commit that came during the round."""
        if self._round >= 0 and self._now < self.stage2_start_ms(self._round):
            self._maybe_lead()

    def _observe_clock(self, frm: int, msg: Any) -> None:
        """Learn how far peers' clocks are ahead of ours, and run ours ahead to match.

        Rounds come from each validator's clock. A validator whose clock is behind the
        others' by more than stage I starts every round after the others have prepared, so
        its proposals come too late to be voted for: with +-0.8 s of skew and 1 s rounds one
        validator led none of 40 blocks. A peer's own ticket or proposal of round r can only
        have been sent once that peer's clock reached the start of r, and its own P vote of r
        once it reached r's stage II: so ``that moment - our clock on arrival`` is a lower
        bound on how far the peer is ahead (the message's trip makes it an underestimate,
        so peers on the same clock count as behind and nothing moves). The skew applied is
        the (f+1)-th largest of these bounds over all validators (ourselves at 0): at least
        one honest validator's clock is that far ahead, so f Byzantine validators cannot
        drag us past every honest clock. Only forward: a validator whose clock is ahead is
        handled by leading after a late commit (_commit). A pure function of the events
        (arrival times are Tick values), so the core stays deterministic; safety never
        depended on clocks (see the argument above)."""
        if frm < 0 or frm == self.index or frm >= self.n or self._raw_now < 0:
            return
        p = self.p
        if isinstance(msg, Ticket):
            if msg.proposer != frm:
                return
            sent = p.genesis_time_ms + msg.round * p.round_ms
        elif isinstance(msg, Aggregate):
            if msg.phase != PHASE_P or msg.mask != 1 << frm or msg.signers != 1:
                return
            sent = self.stage2_start_ms(msg.round)
        else:
            if msg.proposer != frm:
                return
            sent = p.genesis_time_ms + msg.round * p.round_ms
        lead = min(sent - self._raw_now, 2 * p.round_ms)  # an honest peer is never rounds ahead
        old = self._leads.get(frm)
        if old is not None and lead < old[1] and old[0] >= self._round - 16:
            return  # the largest bound of the last 16 rounds stands
        self._leads[frm] = (self._round, lead)
        leads = sorted([0, *(v for _, v in self._leads.values())], reverse=True)
        skew = max(0, leads[p.f]) if len(leads) > p.f else 0
        if skew != self._skew_ms:
            self._skew_ms = skew
            self._stats.extra["clock_adjust"] = self._stats.extra.get("clock_adjust", 0) + 1

    def _flush(self, now: int) -> None:
        """Gossip-mode timers: forward aggregates that grew while rate-limited, and pull for
        those still short of a quorum by sending them to one random peer (a peer that holds a
        quorum answers with it), so that no validator waits for a resend to catch up."""
        due = sorted(
            (sk, bh)
            for sk, slot in self._slots.items()
            for bh, t in slot.tallies.items()
            if t.due is not None and t.due <= now
        )
        for sk, bh in due:
            t = self._slots[sk].tallies[bh]
            t.due = None
            agg = t.agg
            if agg.signers > (0 if t.last_sent is None else t.last_sent[1]):
                self._send_agg(t, -1)
            elif (
                agg.signers < self.quorum
                and sk.round >= self._round - 1
                and self._worth_pulling(sk, bh)
            ):
                self._out.append(Send(self._random_peer(), agg.encode()))
                t.due = now + 2 * max(1, self.p.gossip_interval_ms)

    def _enter_round(self, r: int) -> None:
        self._round = r
        self._my_proposal = None
        for old in [k for k in self._cands if k < r - LATE_ROUNDS]:
            del self._cands[old]
        self._judge_announcements(r - 1)
        for old in [k for k in self._tickets if k < r - 1]:
            del self._tickets[old]
            self._ticket_by.pop(old, None)
        if sum(len(slot.tallies) for slot in self._slots.values()) > 4:
            self._forget_slots(lambda sk: sk.round < r - KEEP_ROUNDS)
        self._maybe_lead()

    def _maybe_lead(self) -> None:
        key = (self._height, self._round)
        if key in self._led:
            return
        if self.p.skip_empty and not self._txs_pending and self._lock is None:
            # Nothing to propose: stand back (idle chains make no empty blocks). Not marked
            # as led, so transactions arriving in stage I still get this round's ticket. A
            # locked validator always leads: its re-proposal is what commits the lock.
            return
        self._led.add(key)
        ticket = self.signer.sign(
            sortition_message(self.p.chain_id, self._height, self._round, self._seed)
        )
        if sortition_value(ticket) >= self.d:
            return
        lock = self._lock
        if lock is not None and lock.block_hash in self._blocks:
            prop = Proposal(
                self._round,
                self.index,
                ticket,
                self._blocks[lock.block_hash],
                lock.copy(),
                self._head_cert,
            )
            self._stats.extra["repropose"] = self._stats.extra.get("repropose", 0) + 1
            self._propose(prop)
        elif self.p.ticket_wait_ms > 0 and not self.gossip:
            value = sortition_value(ticket)
            self._out.append(
                Broadcast(Ticket(self._height, self._round, self.index, ticket).encode())
            )
            self._note_ticket(self._round, value, self.index)
            until = min(self._now + self.p.ticket_wait_ms, self.stage2_start_ms(self._round))
            self._waiting = _WaitingBuild(self._height, self._round, ticket, value, until)
        else:
            self._build(self._height, self._round, ticket)

    def _build(self, height: int, r: int, ticket: bytes) -> None:
        self._build_started = (height, r, self._now)
        self._pending_build = (height, r, sortition_value(ticket))
        self._out.append(BuildBlock(height, r, self._head_hash, self.index, ticket))
        best = self._best(r)
        if best is not None:  # a proposal of the round (one early, say) may already beat us
            self._cancel_if_beaten(r, best.value)

    def _cancel_if_beaten(self, r: int, value: int) -> None:
        """Emit :class:`CancelBuild` for our pending build of round ``r`` if a proposal with
        ticket ``value`` beats its ticket: only the best-ticket proposal gets votes, so the
        block could not win (as ``_check_waiting`` reasons for a build not yet asked for).
        The driver owned this decision before (it polled the best ticket after every
        message); now the core says it once, and what is voted for never depends on it."""
        pb = self._pending_build
        if pb is not None and (pb[0], pb[1]) == (self._height, r) and value < pb[2]:
            self._pending_build = None
            self._out.append(CancelBuild(pb[0], pb[1]))

    def _validate(self, block: Block) -> None:
        self._validate_started[block.hash] = self._now
        self._out.append(ValidateBlock(block))

    @staticmethod
    def _track(old: int, sample: int) -> int:
        """A duration estimate: up at once, down slowly (a slow block is what must fit)."""
        return sample if sample >= old else (7 * old + sample) // 8

    def _note_ticket(self, r: int, value: int, proposer: int) -> None:
        best = self._tickets.get(r)
        if best is None or value < best:
            self._tickets[r] = value
            self._ticket_by[r] = proposer

    def _judge_announcements(self, r: int) -> None:
        """Round ``r`` ended at this height: if the leader that announced its best ticket
        never delivered a proposal, stop waiting for that leader's tickets for a while (4
        rounds, doubling with each repeat, at most 256). A leader that announces and goes
        silent (Byzantine, or cut off) otherwise makes every other leader of the round stand
        back until the fallback, which with slow blocks is too late to commit; now it can
        cost a round once, then seldom. Distrust only changes who builds and when, never a
        vote, so a wrongly distrusted honest leader costs some wasted builds at most."""
        who = self._ticket_by.get(r)
        if who is None or who == self.index:
            return
        if any(c.proposal.proposer == who for c in self._cands.get(r, {}).values()):
            return
        count = self._silent_count.get(who, 0) + 1
        self._silent_count[who] = count
        self._silent_until[who] = r + 1 + min(4 << (count - 1), 256)
        self._stats.extra["silent_leader"] = self._stats.extra.get("silent_leader", 0) + 1

    def _note_proposal_lag(self, lag_ms: int) -> None:
        """Track how late into a round fresh proposals arrive here (they are built after the
        round starts, so this is mostly build time): up at once, down slowly. A function of
        the events seen, like everything else in the core."""
        if lag_ms >= self._lag_ms:
            self._lag_ms = lag_ms
        else:
            self._lag_ms = (7 * self._lag_ms + lag_ms) // 8

    def _fallback_ms(self, r: int, until: int) -> int:
        """When a leader that stood back for a better announced ticket builds after all.

        Half of what is left of stage I after the ticket wait, or later when proposals have
        lately been arriving later than that (the better leader's build is slow under load:
        a fallback just before its proposal lands makes every other leader build too), but
        no later than three quarters of it, and no later than leaves time for our own
        build (as long as builds lately took here) and two message trips before stage II,
        down to half of it: when the better leader went silent our block must be there when
        stage II starts, or validators prepare whatever they hold and split their votes. The
        old fallback ignored build time and cost the round whenever a leader announced and
        went silent (19.8 -> 13.8 heights in 20 rounds with 300 ms blocks). Earlier than
        half would make every leader build whenever blocks are slow; leaders that went
        silent are not waited for at all after their first time (_judge_announcements)."""
        stage2 = self.stage2_start_ms(r)
        half = until + (stage2 - until) // 2
        late = until + 3 * (stage2 - until) // 4
        expected = self.p.genesis_time_ms + r * self.p.round_ms + self._lag_ms
        deadline = stage2 - 2 * self._hop_ms - self._build_ms
        return min(late, max(half, expected), max(half, deadline))

    def _check_waiting(self) -> None:
        """Build the held-back block once its wait is over, unless a better leader of the
        round announced itself. That leader gets until the fallback time (``_fallback_ms``:
        half of what is left of stage I, later when proposals have been arriving late) to
        deliver: a proposal at least as good as ours cancels our build; otherwise we build
        then. On two shared cores under load a fixed half-way fallback came a few
        milliseconds before the better leader's proposal, so every other leader built too
        and the round missed its commit."""
        w = self._waiting
        if w is None:
            return
        if (w.height, w.round) != (self._height, self._round):
            self._waiting = None  # the height or round moved on: the block would be stale
            return
        best = self._best(w.round)
        if best is not None and best.value < w.value:
            self._waiting = None  # a better proposal is here: ours could not win
            self._stats.extra["build_skipped"] = self._stats.extra.get("build_skipped", 0) + 1
            return
        if self._now < w.until:
            return
        if self._tickets.get(w.round, w.value) < w.value and not w.deferred:
            fallback = self._fallback_ms(w.round, w.until)
            if self._now < fallback:
                w.until, w.deferred = fallback, True  # a better leader announced itself
                return
        self._waiting = None
        self._build(w.height, w.round, w.ticket)

    def _on_ticket(self, t: Ticket) -> None:
        if (
            t.height != self._height
            or not self._round - 1 <= t.round <= self._round + 1
            or t.proposer == self.index
        ):
            self._stats.stale += 1
            return
        if self._silent_until.get(t.proposer, -1) > t.round:
            self._stats.extra["ticket_ignored"] = self._stats.extra.get("ticket_ignored", 0) + 1
            return  # it announced and went silent lately: do not stand back for it
        value = sortition_value(t.sortition)
        if value >= self.d:
            self._stats.bad_proposal += 1
            return
        best = self._tickets.get(t.round)
        if best is not None and value >= best:
            return  # not better than what we know: no need to check the signature
        msg = sortition_message(self.p.chain_id, self._height, t.round, self._seed)
        if not self.crypto.verify(t.proposer, msg, t.sortition):
            self._stats.bad_signature += 1
            return
        if t.round == self._round:  # announced at its round's start: the lag is one trip
            self._hop_ms = self._track(
                self._hop_ms, self._now - self.p.genesis_time_ms - t.round * self.p.round_ms
            )
        self._note_ticket(t.round, value, t.proposer)

    def _on_built(self, block: Block) -> None:
        h = block.header
        started = self._build_started
        if started is not None and started[:2] == (
            h.height,
            h.round,
        ):  # stale or not: it took this long
            self._build_ms = self._track(self._build_ms, self._now - started[2])
            self._build_started = None
        pb = self._pending_build
        if pb is not None and (pb[0], pb[1]) == (h.height, h.round):
            self._pending_build = None
        if (
            h.height != self._height
            or not self._round - LATE_ROUNDS <= h.round <= self._round
            or h.proposer != self.index
            or h.parent_hash != self._head_hash
        ):
            # built too late (height moved on, or more than LATE_ROUNDS late)
            self._stats.stale += 1
            return
        self._valid[block.hash] = True  # the application executed it while building
        # A build that ended in a later round is still proposed: it can get late P votes.
        self._propose(Proposal(h.round, self.index, h.sortition, block, None, self._head_cert))

    def _propose(self, prop: Proposal) -> None:
        self._my_proposal = prop
        self._add_candidate(prop, sortition_value(prop.sortition))
        self._spread(prop.encode())
        self._try_prepare()

    # --- messages ----------------------------------------------------------------------

    def _on_message(self, frm: int, payload: bytes) -> None:
        self._stats.received += 1
        cache = self._decode_cache
        msg = cache.get(payload) if cache is not None else None
        if msg is None:
            try:
                msg = decode_message(payload, self.n, self.max_msg, self._proposals, self._tx_cache)
            except DecodeError:
                self._stats.garbage += 1
                return
            if cache is not None:
                if len(cache) > 20_000:
                    cache.clear()
                cache[payload] = msg
        self._observe_clock(frm, msg)
        if isinstance(msg, Aggregate):
            self._on_aggregate(frm, msg)
        elif isinstance(msg, Ticket):
            self._on_ticket(msg)
        else:
            self._on_proposal(frm, msg, len(payload))

    def _on_proposal(self, frm: int, prop: Proposal, size: int | None = None) -> None:
        if prop.height < self._height:
            self._stats.stale += 1
            return
        if prop.height > self._height:
            self._catch_up_from(frm, prop)
            if prop.height != self._height:
                return
        if not self._round - LATE_ROUNDS <= prop.round <= self._round + 1:
            self._stats.stale += 1
            return
        bh = prop.block.hash
        known = self._cands.get(prop.round, {}).get(bh)
        if known is not None:
            self._answer_worse(frm, prop.round, known)
            return
        if not self._proposal_ok(prop, size):
            self._stats.bad_proposal += 1
            return
        self._add_candidate(prop, sortition_value(prop.sortition))
        if prop.justify is None and self._silent_until.pop(prop.proposer, None) is not None:
            # It delivered after all (a slow build, or the network): wait for it again.
            self._silent_count[prop.proposer] = max(0, self._silent_count.get(prop.proposer, 1) - 1)
        if prop.round == self._round and prop.justify is None:
            self._note_proposal_lag(
                self._now - self.p.genesis_time_ms - prop.round * self.p.round_ms
            )
        if prop.justify is not None:
            self._on_aggregate_verified(frm, prop.justify, forward=False)
        self._request_validation(prop.round)
        if self._waiting is not None:
            self._check_waiting()
        best = self._best(prop.round)
        if self.gossip and best is not None and best.proposal is prop:
            self._spread(prop.encode(), exclude=frm)
        elif best is not None:
            self._answer_worse(frm, prop.round, self._cands[prop.round][bh])
        self._try_prepare()

    def _answer_worse(self, frm: int, r: int, got: _Candidate) -> None:
        """Push-pull for proposals (gossip mode): a peer that sends us a proposal worse than
        our best gets our best back, so the best one reaches the validators that push-only
        gossip with a small fanout would miss (about e**-fanout of them)."""
        if not self.gossip or frm < 0 or frm == self.index:
            return
        best = self._best(r)
        if best is not None and best.order < got.order:
            self._out.append(Send(frm, best.proposal.encode()))

    def _proposal_ok(self, prop: Proposal, size: int | None = None) -> bool:
        h = prop.block.header
        if (
            h.chain_id != self.p.chain_id
            or h.height != self._height
            or h.parent_hash != self._head_hash
        ):
            return False
        # The block's canonical bytes are a strict part of the proposal's ``size`` bytes, so a
        # proposal within the limit holds a block within it; only a larger one is re-encoded.
        if (size is None or size > self.p.max_block_bytes) and len(
            prop.block.encode()
        ) > self.p.max_block_bytes:
            return False
        if prop.justify is None:
            if (h.round, h.proposer, h.sortition) != (prop.round, prop.proposer, prop.sortition):
                return False
        else:
            j = prop.justify
            if h.round >= prop.round or j.phase != PHASE_P or j.height != self._height:
                return False
            if j.block_hash != prop.block.hash or j.round >= prop.round or j.signers < self.quorum:
                return False
            if not j.verify(self.crypto, self.p.chain_id):
                self._stats.bad_signature += 1
                return False
        if sortition_value(prop.sortition) >= self.d:
            return False
        msg = sortition_message(self.p.chain_id, self._height, prop.round, self._seed)
        return self.crypto.verify(prop.proposer, msg, prop.sortition)

    def _add_candidate(self, prop: Proposal, value: int) -> None:
        self._cands.setdefault(prop.round, {})[prop.block.hash] = _Candidate(value, prop)
        self._blocks[prop.block.hash] = prop.block
        self._cancel_if_beaten(prop.round, value)

    def _best(self, r: int) -> _Candidate | None:
        cs = self._cands.get(r)
        if not cs:
            return None
        return min(cs.values(), key=lambda c: c.order)

    def _catch_up_from(self, frm: int, prop: Proposal) -> None:
        """A proposal for a later height: commit its parent from its certificate if we can."""
        cert = prop.parent_cert
        if (
            cert is None
            or cert.height != prop.height - 1
            or cert.block_hash != prop.block.header.parent_hash
        ):
            return
        if cert.height < self._height:
            return
        if not self._cert_ok(cert):
            return
        if cert.height == self._height and cert.block_hash in self._blocks:
            self._commit(self._blocks[cert.block_hash], cert)
        else:
            self._fetch(cert.block_hash, frm)

    def _cert_ok(self, cert: Certificate) -> bool:
        if self._beyond(cert.height):
            self._count("beyond_set")
            return False
        try:
            verify_certificate(self.crypto, self.p.chain_id, cert, self.quorum)
            return True
        except AccordError:
            self._stats.bad_signature += 1
            return False

    # --- votes -------------------------------------------------------------------------

    def _on_aggregate(self, frm: int, agg: Aggregate) -> None:
        if agg.height < self._height:
            self._stats.stale += 1
            head = self._head_agg
            if (
                head is not None
                and agg.height == head.height
                and agg.signers < self.quorum
                and 0 <= frm != self.index
                and frm not in self._helped
            ):
                # The sender is still collecting votes for the height we committed: answer
                # once per peer and height with the commit quorum.
                self._helped.add(frm)
                self._out.append(Send(frm, head.encode()))
            return
        if not self._round - KEEP_ROUNDS <= agg.round <= self._round + 2 and not self._unlocks(agg):
            self._stats.stale += 1
            return
        if agg.height > self._height and (agg.phase != PHASE_C or agg.signers < self.quorum):
            self._stats.stale += 1  # only a commit quorum of a later height is worth acting on
            return
        if self._beyond(agg.height):
            self._count("beyond_set")
            return
        slot = self._slots.get(SlotKey(agg.height, agg.round, agg.phase))
        tally = None if slot is None else slot.tallies.get(agg.block_hash)
        if tally is not None and agg.subset_of(tally.agg):
            mine = tally.agg
            if self.gossip and mine.signers >= self.quorum > agg.signers:
                self._out.append(Send(frm, mine.encode()))  # pull: the sender lags behind us
            return
        if tally is None and agg.mask & ~(0 if slot is None else slot.signers) == 0:
            # Its signers all voted for other blocks in this slot: refused below anyway
            # (_on_aggregate_verified), so not worth a signature check.
            self._stats.extra["dropped_votes"] = self._stats.extra.get("dropped_votes", 0) + 1
            return
        if not agg.verify(self.crypto, self.p.chain_id):
            self._stats.bad_signature += 1
            return
        if agg.height > self._height:
            self._fetch(agg.block_hash, frm)
            return
        self._on_aggregate_verified(frm, agg, forward=True)

    def _unlocks(self, agg: Aggregate) -> bool:
        """Whether ``agg`` (of any age) is a P-quorum at this height above our lock.

        Such a quorum is what moves a stuck lock up (rule 4), so it is never stale however
        old its round: after a long partition the highest lock may be many rounds old, and
        the validators locked below it wait for exactly this message (its holders re-send it).
        At most one per round can verify (I1), and each must beat the last, so this admits
        little work."""
        if agg.phase != PHASE_P or agg.height != self._height or agg.signers < self.quorum:
            return False
        lock = self._lock
        return agg.round < self._round + 2 and (lock is None or agg.round > lock.round)

    def _on_aggregate_verified(self, frm: int, agg: Aggregate, *, forward: bool) -> None:
        sk = SlotKey(agg.height, agg.round, agg.phase)
        slot = self._slots.get(sk)
        tally = None if slot is None else slot.tallies.get(agg.block_hash)
        fresh = tally is None
        if tally is None:
            if agg.mask & ~(0 if slot is None else slot.signers) == 0:
                # Every signer already voted for another block in this slot: only an
                # equivocating (Byzantine) validator does that, since an honest one signs one
                # block per (height, round, phase) (rule 3). An honest vote always brings a
                # signer the slot has not seen, however many junk blocks came first.
                self._stats.extra["dropped_votes"] = self._stats.extra.get("dropped_votes", 0) + 1
                return
            tally = self._open_tally(sk, agg)
        if agg.signers == 1:
            i = int(agg.counts.nonzero()[0][0])
            if agg.counts[i] == 1:
                tally.singles[i] = agg.signature
        if agg.maxc <= 1:
            pure = tally.pure
            if pure is None or (agg.signers > pure.signers and pure.mask & ~agg.mask == 0):
                tally.pure = agg.copy()
            elif pure.mask & agg.mask == 0:
                joined = pure.copy()
                joined.merge(agg, self.crypto)
                tally.pure = joined
            elif agg.signers > pure.signers:
                tally.pure = agg.copy()
        if fresh or tally.agg.merge(agg, self.crypto):
            self._grew(sk, agg.block_hash, tally, frm, forward)

    def _open_tally(self, sk: SlotKey, agg: Aggregate) -> _Tally:
        """The one place vote records are created: a block's record, with its first verified
        aggregate, in its slot (created with it if new); the slot learns the signers."""
        slot = self._slots.get(sk)
        if slot is None:
            slot = self._slots[sk] = _Slot()
        slot.signers |= agg.mask
        tally = slot.tallies[agg.block_hash] = _Tally(agg.copy())
        return tally

    def _forget_slots(self, stale: Callable[[SlotKey], bool]) -> None:
        """The one place vote records are dropped: whole slots, with every block's aggregate,
        signatures and timers at once (heights below a commit, rounds past KEEP_ROUNDS)."""
        for sk in [sk for sk in self._slots if stale(sk)]:
            del self._slots[sk]

    def _tally(self, height: int, round: int, phase: int, block_hash: bytes) -> _Tally | None:
        slot = self._slots.get(SlotKey(height, round, phase))
        return None if slot is None else slot.tallies.get(block_hash)

    def _earliest_due(self) -> int | None:
        """The first gossip timer (forward or pull) of any block, if one is set. Asked on
        every event (drivers schedule their next tick from it), so it scans the few live
        blocks without building a list, and not at all in broadcast mode, which sets none."""
        if not self.gossip:
            return None
        first: int | None = None
        for slot in self._slots.values():
            for t in slot.tallies.values():
                due = t.due
                if due is not None and (first is None or due < first):
                    first = due
        return first

    @property
    def _aggs(self) -> Mapping[tuple[int, int, int, bytes], Aggregate]:
        """A read-only view for white-box tests: each block's merged aggregate by
        (height, round, phase, block hash), in slot then arrival order."""
        return MappingProxyType(
            {(*sk, bh): t.agg for sk, slot in self._slots.items() for bh, t in slot.tallies.items()}
        )

    def _add_own_vote(self, phase: int, block_hash: bytes) -> None:
        s = self._safety
        rnd = s.p_round if phase == PHASE_P else s.c_round  # as just persisted
        msg = vote_message(self.p.chain_id, self._height, rnd, phase, block_hash)
        sig = self.signer.sign(msg)
        single = Aggregate.single(self.n, self._height, rnd, phase, block_hash, self.index, sig)
        if not self.gossip:
            self._out.append(Broadcast(single.encode()))
        self._on_aggregate_verified(-1, single, forward=True)

    def _grew(self, sk: SlotKey, bh: bytes, t: _Tally, frm: int, forward: bool) -> None:
        agg = t.agg
        reached = agg.signers >= self.quorum and not t.quorum_seen
        if reached:
            t.quorum_seen = True
        if self.gossip:
            # Below a quorum, a validator forwards only the P aggregate of the block it
            # prepared (and every C aggregate): gossip capacity goes to the block that can win.
            if forward and (reached or (agg.signers < self.quorum and self._worth_pulling(sk, bh))):
                self._forward(t, frm)
        elif reached:
            self._out.append(Broadcast(agg.encode()))
        if reached:
            if agg.phase == PHASE_P:
                self._on_p_quorum(agg)
            else:
                self._on_c_quorum(t)

    def _forward(self, t: _Tally, frm: int) -> None:
        """Forward a grown aggregate now, or when its rate limit allows (coalescing growth)."""
        iv = self.p.gossip_interval_ms
        last = t.last_sent
        if iv <= 0 or last is None or self._now >= last[0] + iv:
            self._send_agg(t, frm)
        elif t.due is None or t.due > last[0] + iv:
            t.due = last[0] + iv

    def _worth_pulling(self, sk: SlotKey, bh: bytes) -> bool:
        """Pull only for what can complete: our own P vote's block, or a commit vote."""
        s = self._safety
        return sk.phase == PHASE_C or (s.p_round, s.p_height, s.p_hash) == (sk.round, sk.height, bh)

    def _send_agg(self, t: _Tally, frm: int) -> None:
        now = max(self._now, 0)
        agg = t.agg
        t.last_sent = (now, agg.signers)
        self._spread(agg.encode(), exclude=frm)
        iv = self.p.gossip_interval_ms
        # Check again (forward growth, or pull if stuck) until a quorum.
        t.due = now + iv if iv > 0 and agg.signers < self.quorum else None

    def _behind_own_votes(self) -> bool:
        """Whether this validator already voted or locked at a later height than the one
        being decided (rule 6): the store lags the persisted safety state after a crash that
        lost commits in flight, or a rebuild of the core from the store. That height is
        decided for it; it catches up there by certificate only."""
        s = self._safety
        top = max(s.p_height, s.c_height, s.lock.height if s.lock is not None else 0)
        return self._height < top

    def _on_p_quorum(self, agg: Aggregate) -> None:
        if agg.height != self._height or self._behind_own_votes():
            return  # rule 6: never lock (over a later height's lock) or vote below our votes
        lock = self._lock
        changed = False
        if lock is None or agg.round > lock.round:
            if lock is not None and lock.block_hash != agg.block_hash:
                self._stats.extra["unlock"] = self._stats.extra.get("unlock", 0) + 1
            self._safety.lock = agg.copy()
            self._safety.lock_block = self._blocks.get(agg.block_hash)
            changed = True
        lock = self._safety.lock
        assert lock is not None
        if lock.block_hash not in self._blocks:
            self._fetch_lock_body()
        # Rule 5: C for (B, r) only if this validator closed no round above r for P. A P vote
        # of a later round cast before this lock existed is not bound by it, and with it a
        # second C-quorum could form above a commit (the fork of the safety argument's I2).
        if (
            agg.round > self._safety.c_round
            and lock.key == agg.key
            and self._safety.p_round <= agg.round
        ):
            self._safety.c_round = agg.round
            self._safety.c_height = agg.height
            self._safety.c_hash = agg.block_hash
            self._persist()
            self._add_own_vote(PHASE_C, agg.block_hash)
        elif changed:
            self._persist()

    def _on_c_quorum(self, t: _Tally) -> None:
        agg = t.agg
        if agg.height != self._height:
            return
        cert = agg.to_certificate(t.singles, self.crypto, self.quorum, t.pure)
        block = self._blocks.get(agg.block_hash)
        if block is None:
            self._pending_commit[agg.block_hash] = cert
            self._fetch(agg.block_hash, self._random_peer())
            return
        self._commit(block, cert)

    # --- preparing ---------------------------------------------------------------------

    def _try_prepare(self) -> None:
        r = self._round
        for late in range(r - LATE_ROUNDS, r):  # oldest first: each vote forbids the older ones
            if self._safety.p_round < late and self._prepare(late):
                self._stats.extra["late_prepare"] = self._stats.extra.get("late_prepare", 0) + 1
        if self._stage2_round == r and self._safety.p_round < r:
            self._prepare(r)

    def _prepare(self, r: int) -> bool:
        """Sign P (or abstain) in round ``r`` if its verdict is in; whether it decided.

        Called for the current round from its stage II on, and late for the ``LATE_ROUNDS``
        rounds before it: a block that takes longer to build and validate than a round gives
        is found valid only after its round ended, and without a late vote such a block (one
        costly transaction is enough) could never commit. Late votes come first, oldest
        first, since each vote forbids every older round (rule 3); they need no other rule:
        votes stay monotone, so a late one is what a validator whose clock runs slow would
        sign."""
        if self._behind_own_votes():
            return False  # rule 6
        best = self._best(r)
        if best is None:
            return False
        bh = best.proposal.block.hash
        ok = self._valid.get(bh)
        if ok is None:
            return False  # wait for the application's verdict on the best proposal
        if not ok:
            # The best proposal is invalid: follow the best valid one instead.
            valid = [
                c for c in self._cands[r].values() if self._valid.get(c.proposal.block.hash) is True
            ]
            if not valid:
                return False
            best = min(valid, key=lambda c: c.order)
            bh = best.proposal.block.hash
        if not self._lock_allows(best.proposal):
            self._stats.extra["abstain"] = self._stats.extra.get("abstain", 0) + 1
            self._safety.p_round = r  # abstaining is final for this round
            self._persist()  # and survives a crash, like a vote (rule 2)
            return True
        self._safety.p_round = r
        self._safety.p_height = self._height
        self._safety.p_hash = bh
        self._persist()
        self._add_own_vote(PHASE_P, bh)
        return True

    def _lock_allows(self, prop: Proposal) -> bool:
        lock = self._lock
        if lock is None or prop.block.hash == lock.block_hash:
            return True
        return prop.justify is not None and prop.justify.round > lock.round

    def _request_validation(self, r: int) -> None:
        """Ask the application to validate only what this validator may prepare in round r.

        Executing a block costs as much as building it, and a round has several leaders;
        only the best-priority proposal (lowest ticket) can get our P vote, so it alone is
        validated, plus the locked block if it is re-proposed. A worse proposal is validated
        only once every better one is known to be invalid (``_on_validated`` calls back here).
        A better proposal arriving later is requested when it arrives. Which blocks get
        validated never changes what is voted for: ``_try_prepare`` waits for the best
        proposal's verdict and falls back to the best *valid* one exactly as before."""
        cs = self._cands.get(r)
        if not cs:
            return
        lock = self._lock
        for c in sorted(cs.values(), key=lambda c: c.order):
            bh = c.proposal.block.hash
            if lock is not None and bh == lock.block_hash and bh not in self._valid:
                self._valid[bh] = None
                self._validate(c.proposal.block)
        for c in sorted(cs.values(), key=lambda c: c.order):
            bh = c.proposal.block.hash
            if bh not in self._valid:
                if self._hold_for_better(r, c):
                    return
                self._valid[bh] = None
                self._validate(c.proposal.block)
                return
            if self._valid[bh] is not False:
                return  # the best not known invalid is valid or being validated
            # known invalid: the next best is the one that matters

    def _hold_for_better(self, r: int, c: _Candidate) -> bool:
        """Whether to hold off validating ``c`` because a better leader of round ``r``
        announced its ticket (tickets first) and its proposal has not arrived yet.

        Under load a proposal from a worse leader (one that did not hear the better ticket in
        time) often arrives first; validating it would be wasted work once the better one
        arrives, and that work delays the better one's validation. So it waits, at most until
        stage II starts, when ``_on_tick`` asks again (asking twice requests nothing twice):
        then the best proposal held is validated, whatever announced itself. Holding changes
        when a block is validated, never which block is voted for."""
        best = self._tickets.get(r)
        if (
            r != self._round
            or best is None
            or best >= c.value
            or self._now >= self.stage2_start_ms(r)
        ):
            return False
        self._stats.extra["validation_held"] = self._stats.extra.get("validation_held", 0) + 1
        return True

    def _p_certified(self, bh: bytes) -> Aggregate | None:
        """A P-quorum at this height for block ``bh``, if we hold one."""
        lock = self._lock
        if lock is not None and lock.block_hash == bh:
            return lock
        # Several rounds' quorums may certify one block (re-proposals): the earliest slot's
        # is taken, so the answer (and the fetch peer drawn from its signers) never depends
        # on hash order, as it did while these keys sat in a set.
        for sk, slot in self._slots.items():
            if sk.height == self._height and sk.phase == PHASE_P:
                t = slot.tallies.get(bh)
                if t is not None and t.quorum_seen:
                    return t.agg
        return None

    def _fetch_body(self, bh: bytes, quorum: Aggregate) -> None:
        """Ask a signer of a P-quorum for the block's body: each of them validated it."""
        signers = [int(i) for i in quorum.counts.nonzero()[0] if int(i) != self.index]
        peer = signers[self._next_rand() % len(signers)] if signers else self._random_peer()
        self._fetch(bh, peer)

    def _fetch_lock_body(self) -> None:
        """Locked on a block whose body never reached us (its quorum did, its proposal did
        not): fetch it. Without it we could neither re-propose the locked block nor check a
        re-proposal of it, and we would abstain on everything else at this height."""
        lock = self._lock
        if lock is not None and lock.block_hash not in self._blocks:
            self._fetch_body(lock.block_hash, lock)

    def _on_validated(self, bh: bytes, ok: bool) -> None:
        started = self._validate_started.pop(bh, None)
        if started is not None:
            self._validate_ms = self._track(self._validate_ms, self._now - started)
        if bh not in self._valid:
            return
        quorum = self._p_certified(bh)
        if not ok and quorum is not None:
            # A P-quorum means f+1 honest validators found this block valid, so the body we
            # checked is not the block's (a block's hash covers its header, and a lying peer
            # can put other transactions under it): drop that body, never the block, and
            # fetch it again from a signer.
            self._stats.extra["bad_body"] = self._stats.extra.get("bad_body", 0) + 1
            self._valid.pop(bh, None)
            self._blocks.pop(bh, None)
            for cs in self._cands.values():
                cs.pop(bh, None)
            if self._safety.lock_block is not None and self._safety.lock_block.hash == bh:
                self._safety.lock_block = None
                self._persist()
            self._fetch_from.pop(bh, None)
            self._fetch_body(bh, quorum)
            return
        self._valid[bh] = ok
        lock = self._lock
        if ok and lock is not None and lock.block_hash == bh and self._safety.lock_block is None:
            self._safety.lock_block = self._blocks.get(bh)
            self._persist()  # the locked block survives a restart, to be re-proposed
        if not ok:
            for r in sorted(self._cands):
                if any(c.proposal.block.hash == bh for c in self._cands[r].values()):
                    self._request_validation(r)
        self._try_prepare()

    # --- commit and catch-up -----------------------------------------------------------

    def _commit(self, block: Block, cert: Certificate) -> None:
        self._out.append(Commit(block, cert))
        t = self._tally(cert.height, cert.round, PHASE_C, cert.block_hash)
        head = None if t is None else t.agg
        if head is None or head.signers < self.quorum:
            head = Aggregate(
                cert.height,
                cert.round,
                PHASE_C,
                cert.block_hash,
                certificate_counts(cert, self.n),
                cert.signature,
            )
        self._head_agg = head
        self._helped = set()
        self._height = block.height + 1
        self._head_hash = block.hash
        self._seed = sortition_seed(block.hash, block.header.sortition)
        self._head_cert = cert
        if self._safety.lock is not None and self._safety.lock.height < self._height:
            # A lock binds only at its own height, now decided: dropping it keeps the next
            # persisted safety states small (they carried the whole locked block).
            self._safety.lock = None
            self._safety.lock_block = None
        self._pending_commit.clear()
        self._cands.clear()
        self._tickets.clear()
        self._ticket_by.clear()
        self._waiting = None
        self._pending_build = None  # a build for the decided height is stale: no CancelBuild
        self._blocks = {}
        self._valid = {}
        self._validate_started = {}
        self._forget_slots(lambda sk: sk.height < self._height)
        nxt = self._future.pop(self._height, None)
        for h in [h for h in self._future if h < self._height]:
            del self._future[h]
        if self._beyond(self._height):
            self._future.clear()  # rule 8: nothing of a height whose set is not known
            return
        if nxt is not None and nxt[0].header.parent_hash == self._head_hash:
            self._commit(*nxt)
        elif block.header.round >= self._round - 1:
            # A commit of the current or the previous round (not catch-up): the round entered
            # before it led at the old height, whose block is now stale. A validator whose
            # clock runs ahead enters every round before the previous one commits, so without
            # this it never leads at a height that is still open.
            self._lead_after_commit()

    def _lead_after_commit(self) -> None:
        self._lead_if_stage1()

    def _fetch(self, bh: bytes, frm: int) -> None:
        if frm < 0 or frm == self.index:
            frm = self._random_peer()
        if self._fetch_from.get(bh) == frm:
            return
        self._fetch_from[bh] = frm
        if len(self._fetch_from) > 256:
            self._fetch_from.pop(next(iter(self._fetch_from)))
        self._out.append(FetchBlock(bh, frm))

    def _on_fetched(self, block: Block, cert: Certificate | None) -> None:
        bh = block.hash
        self._fetch_from.pop(bh, None)
        if block.height < self._height:
            return
        if cert is None:
            cert = self._pending_commit.get(bh)
            if cert is None:
                self._on_fetched_body(block)
                return
        elif cert.block_hash != bh or cert.height != block.height or not self._cert_ok(cert):
            return
        if block.height == self._height:
            if block.header.parent_hash == self._head_hash:
                self._commit(block, cert)
            return
        if len(self._future) < 1024:
            self._future[block.height] = (block, cert)
        self._fetch(block.header.parent_hash, self._random_peer())

    def _on_fetched_body(self, block: Block) -> None:
        """A body we asked for because a P-quorum (our lock, say) names it: check it like a
        proposal's before it can be re-proposed or voted for."""
        bh = block.hash
        h = block.header
        if (
            h.height != self._height
            or h.parent_hash != self._head_hash
            or h.chain_id != self.p.chain_id
            or bh in self._blocks
            or self._p_certified(bh) is None
        ):
            return
        self._blocks[bh] = block
        self._valid[bh] = None
        self._validate(block)

    # --- sending -----------------------------------------------------------------------

    def _persist(self) -> None:
        self._out.append(Persist(SAFETY_KEY, self._safety.encode()))

    def _next_rand(self) -> int:
        x = self._prng
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        self._prng = x
        return x

    def _random_peer(self) -> int:
        if self.n == 1:
            return self.index
        j = self._next_rand() % (self.n - 1)
        return j + 1 if j >= self.index else j

    def _spread(self, payload: bytes, exclude: int = -1) -> None:
        if not self.gossip:
            self._out.append(Broadcast(payload))
            return
        chosen: set[int] = set()
        tries = 0
        while len(chosen) < self.p.gossip_fanout and tries < 4 * self.p.gossip_fanout:
            tries += 1
            j = self._random_peer()
            if j != exclude:
                chosen.add(j)
        for j in sorted(chosen):
            self._out.append(Send(j, payload))

    def _resend(self) -> None:
        """Periodic re-send: covers lost messages and heals partitions (liveness only)."""
        if self._my_proposal is not None:
            self._spread(self._my_proposal.encode())
        s = self._safety
        for phase, rnd, h, bh in (
            (PHASE_P, s.p_round, s.p_height, s.p_hash),
            (PHASE_C, s.c_round, s.c_height, s.c_hash),
        ):
            t = self._tally(h, rnd, phase, bh)
            if h == self._height and t is not None:
                self._spread(t.agg.encode())
        lock = self._lock
        if lock is not None:
            self._spread(lock.encode())
            if lock.block_hash not in self._blocks:
                self._fetch_from.pop(lock.block_hash, None)
                self._fetch_lock_body()
        for bh in list(self._pending_commit)[:4]:
            self._fetch_from.pop(bh, None)
            self._fetch(bh, self._random_peer())
        if self._future:
            lowest = min(self._future)
            parent = self._future[lowest][0].header.parent_hash
            self._fetch_from.pop(parent, None)
            self._fetch(parent, self._random_peer())
