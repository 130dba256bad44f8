"""The token-transfer fast path gives the generic path's bytes, or steps aside.

The fast path (accord.contracts.fastpath) re-derives what the metered token code charges and
writes. These tests run whole blocks both ways on generated states, arguments and gas limits
and compare receipts (their canonical bytes), writes (with their order) and block gas; one of
them fails if the token's code, the meter or the gas schedule changes without the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import StorageError
from accord.base.genesis import ContractEntry, Genesis
from accord.base.types import Tx
from accord.contracts import BUILTINS, InvalidBlock, Runtime, fastpath
from accord.contracts.base import Context, contract_address, method, state_key
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import code_hash
from accord.contracts.token import MAX_AMOUNT, MAX_REFERENCE, Token
from accord.node.config import builtin_contract_entries

from .support.fee_token import PAYER, FeeToken
from .support.genesis import make_genesis

KEYS = [AccountKey.from_name(f"fast-{i}") for i in range(4)]
ADDRS = [k.address for k in KEYS]
G = make_genesis(1, contracts=builtin_contract_entries())
FAST = Runtime(G)
SLOW = Runtime(G, fast_paths=False)


def _balance_key(address: bytes) -> bytes:
    return state_key("token", address)


def _state(balances: dict[bytes, Any]) -> MemoryState:
    """The genesis state with these token balance records put in directly (any value, so a
    record the token never writes, such as a str, is covered too)."""
    st = MemoryState(FAST.genesis_writes())
    for address, value in balances.items():
        st.data[_balance_key(address)] = encoding.encode(value)
    return st


def _run(rt: Runtime, st: MemoryState, txs: list[Tx]) -> tuple[str, Any]:
    try:
        r = rt.execute_block(st, txs, height=1, time_ms=0)
    except InvalidBlock as e:
        return "invalid", (e.message, e.index)
    return "ok", ([x.encode() for x in r.receipts], list(r.writes.items()), r.gas_used)


# Each strategy leans to what succeeds (funded senders, real recipients, small amounts), so
# that most generated transfers reach the fast path's later checks; the rest probe the edges.
balances = st.dictionaries(
    st.sampled_from(ADDRS),
    st.one_of(
        st.integers(50, 10**6),
        st.integers(0, 3),
        st.integers(0, 2**64 - 1),
        st.sampled_from([MAX_AMOUNT - 1, MAX_AMOUNT, 2**64 - 2, 2**64 - 1]),
        st.just("not a balance"),
    ),
)
recipients = st.one_of(
    st.sampled_from(ADDRS),
    st.sampled_from(ADDRS),
    st.sampled_from([bytes(20), bytes(19), b"\x01" * 21, b""]),
    st.binary(min_size=20, max_size=20),
)
amounts = st.one_of(
    st.integers(1, 60),
    st.integers(-2, 4),
    st.integers(0, 2**64 - 1),  # what a transaction can encode
    st.sampled_from([MAX_AMOUNT, MAX_AMOUNT + 1]),
)
# Around a transfer's real cost (~5,000 with its intrinsic ~3,000), so every charge's
# boundary is hit, and the default limit.
gas_limits = st.one_of(st.integers(2_500, 7_000), st.just(1_000_000))


references = st.one_of(
    st.binary(max_size=MAX_REFERENCE + 2),
    st.sampled_from([b"", b"r" * MAX_REFERENCE, b"r" * (MAX_REFERENCE + 1)]),
    st.just("a str reference"),
)


@st.composite
def transfer_args(draw: st.DrawFn, method: str) -> dict[str, Any]:
    args: dict[str, Any] = {"to": draw(recipients), "amount": draw(amounts)}
    if method == "remit":
        args["reference"] = draw(references)
    odd = draw(st.sampled_from(["", "", "", "extra", "str_to", "bool_amount", "missing"]))
    if odd == "extra":
        args["memo"] = b"x"
    elif odd == "str_to":
        args["to"] = "alice"
    elif odd == "bool_amount":
        args["amount"] = True
    elif odd == "missing":
        del args["amount"]
    return args


def _token_txs(
    draw: st.DrawFn,
    max_txs: int,
    methods: list[str],
    args_of: Callable[[st.DrawFn, str], dict[str, Any]],
) -> list[Tx]:
    """A block of token calls by the test keys (each sender's nonces in sequence)."""
    nonces = [0] * len(KEYS)
    txs = []
    for _ in range(draw(st.integers(1, max_txs))):
        i = draw(st.integers(0, len(KEYS) - 1))
        name = draw(st.sampled_from(methods))
        txs.append(
            Tx.create(
                KEYS[i],
                chain_id=G.chain_id,
                contract="token",
                method=name,
                args=args_of(draw, name),
                nonce=nonces[i],
                gas_limit=draw(gas_limits),
            )
        )
        nonces[i] += 1
    return txs


def _edge_args(draw: st.DrawFn, name: str) -> dict[str, Any]:
    if name == "approve":
        return {"spender": draw(recipients), "amount": draw(amounts)}
    return draw(transfer_args(name))


@st.composite
def blocks(draw: st.DrawFn) -> list[Tx]:
    return _token_txs(draw, 6, ["transfer", "remit", "approve"], _edge_args)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(balances, blocks())
def test_fast_and_generic_paths_give_the_same_bytes(bal: dict[bytes, Any], txs: list[Tx]) -> None:
    assert _run(FAST, _state(bal), txs) == _run(SLOW, _state(bal), txs)


EDGES: list[tuple[str, dict[str, Any]]] = [
    ("transfer", {"to": ADDRS[1], "amount": 5, "memo": b"x"}),
    ("transfer", {"to": ADDRS[1]}),
    ("transfer", {"to": ADDRS[1], "amount": 5, "reference": b"x"}),
    ("remit", {"to": ADDRS[1], "amount": 5, "reference": b"r" * MAX_REFERENCE}),
    ("remit", {"to": ADDRS[1], "amount": 5, "reference": b"r" * (MAX_REFERENCE + 1)}),
    ("remit", {"to": ADDRS[1], "amount": 5}),
    ("remit", {"to": ADDRS[1], "amount": 5, "reference": b"", "memo": b""}),
    ("remit", {"to": ADDRS[1], "amount": 5, "reference": "str"}),
    ("transfer", {"to": bytes(20), "amount": 5}),
    ("transfer", {"to": ADDRS[1][:19], "amount": 5}),
    ("transfer", {"to": ADDRS[1], "amount": 0}),
    ("transfer", {"to": ADDRS[1], "amount": 1_000}),
    ("transfer", {"to": ADDRS[1], "amount": 1_001}),
    ("transfer", {"to": ADDRS[1], "amount": MAX_AMOUNT + 1}),
    ("transfer", {"to": ADDRS[0], "amount": 1_000}),
    ("transfer", {"to": ADDRS[0], "amount": 1_001}),
]


@pytest.mark.parametrize(("name", "args"), EDGES)
def test_edges_from_a_funded_sender(name: str, args: dict[str, Any]) -> None:
    """Each case alone, from a sender holding 1,000 to a recipient holding 2**63 - 1,000:
    exactly one rule in question, so the fast path must get that rule right."""
    st = _state({ADDRS[0]: 1_000, ADDRS[1]: MAX_AMOUNT - 1_000})
    tx = Tx.create(KEYS[0], chain_id=G.chain_id, contract="token", method=name, args=args, nonce=0)
    assert _run(FAST, st, [tx]) == _run(SLOW, st, [tx])


def _remit(key: AccountKey, to: bytes, amount: int, reference: bytes, nonce: int) -> Tx:
    return Tx.create(
        key,
        chain_id=G.chain_id,
        contract="token",
        method="remit",
        args={"to": to, "amount": amount, "reference": reference},
        nonce=nonce,
    )


def _transfer(key: AccountKey, to: bytes, amount: int, nonce: int = 0, **kw: Any) -> Tx:
    return Tx.create(
        key,
        chain_id=G.chain_id,
        contract="token",
        method="transfer",
        args={"to": to, "amount": amount},
        nonce=nonce,
        **kw,
    )


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each call of the fast path answered (True) or stepped aside (False)."""
    calls: list[bool] = []
    real = fastpath.token_transfer

    def spy(*a: Any, **kw: Any) -> Any:
        out = real(*a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(fastpath, "token_transfer", spy)
    return calls


def test_the_fast_path_answers_the_common_transfers(answered: list[bool]) -> None:
    """Without this the comparison above could pass with a fast path that never answers."""
    st = _state({ADDRS[0]: 100, ADDRS[1]: 5})
    txs = [
        _transfer(KEYS[0], ADDRS[1], 40),  # both balances change
        _transfer(KEYS[1], ADDRS[2], 45),  # the whole balance (a delete), new recipient
        _transfer(KEYS[0], ADDRS[0], 10, nonce=1),  # to oneself
        _transfer(KEYS[0], ADDRS[1], 61, nonce=2),  # more than is left: the generic revert
        _remit(KEYS[0], ADDRS[3], 7, b"invoice 17", nonce=3),
    ]
    fast = FAST.execute_block(st, txs, height=1, time_ms=0)
    assert answered == [True, True, True, False, True]
    slow = SLOW.execute_block(st, txs, height=1, time_ms=0)
    assert [r.encode() for r in fast.receipts] == [r.encode() for r in slow.receipts]
    assert list(fast.writes.items()) == list(slow.writes.items())
    assert [r.ok for r in fast.receipts] == [True, True, True, False, True]
    assert fast.receipts[4].events[0].data["reference"] == b"invoice 17"
    assert "insufficient balance" in fast.receipts[3].error


def test_other_code_under_the_token_name_never_takes_the_fast_path() -> None:
    g: Genesis = make_genesis(
        1, contracts=[ContractEntry(name="token", code_hash=code_hash(FeeToken).hex())]
    )
    # The built-in token is offered too (as governance could put it in force later), so the
    # runtime has a fast-path instance: the point is that it is not the one in force.
    rt = Runtime(g, contracts={"token": FeeToken}, installed=[BUILTINS["token"]])
    assert rt._fast_token is not None
    assert KEYS[0].address == PAYER
    st = MemoryState(rt.genesis_writes())
    r = rt.execute_block(st, [_transfer(KEYS[0], ADDRS[1], 10)], height=1, time_ms=0)
    assert r.receipts[0].ok
    assert [e.name for e in r.receipts[0].events] == ["Fee"]
    assert encoding.decode_stored(r.writes[_balance_key(PAYER)]) == 1_000 - 11


def test_gas_limit_at_the_exact_cost() -> None:
    """The fast path's gas is the generic path's to the unit: a limit one below the cost fails
    (out of gas, through the generic path), the exact cost passes."""
    st = _state({ADDRS[0]: 100})
    # 60,000 encodes in as many bytes as the cost (~5,000) does: the same intrinsic gas.
    probe = _transfer(KEYS[0], ADDRS[1], 1, gas_limit=60_000)
    cost = SLOW.execute_block(st, [probe], height=1, time_ms=0)
    need = cost.receipts[0].gas_used
    for limit, ok in ((need, True), (need - 1, False)):
        tx = _transfer(KEYS[0], ADDRS[1], 1, gas_limit=limit)
        fast = FAST.execute_block(st, [tx], height=1, time_ms=0).receipts[0]
        slow = SLOW.execute_block(st, [tx], height=1, time_ms=0).receipts[0]
        assert fast.encode() == slow.encode()
        assert fast.ok is ok


class _Forged(Token):
    """Other code that claims the built-in token's code hash: a class defined here whose
    ``__module__`` names token.py's module, so the hash (of that module's file) is the
    built-in's, though its ``transfer`` is not."""

    __module__ = Token.__module__
    name = "token"

    @method
    def transfer(self, ctx: Context, to: bytes, amount: int) -> None:
        ctx.require(False, "forged transfer")


