"""An adversary that controls delivery order, and a bounded exhaustive search (Twins-style).

Theory of operation
===================

Quorum protocols break when quorums *form* in an order their safety argument did not foresee:
a P-quorum of round r that reaches a validator only after it voted in round r+1, a C-quorum
that reaches one validator and not the others, two validators that see the P-quorums of two
rounds in opposite orders. Random latency and partitions almost never produce these orders,
because they delay all messages alike; this module produces them on purpose.

**The controlled network.** :class:`Scheduler` replaces the simulator's network (the
``network`` hook of :class:`accord.sim.engine.SimConfig`). Every message is classified by
its content as ``(kind, round)``, kind one of ``prop`` (proposals and tickets), ``P`` or
``C`` (vote aggregates of that phase). A :class:`Plan` is a list of :class:`Hold` rules: "the
messages of kind k and round r sent to the nodes in S (optionally only from the senders in
F) are held until virtual time t (in rounds), or dropped (t = never)". A held message is
delivered at t, in the order it was sent (or shuffled, see below); every other message takes
the fixed latency. Since the rule is about content, a core's periodic re-sends of a held vote
or lock, and the quorum aggregate it broadcasts, are held alike: the adversary really controls
when a validator learns of a quorum. Nothing is forged and nothing is altered: the adversary
only chooses delivery times, so it is an asynchronous network, under which a BFT core must
stay safe whatever it does. (Holding forever is loss; holding for a while is what partial
synchrony allows before GST.)

**Release points.** Release times are fractions of a round chosen to fall between the cores'
own actions (with the search's timing: 200 ms rounds, stage II at 0.5, 10 ms latency, so
on-time P-quorums form at 0.55 and commits at 0.6). For votes of round r: ``end`` = r at
0.875 (after the on-time validators committed), ``next`` = r+1 at 0.625 (after the validator
voted in r+1 and after an on-time P-quorum of r+1), ``later`` = r+2 at 0.875 (long after),
``never`` (dropped). So the order of two held classes is the order of their points: round 0's
P votes at ``next`` (1.625) come before round 1's at ``end`` (1.875). Every validator is a
leader in every round (``expected_leaders = n``) and proposals travel on time (a
re-proposal carries its lock's P-quorum with it, so a lock is never hidden from a validator
that gets proposals), so every round has a block that everybody prepares unless a lock
forbids it.

**Checks at every step.** The simulator's checker runs on every persist and every commit (two
blocks at one height, two different votes of an honest validator in one (round, phase), a
commit certificate that does not verify); the scheduler adds a check on the wire: every vote
aggregate it carries attributes a vote to each honest signer, and two blocks for one
(height, round, phase) of one honest validator is a violation even if the core never
persisted it. The cost-model crypto is sound for this checker: no party here forges (the
scheduler never creates a message, the twins sign with their own key), so a signer bit in an
aggregate that verifies is a signature that validator made; only speed differs from BLS.

**Seeded strategies** (:data:`STRATEGIES`): each draws a plan from ``random.Random(seed)``:

* ``late_prepare``: hold round r's P votes for some validators until after they voted in r+1,
  hold r+1's P votes for some until later still, and the C votes of r for some: the pattern of
  a late P-quorum that locks a validator on a round below its last P vote.
* ``split_order``: two groups see the P-quorums of rounds r and r+1 in opposite orders, and
  the C votes of r reach only one group on time.
* ``partition``: per round, a random 2-partition of the nodes; messages of that round across
  it (proposals included) are held until a random later time or dropped.
* ``shuffle``: every vote has a chance of a random extra delay of up to two rounds, so votes of
  earlier rounds routinely arrive after later ones.
* ``mixed``: each seed draws one of the above.

**Exhaustive mode** (:class:`Space`), in the spirit of Twins (Bano et al., "Twins: BFT
Systems Made Robust"): n = 4, or n = 4 with one twin (two cores with one validator's key and
index, i.e. one Byzantine validator that equivocates exactly when its two halves see
different things). For each of the first ``rounds`` rounds (2 by default) and each node it
chooses when that node gets the round's P votes (``now``, ``end`` or ``next``) and its C votes
(``now`` or ``later``; the last controlled round's C votes travel on time), with at most
``sides`` (2) distinct choices per round: per round the nodes fall into at most two groups,
each of which learns the round's quorums at its own moment, as a Twins partition puts nodes
into groups. In twins mode the twin's two halves are on different sides in every controlled
round (``split_twins``; otherwise the pair behaves as one honest validator, which the n = 4
space covers). One synchronous round follows (``settle``: every message on time, held
``later`` votes arrive), so each run also shows whether the core commits again.

The bound is the number of controlled rounds, the release points and the sides; within it
every combination is run, one per orbit under relabeling of interchangeable nodes
(``symmetric=True``; ``symmetric=False`` runs every labelled schedule): everybody leads, every
proposal reaches everybody in stage I, so every validator prepares the same block and the
validators differ only in their keys and in tie-breaking order, and a schedule and its image
under a permutation of the validators (of the three honest ones and of the two halves, in
twins mode) exercise the same orders of quorums (a test checks images of the fork and of
random schedules). The default space is 1,062 schedules for n = 4 (9,720 labelled) and 1,800
with the twin (CI runs two parts of it: 360 with C votes on time, 240 with P votes ``now`` or
``next``); this module refuses spaces of more than
:data:`MAX_LABELLED` labelled schedules. The n = 4 space contains the fork of a core that
signs C for a lock below its last P vote (round 0: P at ``next`` to all, C ``later`` to three
validators; round 1: P at ``end`` to the same three): the held round-0 P-quorum locks the three
after they voted in round 1, the fourth validator commits on their C votes, then the round-1
P-quorum moves their lock and they commit another block (7 of the 1,062 schedules fork that
core).

Determinism: a run is a function of its plan and simulator seed (the scheduler's only
randomness is ``random.Random`` seeded from the plan), and exhaustive schedule i is the i-th
of a list built in a fixed order, so the reproducer of a violation (strategy and seed, or
space and index) replays it exactly.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from accord.base.errors import DecodeError
from accord.consensus import Aggregate, Core, Proposal, Ticket
from accord.consensus.messages import decode_message
from accord.sim.engine import DELIVER, SimConfig, SimNode, SimResult, Simulator

NEVER = math.inf
KINDS = ("prop", "P", "C")
MAX_LABELLED = 2_000_000  # exhaustive spaces larger than this are refused (memory and time)
STRATEGIES = ("late_prepare", "split_order", "partition", "shuffle", "mixed")
# Release points of the exhaustive space, in rounds after the start of the held round r.
RELEASES: dict[str, float] = {
    "now": 0.0,
    "end": 0.875,
    "next": 1.625,
    "later": 2.875,
    "never": NEVER,
}


@dataclass(frozen=True)
class Hold:
    """Hold messages of ``kind`` and ``round`` to the nodes in ``to`` (roles, see
    :class:`Scheduler`), from the senders in ``frm`` (None: any), until virtual time
    ``until`` in rounds (``NEVER``: drop them)."""

    kind: str
    round: int
    to: frozenset[int]
    until: float
    frm: frozenset[int] | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "round": self.round,
            "to": sorted(self.to),
            "until": "never" if self.until == NEVER else self.until,
        }
        if self.frm is not None:
            d["from"] = sorted(self.frm)
        return d


@dataclass(frozen=True)
class Plan:
    """A delivery schedule: hold rules, and optional random per-message delays (``shuffle``:
    each vote is delayed with probability ``delay_p`` by up to ``delay_rounds``)."""

    holds: tuple[Hold, ...] = ()
    delay_p: float = 0.0
    delay_rounds: float = 0.0
    seed: int = 0

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"holds": [h.to_obj() for h in self.holds]}
        if self.delay_p:
            d.update(delay_p=self.delay_p, delay_rounds=self.delay_rounds, seed=self.seed)
        return d


class Scheduler:
    """The controlled network: every message is delivered after the fixed latency, unless a
    hold rule of the plan matches it (then at the rule's release time, or never).

    Plans name nodes by *role*: the honest nodes in nid order, then the twins (so that in
    twins mode roles ``n - 1`` and ``n`` are the two halves of the Byzantine validator,
    whichever index the simulator's seed gave it). Twins start fully connected here: the plan,
    not the built-in halves, decides who hears what.
    """

    def __init__(self, sim: Simulator, plan: Plan) -> None:
        self.sim = sim
        self.plan = plan
        self.round_us = sim.c.round_ms * 1000
        self.latency_us = max(1, int(sim.c.latency_ms * 1000))
        self.rng = random.Random(plan.seed)
        order = [nd.nid for nd in sim.nodes if nd.honest] + [
            nd.nid for nd in sim.nodes if not nd.honest
        ]
        self.role = {nid: r for r, nid in enumerate(order)}
        for nd in sim.nodes:
            nd.link = None
        self.honest = {nd.index for nd in sim.nodes if nd.honest}
        self._rules: dict[tuple[str, int], list[Hold]] = {}
        for h in plan.holds:
            self._rules.setdefault((h.kind, h.round), []).append(h)
        self._class: dict[bytes, tuple[str, int] | None] = {}
        self.wire_votes: dict[tuple[int, int, int, int], bytes] = {}
        self.held = 0
        self.dropped = 0

    def classify(self, payload: bytes) -> tuple[str, int] | None:
        """``(kind, round)`` of a payload (None if it does not decode); checks its votes once."""
        if payload in self._class:
            return self._class[payload]
        try:
            msg = decode_message(payload, self.sim.params.n, 1 << 24)
        except DecodeError:
            msg = None
        cls: tuple[str, int] | None
        if isinstance(msg, Aggregate):
            cls = ("P" if msg.phase == 1 else "C", msg.round)
            self._check_votes(msg)
        elif isinstance(msg, Proposal | Ticket):
            cls = ("prop", msg.round)
        else:
            cls = None
        if len(self._class) > 50_000:
            self._class.clear()
        self._class[payload] = cls
        return cls

    def _check_votes(self, agg: Aggregate) -> None:
        # Every signer bit of an aggregate an honest node sends is a vote that validator
        # signed (nobody forges here): one block per (validator, height, round, phase).
        for k in agg.counts.nonzero()[0]:
            i = int(k)
            if i not in self.honest:
                continue
            key = (i, agg.height, agg.round, agg.phase)
            prev = self.wire_votes.setdefault(key, agg.block_hash)
            if prev != agg.block_hash:
                self.sim.violations.append(
                    f"validator {i} voted for two blocks at height {agg.height} round {agg.round} "
                    f"phase {'PC'[agg.phase - 1]} (seen on the wire)"
                )

    def transmit(self, frm: SimNode, to: SimNode, payload: bytes, at: int) -> None:
        t = at + self.latency_us
        cls = self.classify(payload)
        if cls is not None:
            for h in self._rules.get(cls, ()):
                if self.role[to.nid] in h.to and (h.frm is None or self.role[frm.nid] in h.frm):
                    if h.until == NEVER:
                        self.dropped += 1
                        return
                    release = int(h.until * self.round_us)
                    if release > t:
                        self.held += 1
                        t = release
                    break
            if self.plan.delay_p and cls[0] != "prop" and self.rng.random() < self.plan.delay_p:
                t += int(self.rng.uniform(0, self.plan.delay_rounds) * self.round_us)
        self.sim.push(t, DELIVER, (to.nid, frm.index, payload))


# --- running one schedule --------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The simulated system a schedule runs on (the search's timing, see the module doc)."""

    nodes: int = 4
    twins: bool = False
    rounds: int = 4  # rounds simulated
    seed: int = 0  # simulator seed: keys, the twin's index
    crypto: str = "model"
    core_class: type[Core] = Core

    def config(self, plan: Plan) -> SimConfig:
        return SimConfig(
            nodes=self.nodes,
            byzantine=1 if self.twins else 0,
            strategy="twins" if self.twins else "none",
            seed=self.seed,
            rounds=self.rounds,
            latency_ms=10.0,
            jitter=0.0,
            tail=0.0,
            round_ms=200,
            stage2_ms=100,
            expected_leaders=float(self.nodes),
            crypto=self.crypto,
            core_class=self.core_class,
            network=lambda sim: Scheduler(sim, plan),
        )


def run_plan(setup: Setup, plan: Plan) -> SimResult:
    return Simulator(setup.config(plan)).run()


# --- seeded strategies -----------------------------------------------------------------


def _subset(rng: random.Random, roles: int, *, full: float = 0.3) -> frozenset[int]:
    if rng.random() < full:
        return frozenset(range(roles))
    while True:
        s = frozenset(i for i in range(roles) if rng.random() < 0.5)
        if s:
            return s


def _late_prepare(rng: random.Random, roles: int, rounds: int) -> Plan:
    r = rng.randrange(max(1, rounds - 2))
    first = r + 1 + rng.uniform(0.52, 0.95)  # after the validators voted in r + 1
    holds = [Hold("P", r, _subset(rng, roles), first)]
    if rng.random() < 0.8:
        holds.append(Hold("P", r + 1, _subset(rng, roles), rng.uniform(first, r + 2.0)))
    if rng.random() < 0.8:
        holds.append(
            Hold("C", r, _subset(rng, roles, full=0.1), rng.choice([NEVER, r + 2 + rng.random()]))
        )
    if rng.random() < 0.3:
        holds.append(
            Hold(
                "C", r + 1, _subset(rng, roles, full=0.1), rng.choice([NEVER, r + 2 + rng.random()])
            )
        )
    return Plan(tuple(holds))


def _split_order(rng: random.Random, roles: int, rounds: int) -> Plan:
    r = rng.randrange(max(1, rounds - 2))
    ids = list(range(roles))
    rng.shuffle(ids)
    k = rng.randint(1, roles - 1)
    a, b = frozenset(ids[:k]), frozenset(ids[k:])
    x, y = sorted(rng.uniform(r + 1.52, r + 1.98) for _ in range(2))
    holds = [
        Hold("P", r, a, x),
        Hold("P", r + 1, a, y),  # group a: r's quorum first, then r + 1's
        Hold("P", r, b, NEVER if rng.random() < 0.5 else y),  # group b: r + 1's first (on time)
        Hold("C", r, b, rng.choice([NEVER, r + 2 + rng.random()])),  # r's commit votes reach a only
    ]
    return Plan(tuple(holds))


def _partition(rng: random.Random, roles: int, rounds: int) -> Plan:
    holds: list[Hold] = []
    for r in range(max(1, rounds - 1)):
        if rng.random() < 0.3:
            continue
        side = _subset(rng, roles, full=0.0)
        if len(side) == roles:
            continue
        other = frozenset(range(roles)) - side
        until = NEVER if rng.random() < 0.3 else r + rng.uniform(0.5, 2.5)
        for kind in KINDS:
            if rng.random() < 0.8:
                holds.append(Hold(kind, r, side, until, other))
                holds.append(Hold(kind, r, other, until, side))
    return Plan(tuple(holds))


def _shuffle(rng: random.Random, roles: int, rounds: int) -> Plan:
    return Plan(
        (),
        delay_p=rng.choice([0.2, 0.4, 0.6]),
        delay_rounds=rng.choice([1.0, 2.0]),
        seed=rng.getrandbits(32),
    )


_DRAW: dict[str, Callable[[random.Random, int, int], Plan]] = {
    "late_prepare": _late_prepare,
    "split_order": _split_order,
    "partition": _partition,
    "shuffle": _shuffle,
}


def draw_plan(strategy: str, seed: int, roles: int, rounds: int) -> Plan:
    """The plan strategy ``strategy`` draws for ``seed`` (a pure function of its arguments)."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown adversary {strategy!r}; choose from {', '.join(STRATEGIES)} or exhaustive"
        )
    rng = random.Random(f"accord-adversary/{strategy}/{seed}")
    if strategy == "mixed":
        strategy = rng.choice(sorted(_DRAW))
    return _DRAW[strategy](rng, roles, rounds)


# --- exhaustive mode -------------------------------------------------------------------


RoundChoice = tuple[tuple[str, str], ...]  # per role: (P release, C release) of the round's votes


@dataclass(frozen=True)
class Space:
    """The bounded schedule space of the exhaustive mode (see the module docstring).

    A schedule gives, for each of the first ``rounds`` rounds and each node (by role), the
    release point of that round's P votes to it (one of ``p_releases``) and of its C votes
    (one of ``c_releases``; the last controlled round's C votes travel on time unless
    ``last_c``), with at most ``sides`` distinct choices per round: the nodes fall into at
    most that many groups, each of which learns the round's quorums at its own moment.
    """

    twins: bool = False
    rounds: int = 2  # controlled rounds; the run lasts ``rounds + settle``
    p_releases: tuple[str, ...] = ("now", "end", "next")
    c_releases: tuple[str, ...] = ("now", "later")
    last_c: bool = False
    sides: int = 2
    symmetric: bool = True
    split_twins: bool = True  # twins mode: the two twins' choices differ in every controlled round
    settle: int = 1  # synchronous rounds simulated after the controlled ones

    @property
    def roles(self) -> int:
        return 5 if self.twins else 4

    def setup(self, core_class: type[Core] = Core, crypto: str = "model") -> Setup:
        return Setup(
            nodes=4,
            twins=self.twins,
            rounds=self.rounds + self.settle,
            core_class=core_class,
            crypto=crypto,
        )

    def _choices(self, r: int) -> list[RoundChoice]:
        cs = self.c_releases if r < self.rounds - 1 or self.last_c else ("now",)
        values = [(p, c) for p in self.p_releases for c in cs]
        split = self.twins and self.split_twins
        return [
            a
            for a in itertools.product(values, repeat=self.roles)
            if len(set(a)) <= self.sides and not (split and a[3] == a[4])
        ]

    def _perms(self) -> list[tuple[int, ...]]:
        if not self.symmetric:
            return [tuple(range(self.roles))]
        if not self.twins:
            return list(itertools.permutations(range(4)))
        return [
            (*h, *t)
            for h in itertools.permutations(range(3))
            for t in itertools.permutations((3, 4))
        ]

    def schedules(self) -> list[tuple[RoundChoice, ...]]:
        """Every schedule of the space (one per orbit if symmetric: the least image under the
        permutations of interchangeable nodes), in a fixed order."""
        labelled = math.prod(len(self._choices(r)) for r in range(self.rounds))
        if labelled > MAX_LABELLED:
            raise ValueError(
                f"{labelled} labelled schedules exceed the bound of {MAX_LABELLED}; "
                "enumerate fewer rounds, release points or sides"
            )
        perms = self._perms()[1:]
        out = []
        for s in itertools.product(*(self._choices(r) for r in range(self.rounds))):
            if all(s <= tuple(tuple(a[p[i]] for i in range(self.roles)) for a in s) for p in perms):
                out.append(s)
        return out

    def canonical(self, schedule: tuple[RoundChoice, ...]) -> tuple[RoundChoice, ...]:
        """The representative of a schedule's orbit that :meth:`schedules` lists."""
        return min(
            tuple(tuple(a[p[i]] for i in range(self.roles)) for a in schedule)
            for p in self._perms()
        )

    @staticmethod
    def plan(schedule: tuple[RoundChoice, ...]) -> Plan:
        holds = []
        for r, per_role in enumerate(schedule):
            for phase, k in (("P", 0), ("C", 1)):
                by_release: dict[str, set[int]] = {}
                for role, choice in enumerate(per_role):
                    by_release.setdefault(choice[k], set()).add(role)
                for rel, roles in sorted(by_release.items()):
                    if rel != "now":
                        holds.append(Hold(phase, r, frozenset(roles), r + RELEASES[rel]))
        return Plan(tuple(holds))


# --- searching -------------------------------------------------------------------------


@dataclass
class Report:
    """What a search found: schedules run, how many violated safety (any invariant, the
    core's rule 5 included), how many of those forked (two blocks at one height), and the
    first reproducer of each."""

    adversary: str
    schedules: int = 0
    violations: int = 0
    first: dict[str, Any] | None = None
    forks: int = 0
    first_fork: dict[str, Any] | None = None
    commits: int = 0  # committed heights summed over runs (min over honest nodes per run)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        return {
            "adversary": self.adversary,
            "schedules": self.schedules,
            "violations": self.violations,
            "first_violation": self.first,
            "forks": self.forks,
            "first_fork": self.first_fork,
            "committed_heights": self.commits,
            **self.extra,
        }


def _note(report: Report, result: SimResult, reproducer: dict[str, Any]) -> None:
    report.schedules += 1
    report.commits += result.committed_heights
    if result.safety_violations:
        report.violations += 1
        if report.first is None:
            report.first = {**reproducer, "violations": result.violations[:4]}
        forked = [v for v in result.violations if "two blocks committed" in v]
        if forked:
            report.forks += 1
            if report.first_fork is None:
                report.first_fork = {**reproducer, "violations": forked[:4]}


def search(
    strategy: str,
    *,
    seeds: Iterable[int],
    twins: bool = False,
    rounds: int = 4,
    core_class: type[Core] = Core,
    crypto: str = "model",
    stop_at_first: bool = False,
    stop_at_fork: bool = False,
) -> Report:
    """Run the seeded strategy once per seed (until the first violation or fork, if asked)."""
    setup = Setup(nodes=4, twins=twins, rounds=rounds, core_class=core_class, crypto=crypto)
    report = Report(strategy, extra={"twins": twins, "rounds": rounds})
    for seed in seeds:
        plan = draw_plan(strategy, seed, 5 if twins else 4, rounds)
        _note(
            report,
            run_plan(setup, plan),
            {
                "adversary": strategy,
                "seed": seed,
                "twins": twins,
                "rounds": rounds,
                "plan": plan.to_obj(),
            },
        )
        if (stop_at_first and report.violations) or (stop_at_fork and report.forks):
            break
    return report


def exhaustive(
    space: Space,
    *,
    start: int = 0,
    limit: int | None = None,
    core_class: type[Core] = Core,
    crypto: str = "model",
    stop_at_first: bool = False,
    stop_at_fork: bool = False,
) -> Report:
    """Run schedules ``start`` .. ``start + limit`` of the space (all by default), until the
    first violation or fork if asked."""
    scheds = space.schedules()
    end = len(scheds) if limit is None else min(len(scheds), start + limit)
    setup = space.setup(core_class, crypto)
    report = Report(
        "exhaustive",
        extra={
            "twins": space.twins,
            "space_size": len(scheds),
            "start": start,
            "rounds": space.rounds,
            "symmetric": space.symmetric,
        },
    )
    for i in range(start, end):
        plan = space.plan(scheds[i])
        _note(
            report,
            run_plan(setup, plan),
            {
                "adversary": "exhaustive",
                "index": i,
                "twins": space.twins,
                "symmetric": space.symmetric,
                "plan": plan.to_obj(),
            },
        )
        if (stop_at_first and report.violations) or (stop_at_fork and report.forks):
            break
    return report
