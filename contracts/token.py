"""The token contract: one fungible token, minted by a genesis authority.

State (this contract's namespace, see :mod:`accord.contracts.runtime` for the key layout):

* bytes key ``address`` (20 bytes) -> balance (int, absent = 0)
* ``"authority"`` -> the address allowed to mint
* ``"supply"`` -> total supply (int); the sum of all balances equals it at all times
* bytes key ``b"a" + owner + spender`` (41 bytes) -> allowance; no 20-byte balance key can
  equal it

Amounts are integers in the smallest unit, 1 <= amount <= 2**63, and the supply never exceeds
2**63, so every balance fits the canonical encoding's integer range.

Contracts hold tokens at their contract address (:func:`accord.contracts.base.contract_address`)
and move them with ``ctx.call("token", "transfer", to=..., amount=...)``: the token sees the
calling contract as ``sender``. To take tokens *from* anyone else (a deposit into a pool), a
contract calls ``transfer_from(owner=..., ...)`` and needs an allowance that ``owner`` set with
``approve(spender=<that contract's address>, amount=...)`` in a transaction it signed. There is
no exception for the transaction's signer (``ctx.origin``): signing a call to one contract must
not let that contract, or any contract it calls, spend the signer's tokens, so an account's
tokens move only by its own ``transfer``/``remit`` or within an allowance it granted.
"""

from __future__ import annotations

from accord.base.encoding import Value
from accord.base.errors import GenesisError
from accord.contracts.base import Context, Contract, method

MAX_AMOUNT = 2**63
ADDRESS_SIZE = 20
ZERO_ADDRESS = bytes(ADDRESS_SIZE)
MAX_REFERENCE = 140  # the length of an ISO 20022 unstructured remittance line


def _check_address(ctx: Context, address: bytes, what: str) -> None:
    ctx.require(len(address) == ADDRESS_SIZE, f"{what} must be a {ADDRESS_SIZE}-byte address")
    ctx.require(address != ZERO_ADDRESS, f"{what} must not be the zero address")


def _check_amount(ctx: Context, amount: int) -> None:
    ctx.require(0 < amount <= MAX_AMOUNT, f"amount must be between 1 and {MAX_AMOUNT}")


def _allowance_key(owner: bytes, spender: bytes) -> bytes:
    return b"a" + owner + spender


