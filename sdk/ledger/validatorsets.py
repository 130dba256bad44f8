"""Which validator set certifies a height, learnt from genesis without trusting the peer.

The light client (:mod:`accord.light.client`) and a validator that joins by state sync
(:mod:`accord.node.statesync`) both start from genesis alone and must know the set of a height
before they check its certificate; this module is the checking both use (pure: proofs and
certificates in, a verdict out).

On a chain with the governance contract the set changes by vote: a change that passes in
block h takes effect at h + 2 at the earliest, so the state after block T (a certified header's
``state_root``) fixes the set of every height through T + 2. The contract keeps each change
for ever, in order (``"s/validators/n"`` and ``"s/validators/<k>"`` = [activation height, the
whole set from then on, proposal id]; never rewritten), so what a node proves against one
trusted header is the complete history up to it.

The light client walks headers in order: before it checks a certificate of a height beyond
what it knows, it asks for the count (and the entries it does not hold yet) proved against
its newest trusted header, and only then reads the set of that height the way the contract
does (the last entry, newest first, whose activation is at or below the height). A header two
or more heights beyond the newest trusted one is never checked: its set is not fixed by
anything trusted yet. Skipping ahead is therefore not possible on such a chain (each set
depends on the headers before it).

**Checkpoints** (state sync). A validator that installs a snapshot of height H needs the set of
H only, not every header below it: it walks one :class:`Checkpoint` per change, at the last
height of the set before it (activation - 1), and one at H. Each carries the header, its
certificate (checked against the set the changes proved so far put in force there), and the
change count and the new entries proved against that header's state root
(:func:`check_checkpoint`). A change passed after the previous checkpoint but in force at or
below this one is a change the peer hid (the certificate was checked against a set that was
not in force): refused. A genuine header always shows every change passed up to it, so a
liar can only hide one with a header that a quorum of a set forged after its term (a
long-range attack; the light client, walking every header, does not rely on even that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import AccordError, DecodeError, ProofError
from accord.base.genesis import Genesis
from accord.base.merkle import StateProof, verify_state_proof
from accord.base.types import Certificate, Header
from accord.contracts.base import state_key

COUNT_KEY = "s/validators/n"
BLS_KEY_SIZE = 48


def entry_key(k: int) -> str:
    return f"s/validators/{k}"


def governed(genesis: Genesis) -> bool:
    return any(c.name == "governance" for c in genesis.contracts)


def entry_keys(value: Any) -> tuple[int, list[bytes]]:
    """An entry's (activation height, the set's BLS keys); DecodeError if it is not one."""
    if type(value) is not list or len(value) != 3 or type(value[0]) is not int or value[0] < 0:
        raise DecodeError("a validator-set entry is [activation, validators, proposal id]")
    vals = value[1]
    if type(vals) is not list or not vals:
        raise DecodeError("a validator-set entry names a non-empty list of validators")
    keys = []
    for v in vals:
        key = v.get("bls_public_key") if type(v) is dict else None
        if type(key) is not bytes or len(key) != BLS_KEY_SIZE:
            raise DecodeError("a validator in a set entry lacks a 48-byte BLS key")
        keys.append(key)
    if len(set(keys)) != len(keys):
        raise DecodeError("a validator-set entry names one key twice")
    return value[0], keys


class ValidatorSets:
    """What this client has proved of the sets (see the module docstring)."""

    def __init__(self, genesis: Genesis) -> None:
        self.governed = governed(genesis)
        self.genesis_keys = genesis.validator_keys()
        self.entries: list[tuple[int, list[bytes]]] = []
        # The state after genesis holds no change, and one passing in block 1 is in force at
        # 3 at the earliest: genesis's set decides heights 1 and 2 whatever happens.
        self.known_through: int | None = 2
        """The highest height whose set is known (ignored if not governed)."""

    def keys_at(self, height: int) -> list[bytes] | None:
        if not self.governed:
            return self.genesis_keys
        if self.known_through is None or height > self.known_through:
            return None
        return self.in_force(height)

    def in_force(self, height: int) -> list[bytes]:
        """The set the entries proved so far put in force at ``height`` (final only up to
        ``known_through``: a change proved later may still take effect sooner)."""
        if not self.governed:
            return self.genesis_keys
        for activation, keys in reversed(self.entries):
            if activation <= height:
                return keys
        return self.genesis_keys

    def learn(self, trusted_height: int, count: int, new: list[tuple[int, list[bytes]]]) -> None:
        """``count`` entries exist after block ``trusted_height`` (proved against its header),
        ``new`` the ones after those held, in order."""
        if count != len(self.entries) + len(new):
            raise DecodeError("the proved count disagrees with the entries proved")
        self.entries.extend(new)
        reach = trusted_height + 2
        self.known_through = reach if self.known_through is None else max(self.known_through, reach)

    def to_json(self) -> dict[str, Any]:
        return {
            "known_through": self.known_through,
            "entries": [[a, [k.hex() for k in keys]] for a, keys in self.entries],
        }

    def load_json(self, doc: Any) -> None:
        if doc is None:
            return
        try:
            known = doc["known_through"]
            entries = [(int(a), [bytes.fromhex(k) for k in keys]) for a, keys in doc["entries"]]
        except (KeyError, TypeError, ValueError):
            raise DecodeError("stored validator sets are malformed") from None
        if known is not None and type(known) is not int:
            raise DecodeError("stored validator sets are malformed")
        self.known_through, self.entries = known, entries


GOVERNANCE = "governance"
MAX_CHECKPOINTS = 64
"""Checkpoints one answer carries at most (each names a whole set: bounded memory)."""


class SetProofInvalid(AccordError):
    """A peer's proof of the validator-set changes does not hold."""

    code = "set_proof_invalid"


