"""Frames: what one binary WebSocket message between validators holds.

A frame is the canonical encoding (:mod:`accord.base.encoding`) of ``[kind, payload]``. The kind
decides three things, fixed here so that every validator applies the same rules:

* its size limit (checked before decoding: oversized frames are never parsed);
* its overflow policy when the per-peer send queue is full (see :class:`Overflow`);
* whether it is deduplicated by frame hash (gossip kinds, which arrive from several peers and
  may be replayed) or not (point-to-point kinds, which are idempotent requests/answers).

Handshake kinds are only valid before a connection is authenticated; the traffic kinds only
after. Anything else is a bad frame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from accord.base import encoding
from accord.base.errors import BadFrame, DecodeError, TooLarge
from accord.base.genesis import ConsensusParams


class Kind(enum.IntEnum):
    # handshake (before authentication)
    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    READY = 4
    # traffic (after authentication)
    TX_BATCH = 16
    """a list of encoded transactions, gossiped"""
    CONSENSUS = 17
    """a Gosig message (proposal, vote aggregate, certificate), gossiped"""
    BLOCK_REQUEST = 18
    """catch-up: ``{id, body}`` asking one peer (e.g. for blocks by height); see Transport.request"""
    BLOCK_RESPONSE = 19
    """catch-up: ``{id, body}`` or ``{id, error}`` answering a request (blocks with certificates)"""
    STATUS = 20
    """a validator's head (height, hash, round), to one peer or all"""


HANDSHAKE_KINDS = frozenset({Kind.HELLO, Kind.CHALLENGE, Kind.AUTH, Kind.READY})
TRAFFIC_KINDS = frozenset(Kind) - HANDSHAKE_KINDS

HANDSHAKE_MAX = 1024
"""Handshake frames are small and fixed in shape; anything bigger is refused unread."""


class Overflow(enum.Enum):
    """What a full per-peer send queue does with one more frame of a kind.

    ``DROP_OLDEST``: the oldest queued frame of the same lane is dropped (and counted). For
    traffic that is repeated or superseded anyway: transaction batches (a transaction that got
    lost is re-gossiped by another validator or resubmitted by its client) and status.

    ``BLOCK``: the frame must be delivered; :meth:`Transport.send_wait` waits for room and the
    non-blocking :meth:`Transport.send` refuses it (returns False, counted) rather than
    dropping queued frames. For consensus messages and catch-up, whose loss would cost a round
    or a retry.
    """

    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"


@dataclass(frozen=True)
class KindSpec:
    max_bytes: int
    overflow: Overflow
    dedup: bool


def kind_specs(params: ConsensusParams, block_bytes: int | None = None) -> dict[Kind, KindSpec]:
    """Per-kind rules derived from the consensus parameters in genesis.

    A proposal carries a whole block (at most ``max_block_bytes``) plus its header and
    certificates; a catch-up answer carries up to a few blocks; a transaction batch is capped
    at a quarter of a block so a batch never crowds a proposal out of a queue.
    ``block_bytes``, when given, is the largest block to carry instead of ``max_block_bytes``
    (governance may allow larger blocks from some height on).
    """
    block = params.max_block_bytes if block_bytes is None else block_bytes
    return {
        Kind.HELLO: KindSpec(HANDSHAKE_MAX, Overflow.BLOCK, False),
        Kind.CHALLENGE: KindSpec(HANDSHAKE_MAX, Overflow.BLOCK, False),
        Kind.AUTH: KindSpec(HANDSHAKE_MAX, Overflow.BLOCK, False),
        Kind.READY: KindSpec(HANDSHAKE_MAX, Overflow.BLOCK, False),
        Kind.TX_BATCH: KindSpec(max(block // 4, 256 * 1024), Overflow.DROP_OLDEST, True),
        Kind.CONSENSUS: KindSpec(block + 1024 * 1024, Overflow.BLOCK, True),
        Kind.BLOCK_REQUEST: KindSpec(4096, Overflow.BLOCK, False),
        Kind.BLOCK_RESPONSE: KindSpec(4 * block + 1024 * 1024, Overflow.BLOCK, False),
        Kind.STATUS: KindSpec(4096, Overflow.DROP_OLDEST, False),
    }


def max_frame(specs: dict[Kind, KindSpec]) -> int:
    """The WebSocket-level message limit: the largest per-kind limit."""
    return max(s.max_bytes for s in specs.values())


def encode_frame(kind: Kind, payload: encoding.Value) -> bytes:
    return encoding.encode([int(kind), payload])


def decode_frame(data: bytes, specs: dict[Kind, KindSpec]) -> tuple[Kind, encoding.Value]:
    """Decode one frame or raise :class:`BadFrame` with a reason for the metrics label:
    ``oversized`` (larger than any kind allows, or than its own kind allows), ``garbage``
    (not a canonical encoding of ``[int, value]``), ``unknown_kind``."""
    if len(data) > max_frame(specs):
        raise BadFrame(f"frame of {len(data)} bytes", reason="oversized")
    try:
        value = encoding.decode(data, max_size=len(data))
    except TooLarge:  # pragma: no cover - max_size is len(data)
        raise BadFrame("frame too large", reason="oversized") from None
    except DecodeError as e:
        raise BadFrame(f"undecodable frame: {e.message}", reason="garbage") from None
    if type(value) is not list or len(value) != 2 or type(value[0]) is not int:
        raise BadFrame("a frame is [kind, payload]", reason="garbage")
    try:
        kind = Kind(value[0])
    except ValueError:
        raise BadFrame(f"unknown kind {value[0]}", reason="unknown_kind") from None
    if len(data) > specs[kind].max_bytes:
        raise BadFrame(f"{kind.name} frame of {len(data)} bytes", reason="oversized")
    return kind, value[1]
