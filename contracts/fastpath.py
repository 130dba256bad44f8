"""Token transfers (and remittances) without the generic call machinery: the same receipt and writes, cheaper.

**Why.** A consortium chain's blocks are mostly token transfers, and every validator executes
every block. Through the generic path (:meth:`accord.contracts.runtime.Runtime._run`) one
transfer builds a :class:`~accord.contracts.base.Context`, resolves and type-checks the call,
runs the metered contract code (four metered calls, two reads, two writes, one event, each a
few Python calls deep) and catches what it might raise: about half of a transfer's execution
time on the storage benchmark. This module computes the outcome of the *successful* transfer
directly, in one function.

**The rule this file keeps: same bytes or no answer.** :func:`token_transfer` returns exactly
the receipt and writes the generic path would (same gas, same event, same encodings, same
write order), or None, and then the runtime runs the generic path. It answers only when the
outcome is certain to be the common success:

* the resolved instance is this release's built-in token code (the runtime checks that before
  calling: the instance registered under ``token`` and this code's hash, and of the
  :class:`~accord.contracts.token.Token` class itself, since a class defined elsewhere can
  claim token.py's hash through its ``__module__``; code governance put in force under
  another hash never comes here);
* the arguments are a valid recipient and amount, and for ``remit`` a reference of at most
  ``MAX_REFERENCE`` bytes (else the contract reverts: generic path);
* the sender's balance covers the amount (else it reverts: generic path);
* the total gas is within the transaction's limit (gas only grows during a call, so no
  intermediate charge can have passed the limit either; else: generic path).

A read that the state reader fails (a local failure of this node's store) raises out of here,
as it does out of the generic path (``Context.read_failure``): no receipt ever records one.

The gas is the generic path's, charge by charge, in the order the contract makes them:
:data:`TRANSFER_CALLS` metered calls (``transfer`` or ``remit``, ``_check_address``,
``_check_amount``, ``_move``) at :data:`~accord.contracts.meter.STEP_GAS` each, a read of the sender's balance,
then (unless sending to oneself) a write or delete of it, a read and a write of the
recipient's, and the ``Transfer`` event. tests/test_contracts_fastpath.py compares the two
paths on generated states, amounts, recipients and gas limits, and fails if the token's code
or the gas schedule changes without this file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.types import Event, Receipt
from accord.contracts.base import GAS
from accord.contracts.meter import STEP_GAS
from accord.contracts.token import ADDRESS_SIZE, MAX_AMOUNT, MAX_REFERENCE, ZERO_ADDRESS

TRANSFER_CALLS = 4
"""Metered calls of contract code in a successful ``Token.transfer`` or ``Token.remit``: the method itself,
``_check_address``, ``_check_amount`` and ``_move`` (see :mod:`accord.contracts.meter`)."""

_MISSING: Any = object()
_unpack = encoding.decode_stored
_packb = encoding.encode_shaped
_ENTER_GAS = TRANSFER_CALLS * STEP_GAS
_READ_BASE = GAS.read_base
_READ_BYTE = GAS.read_byte
_WRITE_BASE = GAS.write_base
_WRITE_BYTE = GAS.write_byte
_DELETE = GAS.delete
_EVENT_BASE = GAS.event_base
_EVENT_BYTE = GAS.event_byte
_INT_MAX = 2**64 - 1  # the plain encoding's integer range (contracts.base._is_scalar)


def _read(
    get_state: Callable[[bytes], bytes | None], block: Mapping[bytes, bytes | None], key: bytes
) -> tuple[object, int]:
    """A balance record as ``Context.get(key, 0)`` reads it (the block's earlier writes, then
    the parent state), and the gas that read charges."""
    raw = block.get(key, _MISSING)
    if raw is _MISSING:
        raw = get_state(key)
    if raw is None:
        return 0, _READ_BASE
    return _unpack(raw), _READ_BASE + _READ_BYTE * len(raw)


def token_transfer(
    get_state: Callable[[bytes], bytes | None],
    block: Mapping[bytes, bytes | None],
    prefix: bytes,
    contract: str,
    sender: bytes,
    args: Mapping[str, object],
    tx_hash: bytes,
    gas_used: int,
    gas_limit: int,
    *,
    remit: bool = False,
) -> tuple[Receipt, dict[bytes, bytes | None]] | None:
    """The receipt and writes of a successful ``token.transfer`` (``remit``: ``token.remit``,
    the same with a payment reference in the event) of ``args`` by ``sender``, or None when
    the generic path must decide (module docstring).

    ``block`` holds the block's earlier writes (read before ``get_state``, the parent state),
    ``prefix`` is the contract's key prefix, ``gas_used`` the intrinsic gas already charged.
    Nothing is changed: the caller merges the writes."""
    reference = args.get("reference", _MISSING) if remit else None
    if len(args) != (3 if remit else 2) or reference is _MISSING:
        return None
    to = args.get("to")
    amount = args.get("amount")
    if (
        (remit and (type(reference) is not bytes or len(reference) > MAX_REFERENCE))
        or type(to) is not bytes
        or type(amount) is not int
        or len(to) != ADDRESS_SIZE
        or to == ZERO_ADDRESS
        or not 0 < amount <= MAX_AMOUNT
    ):
        return None
    gas = gas_used + _ENTER_GAS
    src_key = prefix + b"b" + sender
    balance, cost = _read(get_state, block, src_key)
    gas += cost
    if type(balance) is not int or balance < amount:
        return None
    writes: dict[bytes, bytes | None] = {}
    if sender != to:
        if balance == amount:
            writes[src_key] = None
            gas += _DELETE
        else:
            data = _packb(balance - amount)
            gas += _WRITE_BASE + _WRITE_BYTE * (len(src_key) + len(data))
            writes[src_key] = data
        dst_key = prefix + b"b" + to
        held, cost = _read(get_state, block, dst_key)
        gas += cost
        if type(held) is not int or not 0 <= held + amount <= _INT_MAX:
            return None
        data = _packb(held + amount)
        gas += _WRITE_BASE + _WRITE_BYTE * (len(dst_key) + len(data))
        writes[dst_key] = data
    # Keys in code-point order, as Context.emit sorts scalar event data.
    event: dict[str, Value] = (
        {"amount": amount, "from": sender, "to": to}
        if reference is None
        else {"amount": amount, "from": sender, "reference": reference, "to": to}
    )
    gas += _EVENT_BASE + _EVENT_BYTE * len(_packb(event))
    if gas > gas_limit:
        return None
    receipt = Receipt.canonical(
        tx_hash, True, gas, None, "", "", (Event(contract, "Transfer", event),)
    )
    return receipt, writes
