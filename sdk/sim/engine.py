"""A deterministic discrete-event simulator that drives the real consensus core.

Every validator is an unmodified :class:`accord.consensus.Core`; the simulator plays the parts
a node plays in production (transport, clock, disk, application) with virtual versions:

* **Clock.** One global virtual clock in integer microseconds; each node reads it through its
  own fixed drift (an offset within ``±drift_ms``), so rounds start at slightly different
  moments on different nodes, as on loosely synchronized machines.
* **Network.** Latency is ``latency_ms`` scaled by a uniform jitter with an exponential tail;
  messages may be lost, duplicated and therefore reordered; partitions (static or chosen
  adaptively by the adversary from the nodes' state) drop messages between groups until the
  network heals.
* **Bandwidth.** With ``bandwidth_mbps`` > 0 every node has an uplink of that many Mbit/s:
  its messages leave one after another, each taking (payload + framing) / bandwidth, and
  arrive a latency after their last byte left. A broadcast or gossip of a big block so costs
  its size over the bandwidth per copy, and everything the node sends after it waits. Block
  bodies served to fetching peers go through the server's uplink the same way. Downlinks are
  not modelled (with gossip, a node receives about as much as it sends).
* **Blocks.** With ``block_txs`` > 0 the simulated application fills each block with that
  many transactions of ``tx_bytes`` bytes (:func:`accord.sim.costs.tx_pool`), so proposals
  have their real size on the wire.
* **CPU.** Each signature check the core makes costs ``verify_ms`` of virtual time on that node
  (messages that arrive while it is busy wait), which is what makes aggregation matter at
  10,000 nodes. ``verify_cost`` (:mod:`accord.sim.costs`) charges instead by signer count,
  as measured with blspy: key aggregation is O(signers). With ``crypto="bls"`` the checks are
  real BLS; with ``crypto="model"`` they are :class:`accord.consensus.CostModelCrypto`'s
  symbolic checks.
* **Execution.** With ``exec_ms`` > 0, building or validating a block takes that long on the
  node's own chain thread and its answer arrives when it ends; the core stays responsive
  meanwhile. Like the node, the thread runs one job at a time and picks its next one when
  it is free, with the node's own policy (:mod:`accord.consensus.jobs`): a build whose round
  or height has moved on is skipped, a validation of a committed height is dropped, the
  newest round's best ticket is validated first, and a worse ticket of a round with a valid
  better one waits a round.
  Blocks slower than their round allows are how late prepares (:mod:`accord.consensus.state`)
  get exercised. With ``exec_us_per_tx`` > 0 instead, execution costs that much per
  transaction and leaders cut their blocks as nodes do, by the execution cost they measured
  (:class:`accord.ledger.sizing.GasModel`, the node's own model): a block is a prefix of the
  pool that fits ``build_budget`` of a round.
* **Disk.** ``Persist`` actions are stored per node; a crash can hit after the persist and before
  the messages of the same batch (the worst place), and a restarted node gets its persisted
  safety state back (``amnesia=True`` withholds it, to show that the checker catches the
  resulting double votes).
* **Adversary.** Byzantine validators follow a strategy of :mod:`accord.sim.byzantine`.
  :mod:`accord.sim.adversary` replaces the network (``SimConfig.network``) by one that holds
  and releases messages by content to reorder quorums across rounds, and runs a bounded
  exhaustive search over such schedules; ``SimConfig.core_class`` runs a subclass of the core.

* **Validator-set changes.** ``members`` is the first set (positions in the pool of ``nodes``
  validators; empty: all of them) and ``set_changes`` lists ``(height, members)``: from that
  height on, those validators decide, in that order (a validator's index in the core is its
  position). Each node follows the rule a node keeps (:mod:`accord.ledger.schedule`): once
  it has committed h it knows the sets through h + 2 and tells its core (``SetKnown``); at a
  handoff it builds the next set's core with its persisted safety state, or, outside the new
  set, stops voting. A validator outside its height's set follows by certificates (it asks a
  peer for the next block and checks its certificate against the set of that height), and
  joins when it reaches a height of a set it is in. A message is delivered under the
  receiver's current set: from a validator outside it, it is dropped.
* **Consensus-parameter changes.** ``param_changes`` lists ``(height, Params fields)``: the
  same handoff, to cores of the new timing; a ``round_ms`` change moves the round schedule by
  the ledger's rule (:func:`accord.contracts.runtime.moved_anchor`, from the round of the
  block before the change), so rounds keep counting up. Latencies are still measured on the
  first schedule.

Everything random comes from one ``random.Random(seed)``: a run is a function of its
configuration, so the same seed gives byte-identical committed chains.

Two latencies are measured per (honest validator, committed block): *agreement* from the
nominal start of stage II of the certificate's round, and *commit latency* from the nominal
start of the round the block was first proposed in (its header's round), which is what a
user whose transaction is in that block waits at least.

The safety checker records, across all honest nodes: the block committed at each height
(two different ones is a violation), every vote an honest validator persisted (two different
blocks for one (round, phase) is a violation), and verifies every commit certificate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from accord.base import encoding
from accord.base.errors import AccordError
from accord.base.types import Block, Certificate, Header, Tx, body_hash
from accord.consensus import (
    BlockBuilt,
    BlockFetched,
    BlockValidated,
    Broadcast,
    BuildBlock,
    CancelBuild,
    Commit,
    Core,
    CostModelCrypto,
    FetchBlock,
    MessageReceived,
    Params,
    Persist,
    Proposal,
    SafetyState,
    Send,
    SetKnown,
    Tick,
    TxsPending,
    ValidateBlock,
    verify_certificate,
)
from accord.consensus.crypto import (
    BlsCrypto,
    BlsSigner,
    Crypto,
    ReindexedSigner,
    Signer,
    SubsetCrypto,
)
from accord.consensus.jobs import ChainJobs
from accord.contracts.runtime import moved_anchor
from accord.ledger.blocktime import block_time_error
from accord.ledger.sizing import TRANSFER_GAS, GasModel
from accord.sim.costs import FRAME_OVERHEAD, MeteredCrypto, parse_verify_cost, tx_pool

INVALID_ROOT = b"\xee" * 32  # state root the simulated application rejects
ZERO = bytes(32)

PROPOSAL_PREFIX = bytes([0x97, 1])  # a proposal's first bytes (accord.consensus.messages)

DELIVER, TICK, FETCHED, ADVERSARY, CRASH, RESTART, EXECUTED, TX_ARRIVAL, JOBS, FOLLOW = range(10)


class Network(Protocol):
    """A replacement for the simulator's message network (see :mod:`accord.sim.adversary`).

    ``transmit`` is called for every message a node sends to a linked node; it decides when
    (and whether) the message is delivered, by calling :meth:`Simulator.push` with ``DELIVER``
    and ``(to.nid, frm.index, payload)``.
    """

    def transmit(self, frm: SimNode, to: SimNode, payload: bytes, at: int) -> None: ...


@dataclass
class SimConfig:
    nodes: int = 4
    byzantine: int = 0
    strategy: str = "none"  # see accord.sim.byzantine.STRATEGIES, or "mixed"
    seed: int = 0
    rounds: int = 10
    latency_ms: float = 50.0
    jitter: float = 0.3  # uniform ±30 % around the latency
    tail: float = 0.05  # share of messages with an extra exponential delay (mean = latency)
    loss: float = 0.0
    duplicate: float = 0.0
    drift_ms: float = 0.0
    clock_offsets_ms: list[float] = field(
        default_factory=list
    )  # per validator index; overrides drift_ms
    skip_empty: bool = False  # leaders propose only with transactions pending (Params.skip_empty)
    # Transactions arriving in mempools: (time_ms, node nid or -1 for every node). A block
    # holds the transactions its builder had pending; with skip_empty, nodes tell their core
    # (TxsPending) when their pending set becomes empty or not.
    txs: list[tuple[int, int]] = field(default_factory=list)
    verify_ms: float = 0.0
    verify_cost: str = ""  # "" (off) | "measured" | five numbers in us (accord.sim.costs)
    bandwidth_mbps: float = 0.0  # each node's uplink (0: unlimited)
    block_txs: int = 0  # transactions per simulated block (0: empty blocks)
    tx_bytes: int = 250  # encoded size of each of them
    exec_ms: float = 0.0  # virtual time to build or validate a block (0: instant)
    exec_us_per_tx: float = 0.0  # > 0: execution costs this per tx; blocks cut by GasModel
    build_budget: float = 0.25  # share of a round a block's execution may take (GasModel)
    round_ms: int = 0  # 0: derived from the latency
    stage2_ms: int = 0
    expected_leaders: float = 3.0
    ticket_wait_ms: int = 0  # > 0: leaders announce tickets first (see accord.consensus.state)
    fanout: int = 3
    gossip_interval_ms: int = -1  # -1: the mean latency
    broadcast_max: int = 64
    partition: str = "none"  # none | split | adaptive | isolate
    heal_ms: int = 0  # partitions last until this time (0: a third of the run)
    crypto: str = "model"  # model | bls
    crashes: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # (node, crash_ms, restart_ms)
    crash_mid_batch: bool = True
    amnesia: bool = False
    progress: Callable[[int, int], None] | None = None  # (done_ms, total_ms)
    # Hooks for the delivery-order adversary (accord.sim.adversary) and its tests: the class
    # each validator runs (a subclass of Core, e.g. one that reinstates an old rule), and a
    # factory for a network that replaces latency/loss/duplication with controlled delivery.
    core_class: type[Core] = Core
    network: Callable[[Simulator], Network] | None = None
    members: list[int] = field(default_factory=list)  # the first validator set (empty: all)
    set_changes: list[tuple[int, list[int]]] = field(default_factory=list)  # (height, members)
    # (height, Params fields): from that height on, cores run that timing (round_ms,
    # stage2_ms, ticket_wait_ms, gossip_fanout, skip_empty), as governance's set_consensus
    # does on a node; a round_ms change moves the round schedule (Runtime.round_anchor).
    param_changes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def resolved(self) -> SimConfig:
        c = SimConfig(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        hops = 2 if c.nodes <= c.broadcast_max else _gossip_hops(c.nodes, c.fanout)
        if c.round_ms <= 0:
            hop = c.latency_ms * (1 + c.jitter) + 2 * c.verify_ms
            stage1 = hops * hop * 1.5 + c.drift_ms * 2 + 20
            if c.bandwidth_mbps > 0 and c.block_txs > 0:
                # Stage I is for the block to reach the validators: each gossip hop (push
                # gossip needs about log_fanout(n) + 2) is a mean latency plus the copies of
                # the block leaving one after another; in broadcast mode one hop of n - 1 copies.
                gossip = c.nodes > c.broadcast_max
                copies = c.fanout if gossip else c.nodes - 1
                block_hop = copies * c.block_txs * c.tx_bytes * 8 / (c.bandwidth_mbps * 1000)
                push_hops = _gossip_hops(c.nodes, c.fanout) - 1 if gossip else 1
                stage1 = push_hops * (c.latency_ms + block_hop) + c.drift_ms * 2 + 20
            stage2 = 2 * hops * hop * 1.5 + c.drift_ms * 2 + 50
            c.stage2_ms = int(stage2) if c.stage2_ms <= 0 else c.stage2_ms
            c.round_ms = int(stage1 + c.stage2_ms)
        elif c.stage2_ms <= 0:
            c.stage2_ms = c.round_ms // 2
        if c.heal_ms <= 0:
            c.heal_ms = c.rounds * c.round_ms // 3
        return c


def _gossip_hops(n: int, fanout: int) -> int:
    h, reach = 0, 1
    while reach < n:
        reach *= fanout
        h += 1
    return h + 3


class _DecodeCache(dict[bytes, Any]):
    """The cores' shared cache of decoded messages (payload -> message).

    A decoded proposal's ``encode()`` is the payload it was decoded from (strict decoding
    checked that they are equal), made the very same object here: validators forward that
    object, so every later lookup of a megabyte block hits by identity instead of comparing
    a megabyte of bytes. Lookups stay the plain dict's."""

    def __setitem__(self, payload: bytes, msg: Any) -> None:
        if isinstance(msg, Proposal) and msg.encode() == payload:
            msg.__dict__["_encoded"] = payload  # the cached_property's slot; equal bytes
        super().__setitem__(payload, msg)


