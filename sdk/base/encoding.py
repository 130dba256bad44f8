"""Canonical encoding: the one byte string for every value that is hashed or signed.

Rules this module keeps:

* The value model is small: ``None``, ``bool``, integers in [-2**63, 2**64), ``bytes``,
  ``str`` (UTF-8), lists (tuples encode as lists) and maps with ``str`` keys. No floats: they
  do not round-trip across platforms, and finance has no use for them on the ledger.
  Integers outside 64 bits (field elements) travel as ``bytes`` or decimal ``str``.
* The byte format is MessagePack with its shortest forms (which the C packer always picks)
  and map keys sorted by their UTF-8 bytes. That makes the encoding a function of the value.
* Decoding is strict: size limits first, no trailing bytes, no extension types, and the result
  is re-encoded and compared with the input. Any other encoding of the same value (a longer
  integer form, unsorted or duplicate keys, str32 for a short string) is therefore rejected, so
  that a hash or signature covers exactly one value.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeAlias

import msgpack

from accord.base.errors import DecodeError, NonCanonical, TooLarge, TrailingBytes

Value: TypeAlias = Any  # None | bool | int | bytes | str | list[Value] | dict[str, Value]

MAX_MESSAGE = 16 * 1024 * 1024
"""Default ceiling for one decoded message (a block of 5,000 transfers is about 1.3 MB)."""

MAX_DEPTH = 100
"""Lists and maps nest at most this deep in any encoded message (a block holds transactions
that hold arguments: the messages that carry a value add a few levels to its own). Deeper is
refused by :func:`encode` and :func:`decode` with a DecodeError, long before Python's
recursion limit: no input reaches a RecursionError."""

MAX_VALUE_DEPTH = 64
"""Lists and maps nest at most this deep in a contract value (a transaction's arguments count
as level 1). One limit for everything that carries one: transaction admission
(:func:`check_value_depth` in ``Tx.from_obj``) and the API's JSON view of values, so that
nothing admitted is unreadable through the API."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _too_deep(limit: int) -> DecodeError:
    return DecodeError(f"value nests too deeply (more than {limit} levels of lists and maps)")


def check_value_depth(v: Value, limit: int = MAX_VALUE_DEPTH, _level: int = 1) -> None:
    """Raise DecodeError if the lists and maps of ``v`` nest more than ``limit`` levels
    (``v`` itself, if a container, is level ``_level``). Flat values cost one pass."""
    t = type(v)
    if t is dict:
        items = v.values()
    elif t is list or t is tuple:
        items = v
    else:
        return
    if _level > limit:
        raise _too_deep(limit)
    for x in items:
        tx = type(x)
        if tx is dict or tx is list or tx is tuple:
            check_value_depth(x, limit, _level + 1)


def _canon(v: Value, depth: int = 0) -> Value:
    """Return ``v`` with maps sorted by key and tuples made lists; reject what we do not encode."""
    t = type(v)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise _too_deep(MAX_DEPTH)
        out = {}
        for k in sorted(v, key=_key_bytes):
            out[k] = _canon(v[k], depth + 1)
        return out
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise _too_deep(MAX_DEPTH)
        return [_canon(x, depth + 1) for x in v]
    if t is int:
        if not _INT_MIN <= v <= _INT_MAX:
            raise DecodeError(f"integer {v} is outside the 64-bit range; encode it as bytes or str")
        return v
    if v is None or t is bool or t is bytes or t is str:
        return v
    if t is bytearray or t is memoryview:
        return bytes(v)
    if isinstance(v, int) and not isinstance(v, bool):  # IntEnum and friends
        return _canon(int(v))
    raise DecodeError(f"type {t.__name__} has no canonical encoding")


def _key_bytes(k: object) -> bytes:
    if type(k) is not str:
        raise DecodeError(f"map keys must be str, got {type(k).__name__}")
    return k.encode()


_packer_opts: dict[str, Any] = {"use_bin_type": True, "strict_types": False, "autoreset": True}


def _shape(v: Value, depth: int = 0) -> Value:
    """``v`` in canonical shape for packing, *without copying* what is already canonical.

    Same result as :func:`_canon` (and the same errors), but a list or map whose items are
    already canonical is returned as it is, so the common ledger objects (lists of scalars,
    maps built in key order) cost one pass of type checks and no allocation. Only for
    :func:`encode`: the result may share structure with ``v``.
    """
    t = type(v)
    if t is list:
        if depth >= MAX_DEPTH:
            raise _too_deep(MAX_DEPTH)
        for i, x in enumerate(v):
            tx = type(x)
            if tx is bytes or tx is str or tx is bool or x is None:
                continue
            if tx is int:
                if not _INT_MIN <= x <= _INT_MAX:
                    raise DecodeError(
                        f"integer {x} is outside the 64-bit range; encode it as bytes or str"
                    )
                continue
            y = _shape(x, depth + 1)
            if y is not x:  # first item that changes: build a new list from here on
                out = v[:i]
                out.append(y)
                out.extend([_shape(z, depth + 1) for z in v[i + 1 :]])
                return out
        return v
    if t is dict:
        if depth >= MAX_DEPTH:
            raise _too_deep(MAX_DEPTH)
        keys = list(v)
        for k in keys:
            if type(k) is not str:
                raise DecodeError(f"map keys must be str, got {type(k).__name__}")
        # Code point order is UTF-8 byte order (a str that is not valid UTF-8 fails in the
        # packer with the same UnicodeEncodeError the byte-keyed sort raised).
        ordered = sorted(keys)
        changed = ordered != keys
        vals = []
        for k in ordered:
            x = v[k]
            y = _shape(x, depth + 1)
            if y is not x:
                changed = True
            vals.append(y)
        return dict(zip(ordered, vals, strict=True)) if changed else v
    if t is bytes or t is str or t is bool or v is None:
        return v
    return _canon(
        v, depth
    )  # tuples, int range checks, bytearray/memoryview, int subclasses, errors


