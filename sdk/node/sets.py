"""Which validator set, with which core parameters, decides a height, as this node's driver
needs it.

The Gosig core runs one validator set with one set of parameters (rule 8 of
:mod:`accord.consensus.state`); governance changes both by committed transactions, in force
two heights after they pass at the earliest (:mod:`accord.ledger.schedule`). So once block h
is executed, the sets and consensus parameters of every height through h + 2 are final, and
this module turns that into what the driver tells its core: ``SetKnown(through, final)``. A
change of the timing (``round_ms``, ``stage2_ms``, ``ticket_wait_ms``, ``gossip_fanout``,
``skip_empty_blocks``, ``max_block_bytes``) hands over to a new core exactly as a change of
the set does, so every validator switches at the same height and rounds line up.

The core numbers validators by their position in the set of the height; the transport by its
roster (genesis's validators, then those governance added, as this node learnt them; see
:class:`accord.net.transport.Transport`). :class:`SetView` maps one to the other by BLS key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accord.base import encoding
from accord.base.errors import AccordError, DecodeError, ValidationError
from accord.base.genesis import Genesis, ValidatorInfo
from accord.base.types import Certificate
from accord.consensus import Params, verify_certificate
from accord.ledger.application import Application
from accord.ledger.validatorsets import (
    MAX_CHECKPOINTS,
    Checkpoint,
    Proved,
    change_key,
    checkpoint_heights,
    count_key,
    governed,
)


@dataclass(frozen=True)
class SetView:
    """One validator set, with this node's place in it and the transport's numbering."""

    keys: tuple[bytes, ...]
    me: int | None  # this validator's index in the set (None: not a member)
    to_transport: tuple[int, ...]  # set index -> transport (roster) index
    from_transport: dict[int, int]  # transport index -> set index

    @classmethod
    def of(
        cls,
        validators: tuple[ValidatorInfo, ...],
        own: bytes,
        roster_index: Callable[[str, bytes], int],
    ) -> SetView:
        """``roster_index(name, key)``: the transport's index of a validator (added to the
        roster if it is new there)."""
        keys = tuple(v.public_key_bytes for v in validators)
        to_t = tuple(roster_index(v.name, k) for v, k in zip(validators, keys, strict=True))
        return cls(
            keys=keys,
            me=keys.index(own) if own in keys else None,
            to_transport=to_t,
            from_transport={t: j for j, t in enumerate(to_t)},
        )


def validators_at(app: Application, genesis: Genesis, height: int) -> tuple[ValidatorInfo, ...]:
    if not governed(genesis):
        return tuple(genesis.validators)
    return app.scheduled(height).validators


def keys_at(app: Application, genesis: Genesis, height: int) -> tuple[bytes, ...]:
    return tuple(v.public_key_bytes for v in validators_at(app, genesis, height))


def quorum_of(n: int) -> int:
    return n - (n - 1) // 3


Setup = tuple[tuple[bytes, ...], Params]
"""What a core is built for: the validator set (BLS keys in order) and the core's parameters
(those in force at its heights, rounds counted from the anchor of those heights)."""


def setup_at(app: Application, genesis: Genesis, height: int) -> Setup:
    """The set and core parameters that decide ``height`` (final up to the head + 2, except
    the round anchor of a height whose ``round_ms`` changes, which its parent's execution
    fixes: the parameters differ there anyway, so a handoff is seen either way)."""
    if not governed(genesis):
        return tuple(genesis.validator_keys()), Params.of(genesis, genesis.consensus)
    s = app.scheduled(height)
    keys = tuple(v.public_key_bytes for v in s.validators)
    params = Params.of(genesis, s.consensus, n=len(keys), genesis_time_ms=s.round_anchor_ms)
    return keys, params


def known_through(
    app: Application, genesis: Genesis, head: int, setup: Setup, after: int
) -> tuple[int, bool]:
    """With ``head`` executed and ``setup`` known to decide every height through ``after``: the
    last height it is known to decide, and whether the set or the parameters change right
    after it. Every height from ``after`` + 1 to head + 2 is looked at: catch-up commits several
    blocks at once, and a set that changed at head + 1 told as deciding head + 2 had a core of
    the old set refuse every genuine certificate there and accept one the old set made
    (review finding)."""
    for h in range(after + 1, head + 3):
        if setup_at(app, genesis, h) != setup:
            return h - 1, True
    return max(after, head + 2), False


LAST_HEIGHT = 2**62
"""A height past every activation governance can schedule: what is in force there is the
last change scheduled."""


def largest_block_bytes(app: Application, genesis: Genesis, head: int) -> int:
    """The largest ``max_block_bytes`` in force at the next two heights (final) or after the
    last change scheduled, through the Application protocol alone (another ledger answers
    its own schedule). A change scheduled between those is seen two heights before it
    applies, when it is head + 2: before any block of its height can come to be judged."""
    if not governed(genesis):
        return genesis.consensus.max_block_bytes
    return max(
        app.scheduled(h).consensus.max_block_bytes for h in (head + 1, head + 2, LAST_HEIGHT)
    )


def verify_with(chain_id: str) -> Callable[[list[bytes], Certificate], None]:
    """``verify(keys, cert)``: raises unless ``cert`` carries a quorum of ``keys``."""

    def verify(keys: list[bytes], cert: Certificate) -> None:
        verify_certificate(keys, chain_id, cert, quorum_of(len(keys)))

    return verify


def checkpoint_at(store: Any, height: int, held: int) -> Checkpoint | None:
    """The checkpoint at ``height`` for a peer that holds the first ``held`` changes, from
    ``store``'s certified header and the state root it commits to (None if it lacks them)."""
    header, cert = store.get_header(height), store.get_certificate(height)
    if header is None or cert is None:
        return None
    value, proof = store.prove_state(count_key(), root=header.state_root)
    count = 0 if value is None else int(encoding.decode(value))
    changes = tuple(
        Proved(*store.prove_state(change_key(k), root=header.state_root))
        for k in range(held, count)
    )
    return Checkpoint(header, cert, Proved(value, proof), changes)