@dataclass
class Epoch:
    """One validator set and the heights it decides (``last`` None: every later one)."""

    first: int
    members: list[int]  # pool indices; a validator's core index is its position here
    params: Params
    crypto: Crypto
    cache: dict[bytes, Any]  # decoded messages: per set (an aggregate's verdict is per set)
    last: int | None = None
    anchor: int | None = None  # rounds counted from it: fixed by block first - 1 (see _anchor)

    def index_of(self, pool_index: int) -> int | None:
        try:
            return self.members.index(pool_index)
        except ValueError:
            return None


@dataclass
class SimNode:
    nid: int
    index: int
    honest: bool
    strategy: str
    core: Core
    signer: Signer
    offset_us: int
    up: bool = True
    busy_until: int = 0
    exec_busy: bool = False  # the chain thread is running a job
    jobs: ChainJobs = field(default_factory=lambda: ChainJobs(1.0))  # waiting for the thread
    jobs_at: int = -1  # when a deferred job is next due (a JOBS event is queued), -1: none
    incarnation: int = 0  # bumped by a crash: answers of executions before it are dropped
    gas: GasModel | None = None  # with exec_us_per_tx: where this node cuts its blocks
    tick_at: int = -1
    tick_token: int = 0
    chain: list[tuple[Block, Certificate]] = field(default_factory=list)
    by_hash: dict[bytes, tuple[Block, Certificate]] = field(default_factory=dict)
    persisted: bytes | None = None
    persisted_block: Block | None = None  # the stored state's locked block (see _store)
    crash_pending: bool = False
    link: set[int] | None = None  # twins: the nids this node can talk to
    state: dict[str, Any] = field(default_factory=dict)  # strategy scratch space
    pending: set[int] = field(default_factory=set)  # simulated transactions in its mempool
    member: bool = True  # its core's set decides its next height (else it follows, see Epoch)
    ep: Epoch | None = None  # the set of its core
    follow_at: int = -1  # a follower's next request for a block (-1: none queued)