def test_a_class_claiming_the_token_code_hash_never_takes_the_fast_path() -> None:
    """The runtime looks the fast-path instance up by (name, code hash); the hash alone
    would hand this release's transfer semantics to any class that names token.py's module.
    Both runtimes must run the forged ``transfer`` (a revert) instead."""
    assert code_hash(_Forged) == code_hash(Token)
    contracts = {**BUILTINS, "token": _Forged}
    fast = Runtime(G, contracts=contracts)
    slow = Runtime(G, contracts=contracts, fast_paths=False)
    st = _state({ADDRS[0]: 100})
    txs = [_transfer(KEYS[0], ADDRS[1], 5)]
    receipt = fast.execute_block(st, txs, height=1, time_ms=0).receipts[0]
    assert not receipt.ok and receipt.error == "forged transfer"
    assert _run(fast, st, txs) == _run(slow, st, txs)
    assert fast._fast_token is None


class _FailingState(MemoryState):
    """A state reader whose token balance reads fail, as a closed snapshot's or a damaged
    store's do: a local failure of this node, not a property of the transaction."""

    def __init__(self, data: dict[bytes, bytes | None], error: Exception) -> None:
        super().__init__(data)
        self.error = error

    def get_state(self, key: bytes) -> bytes | None:
        if key.startswith(_balance_key(b"")):
            raise self.error
        return super().get_state(key)


