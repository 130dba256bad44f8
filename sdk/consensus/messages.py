"""Wire messages of the consensus core, in canonical encoding.

Two kinds travel between validators:

* ``Proposal``: ``[1, round, proposer, sortition, block, justify, parent_cert]``. ``sortition``
  is the proposer's ticket for (height, round, parent); ``block`` is the full block. A fresh
  block carries the same round, proposer and ticket in its header. A *re-proposed* locked block
  keeps its original header and is justified by ``justify``, its P-quorum aggregate.
  ``parent_cert`` is the commit certificate of the parent block, so a validator that missed the
  parent's commit can commit it on the spot.
* vote aggregates (:class:`accord.consensus.aggregate.Aggregate`, tag 2).
* ``Ticket``: ``[3, height, round, proposer, sortition]``: a leader announces its winning
  ticket before building, so that leaders with worse tickets need not build at all (see
  ``ticket_wait_ms`` in :mod:`accord.consensus.state`).

Decoding is strict (canonical bytes, exact field counts and sizes); anything else raises a
:class:`accord.base.errors.DecodeError` and the core drops and counts it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from accord.base import encoding
from accord.base.errors import AccordError, DecodeError
from accord.base.types import Block, Certificate, Header, Tx
from accord.consensus.aggregate import TAG_VOTES, Aggregate

TAG_PROPOSAL = 1
TAG_TICKET = 3


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
            TAG_PROPOSAL,
            self.round,
            self.proposer,
            self.sortition,
            self.block.to_obj(),
            None if self.justify is None else self.justify.to_obj(),
            None if self.parent_cert is None else self.parent_cert.to_obj(),
        ]

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        # Cached: a validator re-sends its proposal every resend interval of the round. Built
        # from the parts (a list encodes as its header and its items' encodings), so the
        # block's transactions contribute their cached encodings instead of being walked:
        # the same bytes as ``encoding.encode(self.to_obj())``.
        return b"".join(
            (
                _PROPOSAL_PREFIX,
                encoding.encode([self.round, self.proposer, self.sortition])[1:],
                self.block.encode(),
                encoding.encode(
                    [
                        None if self.justify is None else self.justify.to_obj(),
                        None if self.parent_cert is None else self.parent_cert.to_obj(),
                    ]
                )[1:],
            )
        )

    @classmethod
    def from_obj(cls, obj: list[Any], n: int) -> Proposal:
        if len(obj) != 7:
            raise DecodeError("proposal must have 7 fields")
        _, rnd, proposer, sortition, block, justify, parent = obj
        _check_leader(rnd, proposer, sortition, n)
        return cls._from_parts(rnd, proposer, sortition, Block.from_obj(block), justify, parent, n)

    @classmethod
    def _from_parts(
        cls,
        rnd: int,
        proposer: int,
        sortition: bytes,
        block: Block,
        justify: Any,
        parent: Any,
        n: int,
    ) -> Proposal:
        return cls(
            rnd,
            proposer,
            sortition,
            block,
            None if justify is None else Aggregate.from_obj(justify, n),
            None if parent is None else Certificate.from_obj(parent),
        )


def _check_leader(rnd: Any, proposer: Any, sortition: Any, n: int) -> None:
    """The round, proposer index and sortition ticket fields of a proposal, type-checked."""
    if type(rnd) is not int or type(proposer) is not int or not 0 <= proposer < n or rnd < 0:
        raise DecodeError("bad round or proposer")
    if type(sortition) is not bytes or len(sortition) != 96:
        raise DecodeError("bad sortition ticket")


@dataclass(frozen=True)
class Ticket:
    """A leader's sortition ticket for (height, round), sent before its block is built."""

    height: int
    round: int
    proposer: int
    sortition: bytes

    def encode(self) -> bytes:
        return encoding.encode([TAG_TICKET, self.height, self.round, self.proposer, self.sortition])

    @classmethod
    def from_obj(cls, obj: list[Any], n: int) -> Ticket:
        if len(obj) != 5:
            raise DecodeError("ticket must have 5 fields")
        _, height, rnd, proposer, sortition = obj
        if type(height) is not int or type(rnd) is not int or height < 1 or rnd < 0:
            raise DecodeError("bad ticket height or round")
        if type(proposer) is not int or not 0 <= proposer < n:
            raise DecodeError("bad ticket proposer")
        if type(sortition) is not bytes or len(sortition) != 96:
            raise DecodeError("bad sortition ticket")
        return cls(height, rnd, proposer, sortition)


Message = Proposal | Aggregate | Ticket