@dataclass
class SimResult:
    config: SimConfig
    committed_heights: int
    committed_heights_max: int
    safety_violations: int
    violations: list[str]
    agreement_s: list[float]
    messages: int
    messages_per_node_per_round: float
    chain_digest: str
    heights_after_heal: int
    stats: dict[str, int]
    honest_chains: dict[int, list[bytes]]
    commit_s: list[float] = field(default_factory=list)  # from the block's round start
    uplink_bytes: int = 0  # sent through modelled uplinks (0 without bandwidth)
    block_bytes: int = 0  # encoded size of a simulated block's body of transactions
    spread_s: list[float] = field(default_factory=list)  # round start -> committed block arrives
    proposers: list[int] = field(
        default_factory=list
    )  # proposer of each height of the longest honest chain
    tx_commit_ms: dict[int, int] = field(
        default_factory=dict
    )  # transaction -> first honest commit (virtual ms)

    def percentile(self, p: float, xs: list[float] | None = None) -> float | None:
        """Percentile ``p`` of agreement times, or of ``xs`` (e.g. :attr:`commit_s`)."""
        xs = sorted(self.agreement_s if xs is None else xs)
        if not xs:
            return None
        k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
        return xs[k]

    def summary(self) -> dict[str, Any]:
        c = self.config
        p50, p99 = self.percentile(50), self.percentile(99)
        c50, c99 = self.percentile(50, self.commit_s), self.percentile(99, self.commit_s)
        s50, s99 = self.percentile(50, self.spread_s), self.percentile(99, self.spread_s)
        return {
            "nodes": c.nodes,
            "byzantine": c.byzantine,
            "strategy": c.strategy,
            "seed": c.seed,
            "rounds": c.rounds,
            "round_ms": c.round_ms,
            "stage2_ms": c.stage2_ms,
            "latency_ms": c.latency_ms,
            "verify_ms": c.verify_ms,
            "exec_ms": c.exec_ms,
            "exec_us_per_tx": c.exec_us_per_tx,
            "crypto": c.crypto,
            "partition": c.partition,
            "committed_heights": self.committed_heights,
            "committed_heights_max": self.committed_heights_max,
            "heights_after_heal": self.heights_after_heal,
            "safety_violations": self.safety_violations,
            "agreement_s_p50": None if p50 is None else round(p50, 3),
            "agreement_s_p99": None if p99 is None else round(p99, 3),
            "commit_s_p50": None if c50 is None else round(c50, 3),
            "commit_s_p99": None if c99 is None else round(c99, 3),
            "block_spread_s_p50": None if s50 is None else round(s50, 3),
            "block_spread_s_p99": None if s99 is None else round(s99, 3),
            "verify_cost": c.verify_cost or "off",
            "bandwidth_mbps": c.bandwidth_mbps,
            "block_txs": c.block_txs,
            "tx_bytes": c.tx_bytes,
            "block_bytes": self.block_bytes,
            "fanout": c.fanout,
            "gossip_interval_ms": int(c.latency_ms)
            if c.gossip_interval_ms < 0
            else c.gossip_interval_ms,
            "uplink_mb_per_node_per_round": round(
                self.uplink_bytes / 1e6 / max(1, c.nodes * c.rounds), 3
            ),
            "messages_per_node_per_round": round(self.messages_per_node_per_round, 2),
            "chain_digest": self.chain_digest,
            "stats": self.stats,
        }


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        from accord.sim import byzantine

        self.c = c = config.resolved()
        if c.byzantine * 3 >= c.nodes and c.byzantine > 0:
            raise AccordError(f"{c.byzantine} Byzantine validators of {c.nodes} break f < n/3")
        self.rng = random.Random(c.seed)
        self.params = Params(
            chain_id="accord-sim",
            n=c.nodes,
            genesis_time_ms=0,
            round_ms=c.round_ms,
            stage2_ms=c.stage2_ms,
            expected_leaders=c.expected_leaders,
            gossip_fanout=c.fanout,
            broadcast_max=c.broadcast_max,
            ticket_wait_ms=c.ticket_wait_ms,
            skip_empty=c.skip_empty,
            gossip_interval_ms=int(c.latency_ms)
            if c.gossip_interval_ms < 0
            else c.gossip_interval_ms,
        )
        self.crypto: Crypto
        signers: list[Signer]
        if c.crypto == "bls":
            from accord.base.crypto import bls

            secrets = [bls.demo_secret(f"v{i}") for i in range(c.nodes)]
            keys = [bls.public_key(s) for s in secrets]
            pops = [bls.pop_prove(s) for s in secrets]
            self.crypto = BlsCrypto(keys, pops=pops)  # checks every proof of possession
            signers = [BlsSigner(i, s) for i, s in enumerate(secrets)]
        else:
            model = CostModelCrypto(c.nodes, seed=c.seed.to_bytes(8, "big"))
            self.crypto = model
            signers = [model.signer(i) for i in range(c.nodes)]
        self.signers = signers
        # Signature checks metered by signer count (accord.sim.costs); checks still counts them.
        cost = parse_verify_cost(c.verify_cost)
        self.metered: MeteredCrypto | None = None
        if cost is not None:
            self.metered = MeteredCrypto(self.crypto, cost)
            self.crypto = self.metered
        self.epochs = self._epochs()
        self.tx_pool = tx_pool(c.block_txs, c.tx_bytes, "accord-sim", c.seed)
        self.tx_pool_body = body_hash(self.tx_pool)  # every simulated block carries the pool
        self._prefix_bodies: dict[int, bytes] = {}  # ...or, cut by a GasModel, a prefix of it
        # Every validator has the block's transactions in its mempool (they gossip before
        # blocks do), so proposals take them from there, as nodes do (messages._decode_proposal).
        by_hash = {hashlib.sha256(tx.encode()).digest(): tx for tx in self.tx_pool}
        self._tx_cache = by_hash.get if by_hash else None
        # Bandwidth: bits per virtual microsecond, and when each node's uplink is next free.
        self.bits_per_us = c.bandwidth_mbps
        self.genesis_hash = hashlib.sha256(b"accord-sim-genesis").digest()
        self.decode_cache: dict[bytes, Any] = self.epochs[0].cache

        # Byzantine validators are a seeded random choice of indices.
        byz = set(self.rng.sample(range(c.nodes), c.byzantine)) if c.byzantine else set()
        for ep in self.epochs:
            bad = len(byz & set(ep.members))
            if bad and bad * 3 >= len(ep.members):
                raise AccordError(
                    f"{bad} Byzantine validators of the {len(ep.members)} deciding from height "
                    f"{ep.first} break f < n/3"
                )
        strategies = byzantine.assign(c.strategy, sorted(byz), self.rng)
        self.nodes: list[SimNode] = []
        for i in range(c.nodes):
            strat = strategies.get(i, "honest")
            self.nodes.append(self._make_node(len(self.nodes), i, strat))
            if strat == "twins":
                self.nodes.append(self._make_node(len(self.nodes), i, strat))
        self.by_index: dict[int, list[SimNode]] = {}
        for nd in self.nodes:
            self.by_index.setdefault(nd.index, []).append(nd)
        byzantine.setup(self)
        self.strategies = byzantine

        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.now = 0
        self.group: list[int] = [0] * len(self.nodes)
        self.partitioned = c.partition != "none"
        self.messages = 0
        self.violations: list[str] = []
        self.committed: dict[int, bytes] = {}
        self.votes: dict[tuple[int, int, int], bytes] = {}
        self.agreement: list[float] = []
        self.commit_latency: list[float] = []
        self.block_seen: dict[tuple[int, bytes], int] = {}  # (nid, block hash) -> first arrival
        self.uplink_free = [0] * len(self.nodes)
        self.uplink_bytes = 0
        self.heal_height: int | None = None
        self.crash_count = 0
        self.builds = 0  # BuildBlock actions performed (blocks executed to propose)
        self.skipped_builds = 0  # builds whose round had passed when the chain thread was free
        self.network: Network | None = c.network(self) if c.network is not None else None
        self.block_txs_ids: dict[bytes, frozenset[int]] = {}  # block hash -> simulated transactions
        self.tx_commit_ms: dict[int, int] = {}

    def _epochs(self) -> list[Epoch]:
        """The validator sets of the run, checked (see "Validator-set changes" above)."""
        c = self.c
        first = list(c.members) or list(range(c.nodes))
        changes = sorted(c.set_changes)
        if not changes and not c.param_changes and first == list(range(c.nodes)):
            return [
                Epoch(1, first, self.params, self.crypto, _DecodeCache(), anchor=0)  # genesis
            ]
        timing: dict[int, dict[str, Any]] = {}
        for height, change in c.param_changes:
            if height < 2 or height in timing:
                raise AccordError("parameter changes must be at distinct heights above 1")
            timing[height] = dict(change)
        sets = {1: first, **dict(changes)}
        if len(sets) != len(changes) + 1 or any(h < 2 for h, _ in changes):
            raise AccordError("set changes must be at increasing heights above 1")
        out: list[Epoch] = []
        members: list[int] = first
        fields: dict[str, Any] = {}
        for height in sorted({*sets, *timing}):
            if height in sets:
                members = list(sets[height])
                if not members or len(set(members)) != len(members):
                    raise AccordError(f"the set from height {height} must name validators once")
                if not all(0 <= m < c.nodes for m in members):
                    raise AccordError(
                        f"the set from height {height} names a validator not in the pool"
                    )
            fields.update(timing.get(height, {}))
            if out:
                out[-1].last = height - 1
            params = dataclasses.replace(self.params, n=len(members), **fields)
            if params.stage2_ms >= params.round_ms:
                raise AccordError(f"from height {height}: stage2_ms must be below round_ms")
            out.append(
                Epoch(height, members, params, SubsetCrypto(self.crypto, members), _DecodeCache())
            )
        out[0].anchor = self.params.genesis_time_ms
        return out

    def _anchor(self, ep: Epoch, chain: list[tuple[Block, Certificate]]) -> int:
        """What ``ep``'s rounds are counted from: its predecessor's, or, where ``round_ms``
        changes, moved by the round of the block before its first height as the ledger moves
        it (:func:`accord.contracts.runtime.moved_anchor`). Fixed once that block is in
        ``chain`` (every honest node commits the same one); before, the predecessor's (a
        parked follower's core, rebuilt before it is driven)."""
        if ep.anchor is not None:
            return ep.anchor
        i = self.epochs.index(ep)
        prev = self.epochs[i - 1]
        base = self._anchor(prev, chain)
        if prev.params.round_ms == ep.params.round_ms:
            ep.anchor = base
            return base
        if len(chain) < ep.first - 1:
            return base
        r = chain[ep.first - 2][0].header.round
        ep.anchor = moved_anchor(base, prev.params.round_ms, ep.params.round_ms, r)
        return ep.anchor

    def params_at(self, height: int, chain: list[tuple[Block, Certificate]]) -> Params:
        """The core parameters of ``height`` (its epoch's, rounds counted from its anchor)."""
        ep = self.epoch_at(height)
        return dataclasses.replace(ep.params, genesis_time_ms=self._anchor(ep, chain))

    def epoch_at(self, height: int) -> Epoch:
        for ep in reversed(self.epochs):
            if height >= ep.first:
                return ep
        return self.epochs[0]

    def _make_core(
        self,
        nd: SimNode | None,
        index: int,
        chain: list[tuple[Block, Certificate]],
        safety: SafetyState | None,
    ) -> tuple[Core, bool, Epoch]:
        """The core of the set deciding the height after ``chain``, and whether ``index`` is in
        it (if not, the core is one of the set it will next join, not driven until then)."""
        c = self.c
        height = len(chain) + 1
        ep = self.epoch_at(height)
        j = ep.index_of(index)
        member = j is not None
        if j is None:  # a follower: park a core of the next set that has it, if any
            later = [e for e in self.epochs if e.first > height and e.index_of(index) is not None]
            ep = later[0] if later else ep
            j = ep.index_of(index)
            if j is None:
                ep, j = self.epochs[0], 0
        signer: Signer = self.signers[index]
        if ep.members != list(range(c.nodes)):
            signer = ReindexedSigner(j, signer)
        multi = len(self.epochs) > 1
        through = None
        if multi and member:
            through = len(chain) + 2 if ep.last is None else min(ep.last, len(chain) + 2)
        core = c.core_class(
            dataclasses.replace(ep.params, genesis_time_ms=self._anchor(ep, chain)),
            signer,
            ep.crypto,
            head=(len(chain), chain[-1][0].hash if chain else self.genesis_hash),
            head_cert=chain[-1][1] if chain else None,
            head_sortition=chain[-1][0].header.sortition if chain else b"",
            safety=safety,
            decode_cache=ep.cache,
            tx_cache=self._tx_cache,
            through=through,
        )
        if through is not None and ep.last is not None and through >= ep.last:
            core.handle(SetKnown(ep.last, final=True))
        del nd
        return core, member, ep

    def _make_node(self, nid: int, index: int, strategy: str) -> SimNode:
        c = self.c
        offset = int(self.rng.uniform(-c.drift_ms, c.drift_ms) * 1000) if c.drift_ms else 0
        if index < len(c.clock_offsets_ms):
            offset = int(c.clock_offsets_ms[index] * 1000)
        core, member, ep = self._make_core(None, index, [], None)
        return SimNode(
            nid,
            index,
            strategy == "honest",
            strategy,
            core,
            self.signers[index],
            offset,
            jobs=ChainJobs(c.round_ms / 1000),
            gas=GasModel(
                c.round_ms,
                max(1, len(self.tx_pool)) * TRANSFER_GAS,
                max(1, len(self.tx_pool)),
                c.build_budget,
            )
            if c.exec_us_per_tx > 0
            else None,
            member=member,
            ep=ep,
        )

    # --- event queue -------------------------------------------------------------------

    def push(self, t: int, kind: int, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, data))

    def local_ms(self, nd: SimNode, t: int | None = None) -> int:
        return ((self.now if t is None else t) + nd.offset_us) // 1000

    def latency_us(self) -> int:
        c = self.c
        lat = c.latency_ms * (1 + c.jitter * (2 * self.rng.random() - 1))
        if c.tail and self.rng.random() < c.tail:
            lat += self.rng.expovariate(1 / c.latency_ms) if c.latency_ms > 0 else 0
        return max(1, int(lat * 1000))

    # --- running -----------------------------------------------------------------------

    def run(self) -> SimResult:
        c = self.c
        end = c.rounds * c.round_ms * 1000
        for nd in self.nodes:
            if nd.member:
                self._schedule_tick(nd)
            else:
                self._schedule_follow(nd)
        if c.partition != "none":
            self._adversary_step()
        for nid, crash_ms, restart_ms in c.crashes:
            self.push(crash_ms * 1000, CRASH, nid)
            self.push(restart_ms * 1000, RESTART, nid)
        for tx_id, (at_ms, nid) in enumerate(c.txs):
            self.push(at_ms * 1000, TX_ARRIVAL, (tx_id, nid))
        last_report = 0
        while self.heap:
            t, _, kind, data = heapq.heappop(self.heap)
            if t > end:
                break
            self.now = t
            if kind == DELIVER:
                self._deliver(data)
            elif kind == TICK:
                nd = self.nodes[data[0]]
                if nd.up and nd.member and data[1] == nd.tick_token:
                    nd.tick_at = -1
                    self._run_core(nd, Tick(self.local_ms(nd)))
            elif kind == FETCHED:
                nd = self.nodes[data[0]]
                if nd.up and nd.member:
                    self._run_core(nd, BlockFetched(data[1], data[2]))
            elif kind == EXECUTED:
                nd = self.nodes[data[0]]
                if nd.up and nd.member and data[1] == nd.incarnation:
                    nd.exec_busy = False
                    answer, block = data[2], data[3]
                    if isinstance(answer, BlockBuilt) or answer.ok:
                        nd.jobs.found_valid(block)  # as the node does, before the core hears
                    self._run_core(nd, answer)
                    self._next_job(nd)
            elif kind == FOLLOW:
                nd = self.nodes[data[0]]
                if nd.up and not nd.member and data[1] == nd.follow_at:
                    nd.follow_at = -1
                    self._follow(nd, data[2])
            elif kind == JOBS:
                nd = self.nodes[data[0]]
                if nd.up and data[1] == nd.incarnation and data[2] == nd.jobs_at:
                    nd.jobs_at = -1
                    self._next_job(nd)
            elif kind == TX_ARRIVAL:
                tx_id, target = data
                for nd in self.nodes if target < 0 else [self.nodes[target]]:
                    if tx_id not in self.tx_commit_ms:
                        nd.pending.add(tx_id)
                        if nd.up and nd.member and not nd.core.status().txs_pending:
                            self._run_core(nd, TxsPending(True))
            elif kind == ADVERSARY:
                self._adversary_step()
            elif kind == CRASH:
                self._crash(self.nodes[data])
            elif kind == RESTART:
                self._restart(self.nodes[data])
            if c.progress is not None and t - last_report > 200_000:
                last_report = t
                c.progress(t // 1000, end // 1000)
        return self._result()

    def _deliver(self, data: tuple[int, int, bytes]) -> None:
        nid, frm, payload = data
        nd = self.nodes[nid]
        if not nd.up or not nd.member:
            return
        if len(self.epochs) > 1:
            assert nd.ep is not None
            at = nd.ep.index_of(frm)
            if at is None:
                return  # not in the receiver's set: its transport has no such peer
            frm = at
        if nd.busy_until > self.now:
            self.push(nd.busy_until, DELIVER, data)
            return
        self.strategies.observe(self, nd, frm, payload)
        local = self.local_ms(nd)
        if local > nd.core.status().now_ms:
            # As the node does (a lazy tick before other events): the core judges how late
            # messages come by its own clock, so that clock must be current when they arrive.
            self._run_core(nd, Tick(local))
        self._run_core(nd, MessageReceived(frm, payload))
        if payload[:2] == PROPOSAL_PREFIX and nd.honest:
            cache = self.decode_cache if nd.ep is None else nd.ep.cache
            prop = cache.get(payload)  # decoded by the core just now, if well-formed
            if isinstance(prop, Proposal):
                self.block_seen.setdefault((nd.nid, prop.block.hash), self.now)

    def _answer(self, nd: SimNode, a: BuildBlock | ValidateBlock | Block) -> Any:
        if isinstance(a, BuildBlock):
            self.builds += 1
            return BlockBuilt(self.build_block(nd, a))
        block = a.block if isinstance(a, ValidateBlock) else a
        return BlockValidated(
            block.hash, block.header.state_root != INVALID_ROOT and self._time_ok(nd, block)
        )

    def _parent_time(self, nd: SimNode) -> int:
        return nd.chain[-1][0].header.time_ms if nd.chain else self.params.genesis_time_ms

    def _time_ok(self, nd: SimNode, block: Block) -> bool:
        """The node's vote-time rule (accord.ledger.blocktime) on this node's clock: a proposal
        stamped too far ahead of it, or outside its round's slot, is refused."""
        h = block.header
        if not nd.chain and h.parent_hash != self.genesis_hash:
            return True  # not on this node's head: the core decides what to do with it
        if nd.chain and h.parent_hash != nd.chain[-1][0].hash:
            return True
        p = self.params_at(h.height, nd.chain)
        return (
            block_time_error(
                time_ms=h.time_ms,
                round=h.round,
                parent_time_ms=self._parent_time(nd),
                now_ms=self.local_ms(nd),
                genesis_time_ms=p.genesis_time_ms,
                round_ms=p.round_ms,
                drift_ms=3 * p.round_ms,
            )
            is None
        )

    def _next_job(self, nd: SimNode) -> None:
        """Start the chain thread's next job: the one the node's policy picks, the very same
        code (:class:`accord.consensus.jobs.ChainJobs`), on this node's virtual clock."""
        if nd.exec_busy or not nd.jobs:
            return
        st = nd.core.status()
        stale = nd.jobs.stale_builds
        job, wait = nd.jobs.next(
            committed=st.height - 1, height=st.height, round=st.round, now=self.now / 1e6
        )
        self.skipped_builds += nd.jobs.stale_builds - stale
        if job is None:
            if wait is not None:  # a deferred validation: look again when it is due
                at = self.now + int(wait * 1e6) + 1
                if nd.jobs_at < 0 or at < nd.jobs_at:
                    nd.jobs_at = at
                    self.push(at, JOBS, (nd.nid, nd.incarnation, at))
            return
        nd.exec_busy = True
        answer = self._answer(nd, job)
        block = answer.block if isinstance(answer, BlockBuilt) else job
        if nd.gas is not None:  # the cost per transaction, measured as the node measures it
            assert isinstance(block, Block)
            exec_us = int(self.c.exec_us_per_tx * len(block.txs))
            nd.gas.observe(exec_us / 1e6, len(block.txs), len(block.txs) * TRANSFER_GAS)
        else:
            exec_us = int(self.c.exec_ms * 1000)
        at = max(self.now, nd.busy_until) + exec_us
        self.push(at, EXECUTED, (nd.nid, nd.incarnation, answer, block))

    def _schedule_tick(self, nd: SimNode) -> None:
        w = nd.core.next_wakeup_ms()
        t = max(w * 1000 - nd.offset_us, self.now, nd.busy_until)
        if nd.tick_at < 0 or t < nd.tick_at:
            nd.tick_token += 1
            nd.tick_at = t
            self.push(t, TICK, (nd.nid, nd.tick_token))

    def _run_core(self, nd: SimNode, event: Any) -> None:
        """Feed one event and perform the resulting actions (application answers loop back)."""
        queue = [event]
        start = max(self.now, nd.busy_until)
        busy_us = 0
        while queue:
            ev = queue.pop(0)
            before = self.crypto.checks
            before_us = self.metered.cost_us if self.metered is not None else 0.0
            actions = nd.core.handle(ev)
            busy_us += int((self.crypto.checks - before) * self.c.verify_ms * 1000)
            if self.metered is not None:
                busy_us += int(self.metered.cost_us - before_us)
            actions = self.strategies.transform(self, nd, actions)
            send_at = start + busy_us
            for i, a in enumerate(actions):
                if isinstance(a, Persist):
                    self._store(nd, a.value)
                    if nd.honest:
                        self._record_votes(nd, a.value)
                    if nd.crash_pending:
                        nd.crash_pending = False
                        self._go_down(nd)  # crash right after the write, before anything else
                        return
                elif isinstance(a, Broadcast):
                    self.broadcast(nd, a.payload, send_at)
                elif isinstance(a, Send):
                    self.send(nd, a.to_index, a.payload, send_at)
                elif isinstance(a, BuildBlock | ValidateBlock):
                    if self.c.exec_ms > 0 or nd.gas is not None:  # started after this batch
                        if isinstance(a, BuildBlock):
                            nd.jobs.build(a)
                        else:
                            nd.jobs.validate(a.block, self.now / 1e6)
                    else:
                        queue.append(self._answer(nd, a))
                elif isinstance(a, Commit):
                    self._on_commit(nd, a.block, a.certificate, send_at)
                    if len(self.epochs) > 1:
                        queue.append(self._set_known(nd))
                    if nd.core.status().txs_pending != bool(nd.pending):
                        queue.append(TxsPending(bool(nd.pending)))
                elif isinstance(a, FetchBlock):
                    self._fetch(nd, a, send_at)
                elif isinstance(a, CancelBuild):
                    # Ignored: a simulated build costs a fixed exec_ms and is never cut short,
                    # as before the core emitted this; its BlockBuilt comes and is proposed.
                    pass
                del i
        nd.busy_until = start + busy_us
        if nd.core.status().done:
            self._handoff(nd)
            return
        self._schedule_tick(nd)
        if nd.jobs and not nd.exec_busy:
            self._next_job(nd)

    # --- validator-set changes ---------------------------------------------------------

    def _set_known(self, nd: SimNode) -> SetKnown:
        """What a node knows after committing its head: the sets through head + 2."""
        assert nd.ep is not None
        h, last = len(nd.chain), nd.ep.last
        through = h + 2 if last is None else min(last, h + 2)
        return SetKnown(through, final=last is not None and through >= last)

    def _handoff(self, nd: SimNode) -> None:
        """The core's set handed over after the node's head: the next set's core, with the
        persisted safety state carried over (its lock, of a decided height, dropped), or
        following by certificates outside the new set."""
        safety = self._persisted_safety(nd)
        if safety is not None:
            safety.lock, safety.lock_block = None, None  # of a decided height (rule 4)
            self._store(nd, safety.encode())
        nd.core, nd.member, nd.ep = self._make_core(nd, nd.index, nd.chain, safety)
        nd.tick_token += 1
        nd.tick_at = -1
        nd.jobs.clear()
        nd.exec_busy, nd.jobs_at = False, -1
        nd.incarnation += 1  # answers of the old set's jobs are dropped
        if nd.member:
            self._schedule_tick(nd)
        else:
            self._schedule_follow(nd)

    def _persisted_safety(self, nd: SimNode) -> SafetyState | None:
        if nd.persisted is None or self.c.amnesia:
            return None
        value = nd.persisted + (b"" if nd.persisted_block is None else nd.persisted_block.encode())
        return SafetyState.decode(value, nd.core.n)

    def _schedule_follow(self, nd: SimNode, got: tuple[Block, Certificate] | None = None) -> None:
        if nd.follow_at >= 0 and got is None:
            return
        if got is None:
            at = self.now + max(1, self.c.round_ms // 2) * 1000
        else:
            at = self.now + 2 * self.latency_us()  # the request there, the block back
        nd.follow_at = at
        self.push(at, FOLLOW, (nd.nid, at, got))

    def _follow(self, nd: SimNode, got: tuple[Block, Certificate] | None) -> None:
        """A validator outside its height's set: take the block a peer sent if its
        certificate verifies against the set of its height (as the node's catch-up does),
        join the set once at a height of one it is in, else ask a peer for the next block."""
        if got is not None:
            block, cert = got
            h = len(nd.chain) + 1
            ep = self.epoch_at(h)
            saved = self.crypto.checks
            try:
                if block.height != h or cert.height != h or cert.block_hash != block.hash:
                    raise AccordError("not the next block")
                verify_certificate(ep.crypto, ep.params.chain_id, cert, ep.params.quorum)
            except AccordError:
                self.crypto.checks = saved
            else:
                self.crypto.checks = saved
                self._on_commit(nd, block, cert, self.now)
                if self.epoch_at(len(nd.chain) + 1).index_of(nd.index) is not None:
                    nd.core, nd.member, nd.ep = self._make_core(
                        nd, nd.index, nd.chain, self._persisted_safety(nd)
                    )
                    nd.follow_at = -1
                    nd.busy_until = max(nd.busy_until, self.now)
                    self._schedule_tick(nd)
                    return
        h = len(nd.chain) + 1
        peers = [
            p
            for p in self.nodes
            if p.up and p.nid != nd.nid and len(p.chain) >= h and self.linked(nd, p)
        ]
        if peers:
            peer = peers[self.rng.randrange(len(peers))]
            self._schedule_follow(nd, peer.chain[h - 1])
        else:
            self._schedule_follow(nd)

    # --- network -----------------------------------------------------------------------

    def linked(self, a: SimNode, b: SimNode) -> bool:
        if a.link is not None and b.nid not in a.link:
            return False
        if b.link is not None and a.nid not in b.link:
            return False
        return not self.partitioned or self.group[a.nid] == self.group[b.nid]

    def uplink(self, frm: SimNode, size: int, at: int) -> int:
        """When a message of ``size`` payload bytes, ready at ``at``, has left ``frm``'s uplink
        (messages leave one after another; unlimited bandwidth: at once)."""
        if self.bits_per_us <= 0:
            return at
        start = max(at, self.uplink_free[frm.nid])
        done = start + max(1, int((size + FRAME_OVERHEAD) * 8 / self.bits_per_us))
        self.uplink_free[frm.nid] = done
        self.uplink_bytes += size + FRAME_OVERHEAD
        return done

    def transmit(self, frm: SimNode, to: SimNode, payload: bytes, at: int) -> None:
        self.messages += 1
        if frm.link is not None and to.nid not in frm.link:
            return  # twins: a link that does not exist carries nothing
        at = self.uplink(frm, len(payload), at)  # sent even if a partition then drops it
        if not self.linked(frm, to):
            return
        if self.network is not None:
            self.network.transmit(frm, to, payload, at)
            return
        c = self.c
        if c.loss and self.rng.random() < c.loss:
            return
        self.push(at + self.latency_us(), DELIVER, (to.nid, frm.index, payload))
        if c.duplicate and self.rng.random() < c.duplicate:
            self.push(at + self.latency_us(), DELIVER, (to.nid, frm.index, payload))

    def _pool_index(self, nd: SimNode, index: int) -> int:
        """A core's index of a peer (in its set) as the pool's."""
        ep = nd.ep
        if ep is None or len(self.epochs) == 1:
            return index
        return ep.members[index] if 0 <= index < len(ep.members) else -1

    def send(self, frm: SimNode, to_index: int, payload: bytes, at: int) -> None:
        for to in self.by_index.get(self._pool_index(frm, to_index), ()):
            if to.nid != frm.nid:
                self.transmit(frm, to, payload, at)

    def broadcast(self, frm: SimNode, payload: bytes, at: int) -> None:
        for to in self.nodes:
            if to.nid != frm.nid:
                self.transmit(frm, to, payload, at)

    # --- the simulated application -----------------------------------------------------

    def build_block(self, nd: SimNode, a: BuildBlock) -> Block:
        seed = hashlib.sha256(
            a.parent_hash
            + a.height.to_bytes(8, "big")
            + a.round.to_bytes(8, "big")
            + a.proposer_index.to_bytes(4, "big")
        ).digest()
        txs, body = self._block_body(nd)
        header = Header(
            chain_id=self.params.chain_id,
            height=a.height,
            round=a.round,
            parent_hash=a.parent_hash,
            tx_root=hashlib.sha256(b"tx" + seed).digest(),
            state_root=hashlib.sha256(b"state" + seed).digest(),
            tx_count=len(txs),
            proposer=a.proposer_index,
            time_ms=max(self._parent_time(nd), self.local_ms(nd)),
            sortition=a.sortition,
            body_hash=body,
        )
        block = self.strategies.build(self, nd, Block(header, txs))
        if nd.pending:
            self.block_txs_ids[block.hash] = frozenset(nd.pending)
        return block

    def _block_body(self, nd: SimNode) -> tuple[tuple[Tx, ...], bytes]:
        """The transactions of a block this node builds now: the pool, or with a cost model
        the prefix of it that the node's :class:`GasModel` says fits the build budget."""
        if nd.gas is None:
            return self.tx_pool, self.tx_pool_body
        k = min(len(self.tx_pool), nd.gas.block_cap())
        body = self._prefix_bodies.get(k)
        if body is None:
            body = self._prefix_bodies[k] = body_hash(self.tx_pool[:k])
        return self.tx_pool[:k], body

    def _fetch(self, nd: SimNode, a: FetchBlock, at: int) -> None:
        for peer in self.by_index.get(self._pool_index(nd, a.from_index), ()):
            if not peer.up or not self.linked(nd, peer):
                continue
            found = peer.by_hash.get(a.block_hash)
            if found is not None:
                block, cert = found
            else:
                b = peer.core.block(a.block_hash)
                if b is None:
                    continue
                block, cert = b, None
            self.messages += 2
            # The request travels to the peer, the body leaves through the peer's uplink.
            sent = self.uplink(
                peer,
                len(block.encode()) + (0 if cert is None else len(cert.encode())),
                at + self.latency_us(),
            )
            self.push(sent + self.latency_us(), FETCHED, (nd.nid, block, cert))
            return

    def _on_commit(self, nd: SimNode, block: Block, cert: Certificate, at: int) -> None:
        expected_parent = nd.chain[-1][0].hash if nd.chain else self.genesis_hash
        if block.height != len(nd.chain) + 1 or block.header.parent_hash != expected_parent:
            if nd.honest:
                self.violations.append(
                    f"node {nd.nid} committed a block that does not extend its chain"
                )
            return
        nd.chain.append((block, cert))
        nd.by_hash[block.hash] = (block, cert)
        ids = self.block_txs_ids.get(block.hash, frozenset())
        if ids:
            nd.pending -= ids
            if nd.honest:
                for tx_id in ids:
                    self.tx_commit_ms.setdefault(tx_id, at // 1000)
        if not nd.honest:
            return
        saved = self.crypto.checks
        saved_us = self.metered.cost_us if self.metered is not None else 0.0
        try:
            ep = self.epoch_at(block.height)
            verify_certificate(ep.crypto, self.params.chain_id, cert, ep.params.quorum)
        except AccordError as e:
            self.violations.append(
                f"node {nd.nid} committed height {block.height} with a bad certificate: {e}"
            )
        self.crypto.checks = saved  # the checker's own check costs the validator nothing
        if self.metered is not None:
            self.metered.cost_us = saved_us
        prev = self.committed.setdefault(block.height, block.hash)
        if prev != block.hash:
            self.violations.append(f"two blocks committed at height {block.height}")
        stage2 = (cert.round * self.c.round_ms + self.c.round_ms - self.c.stage2_ms) * 1000
        self.agreement.append((at - stage2) / 1e6)
        self.commit_latency.append((at - block.header.round * self.c.round_ms * 1000) / 1e6)

    def _store(self, nd: SimNode, value: bytes) -> None:
        """Keep a node's persisted safety state. Its bytes end with the locked block's
        encoding (SafetyState.encode); a megabyte block persisted by 10,000 validators would
        take 10 GB, so when the tail is that of the core's locked block, the block object is
        kept instead of a copy of its bytes. The stored bytes are restored exactly."""
        block = nd.core.locked_block()
        if block is not None:
            enc = block.encode()
            if len(enc) < len(value) and value.endswith(enc):
                nd.persisted, nd.persisted_block = value[: len(value) - len(enc)], block
                return
        nd.persisted, nd.persisted_block = value, None

    def _record_votes(self, nd: SimNode, value: bytes) -> None:
        # The votes are the first six fields of the persisted SafetyState (see its encode);
        # they are read from the bytes without decoding the locked block behind them.
        u = encoding.Reader(value)
        if u.array_header() != 8:
            self.violations.append(f"node {nd.nid} persisted something that is not a safety state")
            return
        p_round, _, p_hash, c_round, _, c_hash = (u.value() for _ in range(6))
        for phase, rnd, bh in ((1, p_round, p_hash), (2, c_round, c_hash)):
            if rnd < 0 or not bh:
                continue
            key = (nd.index, rnd, phase)
            prev = self.votes.get(key)
            if prev is None:
                self.votes[key] = bh
                if phase == 2 and p_round > rnd:
                    # Rule 5 of the core: C for round r only while no round above r is closed
                    # for P. The state that reveals a new C vote is the one it was signed in.
                    self.violations.append(
                        f"validator {nd.index} signed C in round {rnd} after closing round {p_round} for P"
                    )
            elif prev != bh:
                self.violations.append(
                    f"validator {nd.index} signed two {('P', 'C')[phase - 1]} votes in round {rnd}"
                )

    # --- faults ------------------------------------------------------------------------

    def _crash(self, nd: SimNode) -> None:
        if self.c.crash_mid_batch:
            nd.crash_pending = True  # the next batch that persists is cut right after the write
        else:
            self._go_down(nd)

    def _go_down(self, nd: SimNode) -> None:
        self.crash_count += 1
        nd.up = False
        nd.tick_token += 1
        nd.tick_at = -1
        nd.incarnation += 1

    def _restart(self, nd: SimNode) -> None:
        if nd.crash_pending:  # never reached a persist: crash now
            nd.crash_pending = False
        safety = self._persisted_safety(nd)
        nd.core, nd.member, nd.ep = self._make_core(nd, nd.index, nd.chain, safety)
        nd.up = True
        nd.busy_until = self.now
        nd.exec_busy, nd.jobs_at = False, -1
        nd.jobs.clear()
        if nd.member:
            self._schedule_tick(nd)
        else:
            nd.follow_at = -1
            self._schedule_follow(nd)

    def _adversary_step(self) -> None:
        """Choose the partition for the next stretch of time (adaptively for 'adaptive')."""
        c = self.c
        if self.now >= c.heal_ms * 1000:
            self.partitioned = False
            if self.heal_height is None:
                self.heal_height = self._min_height()
            return
        ids = list(range(len(self.nodes)))
        if c.partition == "split":
            if not any(self.group):
                self.rng.shuffle(ids)
                for k, nid in enumerate(ids):
                    self.group[nid] = k % 2
        elif c.partition == "isolate":
            # Cut off f+1 honest validators: the rest cannot reach a quorum without them...
            honest = [nd.nid for nd in self.nodes if nd.honest]
            cut = set(self.rng.sample(honest, min(len(honest), self.params.f + 1)))
            self.group = [1 if nid in cut else 0 for nid in ids]
        else:  # adaptive: split the validators locked on the most popular block from the rest
            locked: dict[bytes, list[int]] = {}
            for nd in self.nodes:
                lk = nd.core.status().lock if nd.member else None
                if lk is not None:
                    locked.setdefault(lk.block_hash, []).append(nd.nid)
            self.rng.shuffle(ids)
            self.group = [0] * len(self.nodes)
            if locked:
                top = max(locked.values(), key=len)
                for nid in top:
                    self.group[nid] = 1
                for nid in ids[: len(ids) // 3]:
                    self.group[nid] = 1 - self.group[nid]
            else:
                for k, nid in enumerate(ids):
                    self.group[nid] = k % 2
        self.partitioned = True
        step = max(1, c.round_ms // 2) * 1000
        self.push(min(self.now + step, c.heal_ms * 1000), ADVERSARY, None)

    # --- results -----------------------------------------------------------------------

    def _min_height(self) -> int:
        hs = [len(nd.chain) for nd in self.nodes if nd.honest]
        return min(hs) if hs else 0

    def _result(self) -> SimResult:
        honest = [nd for nd in self.nodes if nd.honest]
        heights = [len(nd.chain) for nd in honest]
        chains = {nd.nid: [b.hash for b, _ in nd.chain] for nd in honest}
        h = hashlib.sha256()
        block_digest: dict[bytes, bytes] = {}  # each distinct block hashed once (1 MB blocks)
        for nd in honest:
            for b, cert in nd.chain:
                d = block_digest.get(b.hash)
                if d is None:
                    d = block_digest[b.hash] = hashlib.sha256(b.encode()).digest()
                h.update(d)
                h.update(cert.encode())
        stats: dict[str, int] = {}
        for nd in self.nodes:
            for k, v in nd.core.status().stats.items():
                if k != "received":
                    stats[k] = stats.get(k, 0) + v
        stats["crashes"] = self.crash_count
        stats["builds"] = self.builds
        if self.skipped_builds:
            stats["skipped_builds"] = self.skipped_builds
        base = self.heal_height if self.heal_height is not None else 0
        longest = max(honest, key=lambda nd: len(nd.chain), default=None)
        return SimResult(
            config=self.c,
            committed_heights=min(heights) if heights else 0,
            committed_heights_max=max(heights) if heights else 0,
            safety_violations=len(self.violations),
            violations=self.violations[:20],
            agreement_s=self.agreement,
            messages=self.messages,
            messages_per_node_per_round=self.messages / max(1, len(self.nodes) * self.c.rounds),
            chain_digest=h.hexdigest(),
            heights_after_heal=(min(heights) - base) if heights else 0,
            stats=stats,
            honest_chains=chains,
            commit_s=self.commit_latency,
            uplink_bytes=self.uplink_bytes,
            block_bytes=sum(len(tx.encode()) for tx in self.tx_pool),
            proposers=[] if longest is None else [b.header.proposer for b, _ in longest.chain],
            tx_commit_ms=dict(self.tx_commit_ms),
            spread_s=self._spread_times(honest),
        )

    def _spread_times(self, honest: list[SimNode]) -> list[float]:
        """Per (honest node, committed block proposed in a round): from the round's start to
        the block's first arrival as a proposal (blocks a node only fetched are left out)."""
        out = []
        for nd in honest:
            for block, _ in nd.chain:
                t = self.block_seen.get((nd.nid, block.hash))
                if t is not None:
                    out.append((t - block.header.round * self.c.round_ms * 1000) / 1e6)
        return out


def simulate(config: SimConfig) -> SimResult:
    return Simulator(config).run()