@pytest.mark.parametrize("error", [StorageError("snapshot is closed"), OSError("I/O error")])
def test_a_failing_state_read_is_raised_by_both_paths(error: Exception) -> None:
    """The fast path lets the reader's error through; the generic path turned it into a
    failed receipt (``storage_error``, or ``contract_error`` for a non-Accord error) that
    only this node would write. Both raise it now, and no receipt records it."""
    txs = [_transfer(KEYS[0], ADDRS[1], 5)]
    for rt in (FAST, SLOW):
        st = _FailingState(dict(FAST.genesis_writes()), error)
        with pytest.raises(type(error)) as raised:
            rt.execute_block(st, txs, height=1, time_ms=0)
        assert raised.value is error


# --- under governance: the contracts in force at a height, not genesis's ----------------------

# A genesis whose token is other code (FeeToken), so that governance putting the built-in in
# force is the only way the fast path can answer, and the chain's default one.
G_FEE = make_genesis(
    1,
    contracts=[
        e if e.name != "token" else ContractEntry(name="token", code_hash=code_hash(FeeToken).hex())
        for e in builtin_contract_entries()
    ],
)
GOVERNED = {
    "builtin genesis": (G, {}, [FeeToken]),
    "fee token genesis": (G_FEE, {"token": FeeToken}, [Token]),
}
TOKEN_HASHES = {"built-in": code_hash(Token), "fee token": code_hash(FeeToken)}


