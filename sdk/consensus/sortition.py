"""Secret leader selection by cryptographic sortition.

Validator i is a potential leader of (height, round) when
``H(sig_i(SORTITION_DOMAIN, chain id, height, round, seed)) < D``. BLS signatures are
unique, so the signature is at once the lottery ticket and its proof, and nobody can tell who
the leaders are before they speak. The round is inside the signed message, so a failed round
gives everyone a fresh draw. ``D = expected_leaders / n * 2**256``: with the default of three
expected leaders the chance of a round without any leader is about e**-3 (5 %), and such a
round simply commits nothing. The lowest value has the best priority.

The seed of a height is derived from the previous block's own sortition ticket, never from
its hash: the previous proposer chooses its block's contents (and so its hash) freely and
could grind them until it wins the next lottery too, but its ticket is a unique signature
over the previous seed, fixed before it chose anything. Height 1 uses the genesis hash.
"""

from __future__ import annotations

from accord.base import encoding

SORTITION_DOMAIN = "accord/sortition/v1"
_SPACE = 1 << 256


SEED_DOMAIN = "accord/sortition-seed/v1"


def sortition_message(chain_id: str, height: int, round: int, seed: bytes) -> bytes:
    return encoding.encode([SORTITION_DOMAIN, chain_id, height, round, seed])


def sortition_seed(head_hash: bytes, head_sortition: bytes) -> bytes:
    """The seed of the height after a block with hash ``head_hash`` and sortition ticket
    ``head_sortition`` (empty for genesis and single-validator chains, whose seed is then the
    hash: with one validator nobody else's lottery is at stake)."""
    if not head_sortition:
        return head_hash
    return encoding.sha256(encoding.encode([SEED_DOMAIN, head_sortition]))


def threshold(n: int, expected_leaders: float) -> int:
    """The difficulty D: a ticket wins when its value is below it."""
    # Integer arithmetic (expected_leaders in millionths) keeps D identical on every platform.
    milli = int(round(expected_leaders * 1_000_000))
    return min(_SPACE, _SPACE * milli // (n * 1_000_000))
