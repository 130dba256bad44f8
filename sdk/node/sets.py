"""Which validator set decides a height, as this node's driver needs it.

The Gosig core runs one validator set (rule 8 of :mod:`accord.consensus.state`); governance
changes the set by committed transactions, in force two heights after they pass at the
earliest (:mod:`accord.ledger.schedule`). So once block h is executed, the sets of every
height through h + 2 are final, and this module turns that into what the driver tells its
core: ``SetKnown(through, final)``.

The core numbers validators by their position in the set of the height; the transport by
their position in genesis (its peers are the keys it authenticates). :class:`SetView` maps one
to the other by BLS key. A set may only name genesis's validators for now: adding a key the
transport does not know is refused with a clear error when the node reaches it (the
transport's roster does not follow governance yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from accord.base.errors import AccordError
from accord.ledger.application import Application


class UnknownValidator(AccordError):
    """A scheduled set names a validator this node's transport cannot reach."""


@dataclass(frozen=True)
class SetView:
    """One validator set, with this node's place in it and the transport's numbering."""

    keys: tuple[bytes, ...]
    me: int | None  # this validator's index in the set (None: not a member)
    to_transport: tuple[int, ...]  # set index -> transport (genesis) index
    from_transport: dict[int, int]  # transport index -> set index

    @classmethod
    def of(cls, keys: tuple[bytes, ...], genesis_keys: list[bytes], own: bytes) -> SetView:
        where = {k: i for i, k in enumerate(genesis_keys)}
        missing = [k.hex()[:16] for k in keys if k not in where]
        if missing:
            raise UnknownValidator(
                f"the validator set names keys this node's transport does not know "
                f"({', '.join(missing)}): validators added after genesis are not followed by "
                "the node yet (docs/governance.md)"
            )
        to_t = tuple(where[k] for k in keys)
        return cls(
            keys=keys,
            me=keys.index(own) if own in keys else None,
            to_transport=to_t,
            from_transport={t: j for j, t in enumerate(to_t)},
        )


def keys_at(app: Application, height: int) -> tuple[bytes, ...]:
    return tuple(app.scheduled(height).validator_keys())


def known_through(app: Application, head: int, keys: tuple[bytes, ...]) -> tuple[int, bool]:
    """With ``head`` executed and ``keys`` deciding head + 1: the last height they are known to
    decide, and whether the set changes right after it."""
    if keys_at(app, head + 2) != keys:
        return head + 1, True
    return head + 2, False