def encode(value: Value) -> bytes:
    """The canonical bytes of ``value``."""
    return msgpack.packb(_shape(value), **_packer_opts)


def array_header(n: int) -> bytes:
    """The canonical (shortest) MessagePack header of a list of ``n`` items.

    ``array_header(len(xs)) + b"".join(encode(x) for x in xs) == encode(xs)``: lets callers
    that cache their items' encodings (transactions, receipts) encode a list of them without
    walking the items again.
    """
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\xdd" + n.to_bytes(4, "big")
    raise DecodeError(f"a list of {n} items has no encoding")


def encode_encoded_list(items: list[bytes]) -> bytes:
    """The canonical bytes of a list given each item's canonical bytes."""
    return array_header(len(items)) + b"".join(items)


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed")


def decode(data: bytes, max_size: int = MAX_MESSAGE) -> Value:
    """Decode canonical bytes; raise a :class:`DecodeError` subclass for anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    if len(data) > max_size:
        raise TooLarge(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    if len(data) == 0:
        raise DecodeError("empty message")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_no_ext,
        )
    except msgpack.ExtraData as e:
        raise TrailingBytes(f"{len(e.extra)} trailing bytes after the value") from None
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as e:
        raise DecodeError(f"malformed encoding: {e}") from None
    try:
        again = encode(value)
    except DecodeError as e:
        raise NonCanonical(str(e)) from None
    if again != bytes(data):
        raise NonCanonical("bytes are not the canonical encoding of their value")
    return value


# --- fast paths -------------------------------------------------------------------------------
#
# Each function below does what ``encode``/``decode`` do for a narrower input and says which;
# tests/test_encoding.py checks each against its reference with hypothesis. Other modules use
# these instead of MessagePack directly, so this file is the only one that knows the format.


def encode_shaped(value: Value) -> bytes:
    """``encode(value)`` for a value already in canonical shape: no maps, or maps built with
    their keys in sorted order, lists (not tuples), integers within 64 bits.

    Skips the canonical walk (the hot path of receipts, vote aggregates and contract scalars,
    whose shapes their builders guarantee). A value not in shape gives other bytes than
    ``encode``, so use it only where the builder owns the shape.
    """
    return msgpack.packb(value, use_bin_type=True)


def decode_stored(data: bytes) -> Value:
    """Decode bytes this process wrote with :func:`encode` (the state store, persisted state).

    No size limit and no canonical re-check: those guard untrusted input, and the state store
    only ever holds canonical encodings (storage damage is caught by the store's own hashes).
    """
    return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext)


def decode_mapless(data: bytes) -> Value:
    """``decode(data)`` for messages whose values hold no maps (vote aggregates, tickets).

    A value without maps has one MessagePack encoding that the packer picks, so strict
    decoding is unpack and re-pack-compare, without ``decode``'s shape walk. A map anywhere
    is refused (as :class:`NonCanonical` if sorted, which callers treat like any DecodeError).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    if len(data) == 0:
        raise DecodeError("empty message")
    try:
        value = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext
        )
    except msgpack.ExtraData as e:
        raise TrailingBytes(f"{len(e.extra)} trailing bytes after the value") from None
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as e:
        raise DecodeError(f"malformed encoding: {e}") from None
    if _has_map(value, 0):
        raise NonCanonical("a map where none is expected")
    if msgpack.packb(value, use_bin_type=True) != bytes(data):
        raise NonCanonical("bytes are not the canonical encoding of their value")
    return value


def _has_map(v: Value, depth: int) -> bool:
    if type(v) is dict:
        return True
    if type(v) is list:
        if depth >= MAX_DEPTH:
            raise _too_deep(MAX_DEPTH)
        return any(type(x) in (dict, list) and _has_map(x, depth + 1) for x in v)
    return False


class Reader:
    """Reads one payload value by value without decoding all of it (a proposal's thousands of
    transactions are cut out as byte ranges and looked up by hash).

    It checks nothing about canonical form: a caller re-encodes what it assembled and compares
    with the payload, as :func:`decode` does. Errors of the format are :class:`DecodeError`.
    """

    def __init__(self, payload: bytes) -> None:
        self._u = msgpack.Unpacker(
            None,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_no_ext,
            max_buffer_size=max(len(payload), 1),
        )
        self._u.feed(payload)

    def array_header(self) -> int:
        """The length of the list that starts here."""
        return self._call(self._u.read_array_header)

    def value(self) -> Value:
        """The next whole value."""
        return self._call(self._u.unpack)

    def skip(self) -> None:
        """Step over the next value (its bytes are ``payload[before:self.offset()]``)."""
        self._call(self._u.skip)

    def offset(self) -> int:
        """How many bytes of the payload have been read."""
        return self._u.tell()

    @staticmethod
    def _call(f: Any) -> Any:
        try:
            return f()
        except DecodeError:
            raise
        except msgpack.OutOfData:
            raise DecodeError("the payload ends inside a value") from None
        except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as e:
            raise DecodeError(f"malformed encoding: {e}") from None


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_value(value: Value) -> bytes:
    """SHA-256 of the canonical encoding: the hash of anything that has one."""
    return hashlib.sha256(encode(value)).digest()


def canonical(value: Value) -> Value:
    """``value`` in its canonical shape (sorted maps, lists for tuples); raises on bad types."""
    return _canon(value)