class Token(Contract):
    """Balances, mint, transfer (optionally with a payment reference), allowances. Events:
    ``Transfer``, ``Mint``, ``Approval``."""

    name = "token"

    def genesis_state(self) -> dict[str | bytes, Value]:
        t = self.genesis.token
        if t is None:
            return {}
        state: dict[str | bytes, Value] = {"authority": bytes.fromhex(t.authority)}
        supply = 0
        for hex_address, amount in sorted(t.balances.items()):
            try:
                address = bytes.fromhex(hex_address)
            except ValueError:
                raise GenesisError(f"token balance key {hex_address!r} is not hex") from None
            if len(address) != ADDRESS_SIZE or address == ZERO_ADDRESS:
                raise GenesisError(f"token balance key {hex_address!r} is not a 20-byte address")
            if type(amount) is not int or amount < 0:
                raise GenesisError(f"token balance of {hex_address} must be a non-negative integer")
            supply += amount
            if amount:
                state[address] = amount
        if supply > MAX_AMOUNT:
            raise GenesisError(f"token supply {supply} exceeds {MAX_AMOUNT}")
        state["supply"] = supply
        return state

    # --- internal moves --------------------------------------------------------------------

    @staticmethod
    def _move(
        ctx: Context, src: bytes, dst: bytes, amount: int, reference: bytes | None = None
    ) -> None:
        balance = ctx.get(src, 0)
        ctx.require(balance >= amount, f"insufficient balance: {balance} < {amount}")
        if src != dst:
            if balance == amount:
                ctx.delete(src)
            else:
                ctx.set(src, balance - amount)
            ctx.set(dst, ctx.get(dst, 0) + amount)
        if reference is None:
            ctx.emit("Transfer", **{"from": src, "to": dst, "amount": amount})
        else:
            ctx.emit(
                "Transfer", **{"from": src, "to": dst, "amount": amount, "reference": reference}
            )

    # --- methods -------------------------------------------------------------------------

    @method
    def mint(self, ctx: Context, to: bytes, amount: int) -> None:
        """Create ``amount`` new tokens for ``to`` (the genesis authority only)."""
        ctx.require(ctx.sender == ctx.get("authority"), "only the token authority may mint")
        _check_address(ctx, to, "recipient")
        _check_amount(ctx, amount)
        supply = ctx.get("supply", 0)
        ctx.require(
            supply + amount <= MAX_AMOUNT, f"mint would raise the supply above {MAX_AMOUNT}"
        )
        ctx.set("supply", supply + amount)
        ctx.set(to, ctx.get(to, 0) + amount)
        ctx.emit("Mint", to=to, amount=amount)

    @method
    def transfer(self, ctx: Context, to: bytes, amount: int) -> None:
        """Move ``amount`` from the sender (an account or a calling contract) to ``to``."""
        _check_address(ctx, to, "recipient")
        _check_amount(ctx, amount)
        self._move(ctx, ctx.sender, to, amount)

    @method
    def remit(self, ctx: Context, to: bytes, amount: int, reference: bytes) -> None:
        """``transfer`` with a payment reference (an invoice, loan or settlement id; at most
        ``MAX_REFERENCE`` bytes), carried in the ``Transfer`` event so the payee can match
        the payment without a side channel."""
        _check_address(ctx, to, "recipient")
        _check_amount(ctx, amount)
        ctx.require(
            len(reference) <= MAX_REFERENCE, f"reference must be at most {MAX_REFERENCE} bytes"
        )
        self._move(ctx, ctx.sender, to, amount, reference)

    @method
    def approve(self, ctx: Context, spender: bytes, amount: int) -> None:
        """Let ``spender`` move up to ``amount`` of the sender's tokens (0 revokes)."""
        _check_address(ctx, spender, "spender")
        ctx.require(0 <= amount <= MAX_AMOUNT, f"allowance must be between 0 and {MAX_AMOUNT}")
        key = _allowance_key(ctx.sender, spender)
        if amount:
            ctx.set(key, amount)
        else:
            ctx.delete(key)
        ctx.emit("Approval", owner=ctx.sender, spender=spender, amount=amount)

    @method
    def transfer_from(self, ctx: Context, owner: bytes, to: bytes, amount: int) -> None:
        """Move ``owner``'s tokens by a spender (account or contract) within the allowance
        ``owner`` granted it; the allowance shrinks by ``amount``. Being the transaction's
        signer grants nothing: only ``owner == sender`` needs no allowance."""
        _check_address(ctx, owner, "owner")
        _check_address(ctx, to, "recipient")
        _check_amount(ctx, amount)
        if owner != ctx.sender:
            key = _allowance_key(owner, ctx.sender)
            allowed = ctx.get(key, 0)
            ctx.require(allowed >= amount, f"allowance too small: {allowed} < {amount}")
            if allowed == amount:
                ctx.delete(key)
            else:
                ctx.set(key, allowed - amount)
        self._move(ctx, owner, to, amount)

    @method(readonly=True)
    def balance_of(self, ctx: Context, account: bytes) -> int:
        ctx.require(len(account) == ADDRESS_SIZE, f"account must be a {ADDRESS_SIZE}-byte address")
        return int(ctx.get(account, 0))

    @method(readonly=True)
    def allowance(self, ctx: Context, owner: bytes, spender: bytes) -> int:
        return int(ctx.get(_allowance_key(owner, spender), 0))

    @method(readonly=True)
    def total_supply(self, ctx: Context) -> int:
        return int(ctx.get("supply", 0))

    @method(readonly=True)
    def authority(self, ctx: Context) -> bytes:
        return ctx.get("authority", b"")