def count_key() -> bytes:
    """The state key of the change count (the contracts runtime's key layout)."""
    return state_key(GOVERNANCE, COUNT_KEY)


def change_key(k: int) -> bytes:
    """The state key of change ``k``."""
    return state_key(GOVERNANCE, entry_key(k))


@dataclass(frozen=True)
class Proved:
    """A state value (None: absent) with its proof against a header's state root."""

    value: bytes | None
    proof: StateProof

    def to_obj(self) -> list[Value]:
        return [self.value, self.proof.to_obj()]

    @classmethod
    def from_obj(cls, obj: Any) -> Proved:
        if type(obj) is not list or len(obj) != 2 or not (obj[0] is None or type(obj[0]) is bytes):
            raise DecodeError("a proved value is [value or nil, proof]")
        return cls(obj[0], StateProof.from_obj(obj[1]))


@dataclass(frozen=True)
class Checkpoint:
    """A certified header with the change count and the changes new since the previous
    checkpoint, proved against its state root (see the module docstring)."""

    header: Header
    certificate: Certificate
    count: Proved
    changes: tuple[Proved, ...]

    def to_obj(self) -> list[Value]:
        return [
            self.header.to_obj(),
            self.certificate.to_obj(),
            self.count.to_obj(),
            [c.to_obj() for c in self.changes],
        ]

    @classmethod
    def from_obj(cls, obj: Any) -> Checkpoint:
        if type(obj) is not list or len(obj) != 4 or type(obj[3]) is not list:
            raise DecodeError("a checkpoint is [header, certificate, count, [change, ...]]")
        return cls(
            Header.from_obj(obj[0]),
            Certificate.from_obj(obj[1]),
            Proved.from_obj(obj[2]),
            tuple(Proved.from_obj(c) for c in obj[3]),
        )


def checkpoint_heights(activations: Sequence[int], after: int, target: int) -> list[int]:
    """Where an honest peer puts checkpoints to prove the set of ``target`` to a node that
    holds the changes proved through ``after``: the last height of each set before a change
    in force by ``target``, then ``target`` itself."""
    last = {a - 1 for a in activations if a <= target and a - 1 > after}
    return sorted(last | {target}) if target > after else []


def check_checkpoint(
    sets: ValidatorSets,
    chain_id: str,
    after: int,
    cp: Checkpoint,
    verify: Callable[[list[bytes], Certificate], None],
) -> None:
    """Check ``cp`` (the checkpoint after the one at ``after``) and learn its changes into
    ``sets``; SetProofInvalid (``sets`` unchanged) unless it holds. ``verify(keys, cert)``
    raises unless ``cert`` carries a quorum of ``keys``."""
    header, cert = cp.header, cp.certificate
    height = header.height
    if header.chain_id != chain_id:
        raise SetProofInvalid(f"checkpoint header of chain {header.chain_id!r}")
    if height <= after:
        raise SetProofInvalid(f"checkpoint at height {height}, not above {after}")
    if cert.height != height or cert.block_hash != header.hash:
        raise SetProofInvalid(f"the certificate at {height} is not for the checkpoint's header")
    try:
        verify(sets.in_force(height), cert)
    except AccordError as e:
        raise SetProofInvalid(
            f"the certificate at {height} does not verify against the set in force there: "
            f"{e.message}"
        ) from None
    root = header.state_root
    try:
        verify_state_proof(root, count_key(), cp.count.value, cp.count.proof)
        count = 0 if cp.count.value is None else encoding.decode(cp.count.value)
        if type(count) is not int or count != len(sets.entries) + len(cp.changes):
            raise SetProofInvalid(
                f"the change count at {height} is {count!r}: {len(sets.entries)} were proved "
                f"before and {len(cp.changes)} are new"
            )
        new = []
        for k, change in enumerate(cp.changes, start=len(sets.entries)):
            if change.value is None:
                raise SetProofInvalid(f"validator-set change {k} is absent at {height}")
            verify_state_proof(root, change_key(k), change.value, change.proof)
            new.append(entry_keys(encoding.decode(change.value)))
    except (ProofError, DecodeError) as e:
        raise SetProofInvalid(f"the validator-set proof at {height}: {e.message}") from None
    hidden = [a for a, _ in new if a <= height]
    if hidden:
        # Passed after the previous checkpoint yet in force here: the certificate above was
        # checked against a set that was not the one of this height.
        raise SetProofInvalid(
            f"a validator-set change in force from {hidden[0]} was not shown before height {height}"
        )
    sets.learn(height, count, new)
