"""Wire messages of the consensus core, in canonical encoding.

Two kinds travel between validators:

* ``Proposal``: ``[1, round, proposer, sortition, block, justify, parent_cert]``. ``sortition``
  is the proposer's ticket for (height, round, parent); ``block`` is the full block. A fresh
  block carries the same round, proposer and ticket in its header. A *re-proposed* locked block
  keeps its original header and is justified by ``justify``, its P-quorum aggregate.
  ``parent_cert`` is the commit certificate of the parent block, so a validator that missed the
  parent's commit can commit it on the spot.
* vote aggregates (:class:`accord.consensus.aggregate.Aggregate`, tag 2).

Decoding is strict (canonical bytes, exact field counts and sizes); anything else raises a
:class:`accord.errors.DecodeError` and the core drops and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .. import encoding
from ..errors import AccordError, DecodeError
from ..types import Block, Certificate
from .aggregate import TAG_VOTES, Aggregate

TAG_PROPOSAL = 1


@dataclass(frozen=True)
class Proposal:
    round: int
    proposer: int
    sortition: bytes
    block: Block
    justify: Aggregate | None = None
    parent_cert: Certificate | None = None

    @property
    def height(self) -> int:
        return self.block.header.height

    def to_obj(self) -> list[Any]:
        return [
            TAG_PROPOSAL, self.round, self.proposer, self.sortition, self.block.to_obj(),
            None if self.justify is None else self.justify.to_obj(),
            None if self.parent_cert is None else self.parent_cert.to_obj(),
        ]

    def encode(self) -> bytes:
        return encoding.encode(self.to_obj())

    @classmethod
    def from_obj(cls, obj: list[Any], n: int) -> Proposal:
        if len(obj) != 7:
            raise DecodeError("proposal must have 7 fields")
        _, rnd, proposer, sortition, block, justify, parent = obj
        if type(rnd) is not int or type(proposer) is not int or not 0 <= proposer < n or rnd < 0:
            raise DecodeError("bad round or proposer")
        if type(sortition) is not bytes or len(sortition) != 96:
            raise DecodeError("bad sortition ticket")
        return cls(
            rnd, proposer, sortition, Block.from_obj(block),
            None if justify is None else Aggregate.from_obj(justify, n),
            None if parent is None else Certificate.from_obj(parent),
        )


Message = Proposal | Aggregate


def decode_message(payload: bytes, n: int, max_size: int) -> Message:
    """Decode one wire message or raise :class:`DecodeError`."""
    if payload[:2] == _VOTES_PREFIX and len(payload) <= max_size:
        return _decode_votes(payload, n)
    try:
        obj = encoding.decode(payload, max_size=max_size)
        if type(obj) is not list or not obj:
            raise DecodeError("a message is a non-empty list")
        if obj[0] == TAG_PROPOSAL:
            return Proposal.from_obj(obj, n)
        if obj[0] == TAG_VOTES:
            return Aggregate.from_obj(obj, n)
        raise DecodeError("unknown message tag")
    except DecodeError:
        raise
    except AccordError as e:  # ValidationError from nested types: still a malformed message
        raise DecodeError(str(e)) from None
    except (ValueError, TypeError, IndexError) as e:
        raise DecodeError(f"malformed message: {e}") from None


_VOTES_PREFIX = bytes([0x97, TAG_VOTES])  # a 7-element array whose first element is the tag


def _decode_votes(payload: bytes, n: int) -> Aggregate:
    """Fast path for the most frequent message: a vote aggregate holds only integers and byte
    strings, so strict decoding is unpack, type-check (in ``from_obj``) and re-pack-compare."""
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext)
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as e:
        raise DecodeError(f"malformed encoding: {e}") from None
    agg = Aggregate.from_obj(obj, n)
    if msgpack.packb(obj, use_bin_type=True) != payload:
        raise DecodeError("bytes are not the canonical encoding of their value")
    return agg


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed")