def _in_force(genesis: Genesis, token_hash: bytes, at: int) -> dict[bytes, bytes]:
    """The governance records of one contracts change, in force from height ``at``: genesis's
    registry with the token's code replaced by ``token_hash`` (what ``upgrade_contract``
    leaves in state, written directly so the test needs no votes)."""
    reg = {
        e.name: {"code_hash": bytes.fromhex(e.code_hash), "status": "active"}
        for e in genesis.contracts
    }
    reg["token"] = {"code_hash": token_hash, "status": "active"}
    return {
        state_key("governance", "s/contracts/n"): encoding.encode(1),
        state_key("governance", "s/contracts/0"): encoding.encode([at, reg, bytes(32)]),
    }


def _runtimes(case: str) -> tuple[Runtime, Runtime]:
    genesis, contracts, installed = GOVERNED[case]
    mapping = {**BUILTINS, **contracts}
    return (
        Runtime(genesis, contracts=mapping, installed=installed),
        Runtime(genesis, contracts=mapping, installed=installed, fast_paths=False),
    )


RUNTIMES = {case: _runtimes(case) for case in GOVERNED}
CONTRACT_ADDRS = [contract_address("token"), contract_address("loans")]

# Any record a token code could have left under a balance key before governance switched the
# code: the other code's negative, bool, bytes or list balances too.
any_records = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.integers(0, 200),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]),
    st.booleans(),
    st.binary(max_size=3),
    st.lists(st.integers(0, 5), max_size=2),
)


def _mixed_args(draw: st.DrawFn, name: str) -> dict[str, Any]:
    who = st.sampled_from(ADDRS + CONTRACT_ADDRS)
    args: dict[str, Any] = {"to": draw(who), "amount": draw(amounts)}
    if name == "remit":
        args["reference"] = draw(st.binary(max_size=MAX_REFERENCE + 1))
    elif name == "approve":
        args = {"spender": args["to"], "amount": args["amount"]}
    elif name == "transfer_from":
        args["owner"] = draw(who)
    return args