def checkpoints(app: Application, store: Any, target: int, after: int) -> list[Checkpoint]:
    """What this node serves a peer that proves the set of ``target`` from its checkpoint at
    ``after`` (:mod:`accord.ledger.validatorsets`): at most :data:`MAX_CHECKPOINTS`, from
    this node's certified headers and the state roots they commit to (fewer if it lacks
    them, e.g. pruned)."""
    if not 0 <= after < target <= app.head()[0]:
        raise DecodeError(
            "a set proof request is ['sets', target, after] with after < target <= head"
        )
    try:
        entries = app.query("governance", "schedule", {"kind": "validators"})
    except AccordError:
        # An application that runs no governance contract (Node(application=...)): its set
        # is genesis's for ever, and the checkpoint at the target proves no change there.
        entries = None
    activations = [int(e[0]) for e in entries] if isinstance(entries, list) else []
    held = 0
    if after > 0:
        header = store.get_header(after)
        if header is None:
            return []
        value, _ = store.prove_state(count_key(), root=header.state_root)
        held = 0 if value is None else int(encoding.decode(value))
    out: list[Checkpoint] = []
    for height in checkpoint_heights(activations, after, target)[:MAX_CHECKPOINTS]:
        cp = checkpoint_at(store, height, held)
        if cp is None:
            break
        out.append(cp)
        held += len(cp.changes)
    return out


def certificate_check(app: Application, genesis: Genesis) -> Callable[[Certificate], None]:
    """Raises unless a certificate carries a quorum of the set of its height (for heights up to
    the head + 2, where the set is final: the head's own certificate, at start)."""

    def check(cert: Certificate) -> None:
        keys = keys_at(app, genesis, cert.height)
        verify_certificate(list(keys), genesis.chain_id, cert, quorum_of(len(keys)))

    return check


class Roster:
    """Every validator this node knows, numbered as its transport numbers peers: genesis's
    validators first, then those governance added, in the order this node learnt them (its
    own key among them if genesis lacks it: a member governance is to add)."""

    def __init__(self, genesis: Genesis, own_key: bytes, own_name: str) -> None:
        self.keys = genesis.validator_keys()
        self.names = [v.name for v in genesis.validators]
        self.genesis_n = genesis.n
        self.transport: Any = None
        """Once the transport runs, new validators are added there (it dials them)."""
        if own_key not in self.keys:
            if not governed(genesis):
                raise ValidationError(
                    "this validator key is not in genesis (and without the governance "
                    "contract no validator can be added later)"
                )
            self.keys.append(own_key)
            self.names.append(own_name)
        self.own = self.keys.index(own_key)
        self.retired: set[bytes] = set()

    def added(self) -> list[tuple[str, bytes]]:
        return list(zip(self.names[self.genesis_n :], self.keys[self.genesis_n :], strict=True))

    def attach(self, transport: Any) -> Any:
        """The running transport: new validators are added there, rotated keys retired."""
        self.transport = transport
        for k in self.retired:
            transport.retire(k)
        return transport

    def retire(self, key: bytes) -> None:
        """Refuse ``key`` from now on (on the transport too, once it runs). Idempotent."""
        self.retired.add(key)
        if self.transport is not None:
            self.transport.retire(key)

    def retire_rotated(self, validators: tuple[ValidatorInfo, ...]) -> list[bytes]:
        """Keys whose validator (by name) the set ``validators`` names with another key: rotated
        away, refused by the transport from now on (review finding: the old key, often one that
        leaked, still completed the handshake). Returns them (and retires them on the
        transport if it runs)."""
        now = {v.name: v.public_key_bytes for v in validators}
        gone = [
            k
            for name, k in zip(self.names, self.keys, strict=True)
            if name in now and now[name] != k and k not in self.retired
        ]
        for k in gone:
            self.retire(k)
        return gone

    def index(self, name: str, key: bytes) -> int:
        """The transport's index of a validator, added to the roster if it is new."""
        if key not in self.keys:
            self.keys.append(key)
            self.names.append(name)
        if self.transport is not None:
            return int(self.transport.add_validator(name, key))
        return self.keys.index(key)


class SetSizes:
    """How many validators the set of a height has: what a certificate's signer field is read
    against (the API, the explorer). Final sets only (up to the head + 2), cached: a set of a
    decided height never changes."""

    def __init__(self, genesis: Genesis, app: Callable[[], Application | None]) -> None:
        self.genesis = genesis
        self.app = app
        self._at_head: tuple[int, list[tuple[int, int]]] | None = None

    def __call__(self, height: int) -> int:
        """One read of the change list per head (a page of 100 headers must not cost a
        contract query each), read the way the contract reads it."""
        app = self.app()
        if not governed(self.genesis) or app is None:
            return self.genesis.n
        # A set read at head T is final for every height up to T + 2: reused for those.
        if self._at_head is None or height > self._at_head[0] + 2:
            head = app.head()[0]
            entries = app.query("governance", "schedule", {"kind": "validators"})
            sizes = [(int(e[0]), len(e[1])) for e in entries] if isinstance(entries, list) else []
            self._at_head = (head, sizes)
        for activation, n in reversed(self._at_head[1]):
            if activation <= height:
                return n
        return self.genesis.n
