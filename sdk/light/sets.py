"""Which validator set certifies a height, as the light client learns it without trusting a node.

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
"""

from __future__ import annotations

from typing import Any

from accord.base.errors import DecodeError
from accord.base.genesis import Genesis

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