class ProposalCache:
    """The last few decoded proposals, by their exact bytes (bounded LRU).

    Validators re-send their proposal every resend interval of a round, so the same bytes
    (a block of thousands of transactions) arrive several times; decoding them again gives the
    same value, so a hit returns the earlier result. Only byte-identical payloads hit: the
    key is the payload itself (equality on a hit is a memcmp), so no collision can substitute
    one message for another."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Proposal] = OrderedDict()
        self.hits = 0

    def get(self, payload: bytes) -> Proposal | None:
        prop = self._items.get(payload)
        if prop is not None:
            self._items.move_to_end(payload)
            self.hits += 1
        return prop

    def put(self, payload: bytes, prop: Proposal) -> None:
        self._items[payload] = prop
        self._items.move_to_end(payload)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


TxCache = Callable[[bytes], "Tx | None"]
"""A read-only cache of decoded transactions, by hash (SHA-256 of their canonical bytes), so a
proposal's thousands of transactions are not decoded a second time (see _decode_proposal). Any
lookup that returns the transaction whose canonical bytes have that hash is correct, whatever
keeps it: the core asks nothing else of it, and a miss only costs a decode. The node passes its
admitted transactions' lookup, the simulator its transaction pool's."""


def decode_message(
    payload: bytes,
    n: int,
    max_size: int,
    cache: ProposalCache | None = None,
    known: TxCache | None = None,
) -> Message:
    """Decode one wire message or raise :class:`DecodeError` (proposals through ``cache``)."""
    if payload[:2] == _VOTES_PREFIX and len(payload) <= max_size:
        return _decode_votes(payload, n)
    if cache is not None:
        hit = cache.get(payload)
        if hit is not None:
            return hit
    if payload[:2] == _PROPOSAL_PREFIX and len(payload) <= max_size:
        msg: Message = _decode_proposal(payload, n, known)
    else:
        msg = _decode_other(payload, n, max_size)
    if cache is not None and isinstance(msg, Proposal):
        cache.put(payload, msg)
    return msg


def _decode_proposal(payload: bytes, n: int, known: TxCache | None) -> Proposal:
    """A proposal, decoded strictly, its transactions one by one from their own bytes.

    A proposal carries a block of thousands of transactions that this validator has, as a
    rule, already received by gossip, decoded and checked. So the transactions are cut out of
    the payload as byte strings (the unpacker skips over each and reports offsets), and each is
    looked up by its hash in ``known``; only the ones not found are decoded here, strictly.
    A transaction's hash is SHA-256 of its canonical bytes, so a hit is the very transaction
    those bytes encode. The rest of the message is small and decoded as usual. Canonical form
    is then checked as :func:`encoding.decode` does, by re-encoding and comparing: the
    proposal's encoding is assembled from its parts, the transactions' cached bytes included.
    The result is the value ``_decode_other`` returns for the same payload, only cheaper.
    """
    try:
        u = encoding.Reader(payload)
        if u.array_header() != 7:
            raise DecodeError("proposal must have 7 fields")
        _, rnd, proposer, sortition = u.value(), u.value(), u.value(), u.value()
        _check_leader(rnd, proposer, sortition, n)
        if u.array_header() != 2:
            raise DecodeError("block must have 2 fields")
        header = Header.from_obj(u.value())
        count = u.array_header()
        if count != header.tx_count:
            raise DecodeError("tx count does not match the header")
        txs: list[Tx] = []
        sha256 = hashlib.sha256
        start = u.offset()
        for _ in range(count):
            u.skip()
            end = u.offset()
            raw = payload[start:end]
            start = end
            tx = known(sha256(raw).digest()) if known is not None else None
            txs.append(tx if tx is not None else Tx.decode(raw))
        justify, parent = u.value(), u.value()
        if u.offset() != len(payload):
            raise DecodeError("trailing bytes after the proposal")
        prop = Proposal._from_parts(
            rnd, proposer, sortition, Block(header, tuple(txs)).checked(), justify, parent, n
        )
    except DecodeError:
        raise
    except AccordError as e:  # ValidationError from nested types: still a malformed message
        raise DecodeError(str(e)) from None
    except (ValueError, TypeError, IndexError) as e:
        raise DecodeError(f"malformed message: {e}") from None
    if prop.encode() != payload:
        raise DecodeError("bytes are not the canonical encoding of their value")
    return prop


def _decode_other(payload: bytes, n: int, max_size: int) -> Message:
    try:
        obj = encoding.decode(payload, max_size=max_size)
        if type(obj) is not list or not obj:
            raise DecodeError("a message is a non-empty list")
        if obj[0] == TAG_PROPOSAL:
            return Proposal.from_obj(obj, n)
        if obj[0] == TAG_VOTES:
            return Aggregate.from_obj(obj, n)
        if obj[0] == TAG_TICKET:
            return Ticket.from_obj(obj, n)
        raise DecodeError("unknown message tag")
    except DecodeError:
        raise
    except AccordError as e:  # ValidationError from nested types: still a malformed message
        raise DecodeError(str(e)) from None
    except (ValueError, TypeError, IndexError) as e:
        raise DecodeError(f"malformed message: {e}") from None


_VOTES_PREFIX = bytes([0x97, TAG_VOTES])  # a 7-element array whose first element is the tag
_PROPOSAL_PREFIX = bytes([0x97, TAG_PROPOSAL])


def _decode_votes(payload: bytes, n: int) -> Aggregate:
    """Fast path for the most frequent message: a vote aggregate holds only integers and byte
    strings, so strict decoding is unpack, type-check (in ``from_obj``) and re-pack-compare."""
    return Aggregate.from_obj(encoding.decode_mapless(payload), n)
