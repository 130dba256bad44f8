"""Byzantine strategies for the simulator.

A Byzantine validator runs the honest core with its own keys (so it is as informed as an
honest one) and the strategy rewrites what it sends, or adds messages of its own:

* ``equivocate``: as a leader, sends one block to half the validators and a conflicting one
  (sometimes invalid) with the same ticket to the other half.
* ``double_vote``: for every vote it casts, also signs a vote for a different block in the same
  round and phase and sends it to half the validators.
* ``withhold``: never sends votes, and sends its proposals to a single peer only.
* ``replay``: re-sends old messages it has received, at random later times.
* ``bad_sortition``: each round claims leadership with a forged or losing ticket.
* ``bad_signature``: each round sends aggregates claiming every validator signed, with forged
  signatures, and aggregates whose counts do not match their signature.
* ``garbage``: sends random bytes and bit-flipped or truncated copies of its messages.
* ``ticket_only``: announces its winning tickets (when ``ticket_wait_ms`` > 0) but never sends
  a proposal, and each round announces a forged ticket too: the leaders that stood back for it
  must build at stage II, and forged tickets must be refused.
* ``twins``: two instances hold the same validator's keys, each connected to a different half
  of the network; each behaves honestly, together they equivocate.
* ``future_time``: as a leader, proposes blocks stamped ten years ahead (a proposer that
  would move the chain's clock forward for good); honest validators refuse to vote for them.
* ``mixed``: every Byzantine validator draws one of the above.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import TYPE_CHECKING, Any

import numpy as np

from accord.base.errors import DecodeError
from accord.base.types import Block, Header
from accord.consensus import (
    Aggregate,
    Broadcast,
    Persist,
    Proposal,
    SafetyState,
    Send,
    Ticket,
    sortition_message,
)
from accord.consensus.messages import decode_message

if TYPE_CHECKING:
    from accord.sim.engine import SimNode, Simulator

STRATEGIES = (
    "equivocate",
    "double_vote",
    "withhold",
    "replay",
    "bad_sortition",
    "bad_signature",
    "garbage",
    "twins",
    "ticket_only",
    "future_time",
)

FUTURE_MS = 10 * 365 * 24 * 3600 * 1000
"""How far ahead a ``future_time`` leader stamps its blocks."""


def assign(strategy: str, byz: list[int], rng: random.Random) -> dict[int, str]:
    if strategy in ("none", "honest") or not byz:
        return {}
    if strategy == "mixed":
        return {i: rng.choice(STRATEGIES) for i in byz}
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)} or mixed"
        )
    return {i: strategy for i in byz}


def setup(sim: Simulator) -> None:
    """Wire twins: each twin talks to its own half of the other nodes."""
    for index, group in sim.by_index.items():
        if len(group) != 2:
            continue
        others = [nd.nid for nd in sim.nodes if nd.index != index]
        sim.rng.shuffle(others)
        half = len(others) // 2
        group[0].link = set(others[:half]) | {group[1].nid}
        group[1].link = set(others[half:]) | {group[0].nid}


def observe(sim: Simulator, nd: SimNode, frm: int, payload: bytes) -> None:
    if nd.strategy == "replay":
        store: list[bytes] = nd.state.setdefault("seen", [])
        if len(store) < 256:
            store.append(payload)
        else:
            store[sim.rng.randrange(256)] = payload


def build(sim: Simulator, nd: SimNode, block: Block) -> Block:
    if not nd.honest and nd.strategy == "future_time":
        nd.state["future_blocks"] = nd.state.get("future_blocks", 0) + 1
        return Block(
            dataclasses.replace(block.header, time_ms=block.header.time_ms + FUTURE_MS), block.txs
        )
    return block


def transform(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    s = nd.strategy
    if nd.honest or s == "twins":
        return actions
    fn = _TRANSFORMS.get(s)
    return fn(sim, nd, actions) if fn is not None else actions


def _others(sim: Simulator, nd: SimNode) -> list[int]:
    return [i for i in range(nd.core.n) if i != nd.core.index]


def _new_round(nd: SimNode) -> bool:
    r = nd.core.status().round
    if r >= 0 and nd.state.get("round") != r:
        nd.state["round"] = r
        return True
    return False


def _equivocate(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    out: list[Any] = []
    for a in actions:
        payload = getattr(a, "payload", None)
        if payload is None or not isinstance(a, Broadcast | Send):
            out.append(a)
            continue
        try:
            msg = decode_message(payload, nd.core.n, 1 << 24)
        except DecodeError:
            out.append(a)
            continue
        if (
            not isinstance(msg, Proposal)
            or msg.proposer != nd.core.index
            or msg.justify is not None
        ):
            out.append(a)
            continue
        h = msg.block.header
        bad = sim.rng.random() < 0.5
        root = b"\xee" * 32 if bad else hashlib.sha256(b"alt" + h.state_root).digest()
        alt_h = Header(
            h.chain_id,
            h.height,
            h.round,
            h.parent_hash,
            h.tx_root,
            root,
            h.tx_count,
            h.proposer,
            h.time_ms,
            h.sortition,
            h.body_hash,
        )
        alt = Proposal(
            msg.round,
            msg.proposer,
            msg.sortition,
            Block(alt_h, msg.block.txs),
            None,
            msg.parent_cert,
        ).encode()
        targets = _others(sim, nd) if isinstance(a, Broadcast) else [a.to_index]
        for k, j in enumerate(targets):
            out.append(Send(j, payload if (k + j) % 2 == 0 else alt))
    return out


def _double_vote(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    out: list[Any] = list(actions)
    for a in actions:
        if not isinstance(a, Persist):
            continue
        s = SafetyState.decode(a.value, nd.core.n)
        last = nd.state.get("last", (-1, -1))
        for phase, rnd, h in ((1, s.p_round, s.p_height), (2, s.c_round, s.c_height)):
            if rnd <= last[phase - 1] or h <= 0:
                continue
            other = hashlib.sha256(b"conflict" + rnd.to_bytes(8, "big") + bytes([phase])).digest()
            cands = nd.core.candidate_hashes(rnd)
            for bh in cands:
                if bh != (s.p_hash if phase == 1 else s.c_hash):
                    other = bh
                    break
            from accord.base.types import vote_message

            sig = nd.signer.sign(vote_message(sim.params.chain_id, h, rnd, phase, other))
            vote = Aggregate.single(nd.core.n, h, rnd, phase, other, nd.core.index, sig).encode()
            for j in _others(sim, nd)[::2]:
                out.append(Send(j, vote))
        nd.state["last"] = (max(last[0], s.p_round), max(last[1], s.c_round))
    return out


def _message(sim: Simulator, nd: SimNode, a: Broadcast | Send) -> Any:
    """The message an outgoing action carries (None if its bytes do not decode)."""
    try:
        return decode_message(a.payload, nd.core.n, 1 << 24)
    except DecodeError:
        return None


def _withhold(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    out: list[Any] = []
    for a in actions:
        if isinstance(a, Broadcast | Send):
            msg = _message(sim, nd, a)
            if (
                isinstance(msg, Proposal)
                and msg.proposer == nd.core.index
                and not nd.state.get("sent_" + str(msg.round))
            ):
                nd.state["sent_" + str(msg.round)] = True
                out.append(Send(sim.rng.choice(_others(sim, nd)), a.payload))
            continue
        out.append(a)
    return out


def _replay(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    seen: list[bytes] = nd.state.get("seen", [])
    if seen and sim.rng.random() < 0.3:
        others = _others(sim, nd)
        actions = list(actions)
        for _ in range(3):
            actions.append(Send(sim.rng.choice(others), sim.rng.choice(seen)))
    return actions


def _bad_sortition(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    if not _new_round(nd):
        return actions
    core = nd.core.status()
    kind = core.round % 3
    if kind == 0:
        ticket = bytes(sim.rng.getrandbits(8) for _ in range(96))
    elif kind == 1:  # a real signature, but over another round's message
        ticket = nd.signer.sign(
            sortition_message(sim.params.chain_id, core.height, core.round + 7, core.seed)
        )
    else:  # the real ticket, whether or not it wins
        ticket = nd.signer.sign(
            sortition_message(sim.params.chain_id, core.height, core.round, core.seed)
        )
    header = Header(
        sim.params.chain_id,
        core.height,
        core.round,
        core.head_hash,
        bytes(32),
        bytes(32),
        0,
        nd.core.index,
        0,
        ticket,
    )
    prop = Proposal(core.round, nd.core.index, ticket, Block(header, ()), None, core.head_cert)
    if (
        kind == 2
        and ticket == header.sortition
        and nd.core.d > int.from_bytes(hashlib.sha256(ticket).digest(), "big")
    ):
        return actions  # it actually won: nothing forged to send
    return [*actions, Broadcast(prop.encode())]


def _bad_signature(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    if not _new_round(nd):
        return actions
    core = nd.core.status()
    n = nd.core.n
    out = list(actions)
    target = next(iter(nd.core.candidate_hashes(core.round - 1)), hashlib.sha256(b"fake").digest())
    for phase in (1, 2):
        everyone = np.ones(n, dtype=np.uint16)
        forged = bytes(sim.rng.getrandbits(8) for _ in range(96))
        out.append(
            Broadcast(
                Aggregate(
                    core.height, max(0, core.round - 1), phase, target, everyone, forged
                ).encode()
            )
        )
        from accord.base.types import vote_message

        own = nd.signer.sign(
            vote_message(sim.params.chain_id, core.height, max(0, core.round - 1), phase, target)
        )
        out.append(
            Broadcast(
                Aggregate(
                    core.height, max(0, core.round - 1), phase, target, everyone.copy(), own
                ).encode()
            )
        )
    return out


def _garbage(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    rng = sim.rng
    if rng.random() > 0.3:
        return actions
    out = list(actions)
    others = _others(sim, nd)
    out.append(
        Send(rng.choice(others), bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200))))
    )
    for a in actions:
        if isinstance(a, Broadcast | Send) and a.payload:
            b = bytearray(a.payload)
            if rng.random() < 0.5:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            else:
                del b[rng.randrange(len(b)) :]
            out.append(Send(rng.choice(others), bytes(b)))
            break
    return out


def _ticket_only(sim: Simulator, nd: SimNode, actions: list[Any]) -> list[Any]:
    out: list[Any] = []
    for a in actions:
        if isinstance(a, Broadcast | Send):
            msg = _message(sim, nd, a)
            if msg is None or (isinstance(msg, Proposal) and msg.proposer == nd.core.index):
                continue  # its tickets go out, its blocks never do
        out.append(a)
    if _new_round(nd):
        core = nd.core.status()
        forged = bytes(sim.rng.getrandbits(8) for _ in range(96))
        out.append(Broadcast(Ticket(core.height, core.round, nd.core.index, forged).encode()))
    return out


_TRANSFORMS = {
    "ticket_only": _ticket_only,
    "equivocate": _equivocate,
    "double_vote": _double_vote,
    "withhold": _withhold,
    "replay": _replay,
    "bad_sortition": _bad_sortition,
    "bad_signature": _bad_signature,
    "garbage": _garbage,
}