@st.composite
def mixed_blocks(draw: st.DrawFn) -> list[Tx]:
    """Transfers and remittances (to accounts and to contract addresses) among the token's
    other writes (approvals, transfers within them), so that a transfer reads what an
    earlier transaction of its block wrote or deleted."""
    methods = ["transfer", "transfer", "remit", "approve", "transfer_from"]
    return _token_txs(draw, 8, methods, _mixed_args)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(GOVERNED)),
    st.sampled_from([None, *sorted(TOKEN_HASHES)]),
    st.integers(1, 3),
    st.dictionaries(st.sampled_from(ADDRS + CONTRACT_ADDRS), any_records),
    mixed_blocks(),
    st.one_of(st.none(), st.integers(0, 30_000)),
)
def test_fast_and_generic_paths_agree_under_governance(
    case: str,
    token: str | None,
    height: int,
    records: dict[bytes, Any],
    txs: list[Tx],
    budget: int | None,
) -> None:
    """Whatever token code is in force at the block's height (genesis's, or a change that is
    or is not yet active), whatever records the balance keys hold, with a building budget."""
    fast, slow = RUNTIMES[case]
    genesis = GOVERNED[case][0]
    data = dict(fast.genesis_writes())
    if token is not None:
        data.update(_in_force(genesis, TOKEN_HASHES[token], at=2))
    data.update({_balance_key(a): encoding.encode(v) for a, v in records.items()})
    out = []
    for rt in (fast, slow):
        try:
            r = rt.execute_block(
                MemoryState(data), txs, height=height, time_ms=0, gas_budget=budget
            )
            out.append(([x.encode() for x in r.receipts], list(r.writes.items()), r.gas_used))
        except InvalidBlock as e:
            out.append((e.message, e.index))
    assert out[0] == out[1]


@pytest.mark.parametrize(
    ("case", "token", "height", "events", "fast"),
    [
        ("builtin genesis", "fee token", 1, ["Transfer"], True),  # the change is not yet active
        ("builtin genesis", "fee token", 2, ["Fee"], False),
        ("builtin genesis", "built-in", 2, ["Transfer"], True),
        ("fee token genesis", None, 2, ["Fee"], False),
        ("fee token genesis", "built-in", 1, ["Fee"], False),
        ("fee token genesis", "built-in", 2, ["Transfer"], True),
    ],
)
def test_the_fast_path_follows_the_code_in_force(
    answered: list[bool],
    case: str,
    token: str | None,
    height: int,
    events: list[str],
    fast: bool,
) -> None:
    """It answers exactly when the built-in token code is in force at the block's height,
    whether genesis or a governance change put it there (the comparison above would also
    pass with a fast path that never answers under governance)."""
    rt, slow = RUNTIMES[case]
    data = dict(rt.genesis_writes())
    if token is not None:
        data.update(_in_force(GOVERNED[case][0], TOKEN_HASHES[token], at=2))
    data[_balance_key(PAYER)] = encoding.encode(1_000)
    txs = [_transfer(KEYS[0], ADDRS[1], 10)]
    r = rt.execute_block(MemoryState(data), txs, height=height, time_ms=0)
    assert [e.name for e in r.receipts[0].events] == events
    assert answered == ([True] if fast else [])
    s = slow.execute_block(MemoryState(data), txs, height=height, time_ms=0)
    assert [x.encode() for x in r.receipts] == [x.encode() for x in s.receipts]
    assert list(r.writes.items()) == list(s.writes.items())


RECORDS: list[Any] = [
    "not a balance",
    [5],
    b"\x05",
    True,
    False,
    -3,
    -(2**63),
    0,
    2**32,  # the widest integer encoding (9 bytes), so the read's byte gas counts
    2**63,
    2**64 - 1 - 5,  # the amount below brings it to the encoding's top exactly
    2**64 - 5,  # one past it: the generic set cannot encode the sum
    2**64 - 1,
]


@pytest.mark.parametrize("record", RECORDS, ids=repr)
@pytest.mark.parametrize("whose", ["sender", "recipient"])
def test_a_transfer_over_any_record_a_balance_key_can_hold(whose: str, record: Any) -> None:
    """Records this token never writes but other code under its name could have, before
    governance put the built-in back: a funded sender's transfer of 5 over each, in the
    sender's or the recipient's balance key, and a remittance over the same."""
    held = {ADDRS[0]: 1_000, ADDRS[1]: record} if whose == "recipient" else {ADDRS[0]: record}
    st = _state(held)
    txs = [
        _transfer(KEYS[0], ADDRS[1], 5),
        _remit(KEYS[0], ADDRS[1], 5, b"r", nonce=1),
    ]
    for block in (txs[:1], txs):
        assert _run(FAST, st, block) == _run(SLOW, st, block)
