"""Contract runtime: revert semantics, gas, argument checks, invalid blocks, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import (
    BadArguments,
    CodeMismatch,
    DecodeError,
    GenesisError,
    StorageError,
    UnknownContract,
    UnknownMethod,
)
from accord.base.genesis import ContractEntry, Genesis
from accord.base.genesis import vk_hash as genesis_vk_hash
from accord.base.types import Tx
from accord.contracts import (
    BUILTINS,
    GAS,
    Context,
    Contract,
    InvalidBlock,
    Runtime,
    code_hash,
    method,
)
from accord.contracts.base import (
    BadStateKey,
    OracleUnavailable,
    ProofVerifierUnavailable,
    ReadOnlyViolation,
    _encode_value,
    contract_address,
    state_key,
)
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import BlockResult, nonce_key

from .support.genesis import make_genesis

ALICE = AccountKey.from_name("alice")
BOB = AccountKey.from_name("bob")
AUTH = AccountKey.from_name("authority")


DictState = MemoryState


class Probe(Contract):
    """A test contract exercising every context feature."""

    name = "probe"

    def genesis_state(self) -> dict[str | bytes, Any]:
        return {"greeting": "hello", b"greeting": b"bytes key"}

    @method
    def put(self, ctx: Context, key: str, value: int) -> int:
        ctx.set(key, value)
        ctx.emit("Put", key=key, value=value)
        return value

    @method
    def put_then_fail(self, ctx: Context, key: str) -> None:
        ctx.set(key, 1)
        ctx.emit("Put", key=key, value=1)
        ctx.require(False, "deliberate revert")

    @method
    def boom(self, ctx: Context) -> None:
        ctx.set("boom", 1)
        _ = 1 // 0

    @method
    def typed(
        self,
        ctx: Context,
        i: int,
        s: str,
        b: bytes,
        flag: bool,
        xs: list,
        m: dict,
        maybe: int | None,
    ) -> list:
        return [i, s, b, flag, xs, m, maybe]

    @method(readonly=True)
    def read(self, ctx: Context, key: str) -> Any:
        return ctx.get(key)

    @method(readonly=True)
    def read_or_none(self, ctx: Context, key: str) -> Any:
        """Read, and answer None whatever went wrong (a careless contract)."""
        try:
            return ctx.get(key)
        except Exception:
            return None

    @method(readonly=True)
    def sneaky_write(self, ctx: Context) -> None:
        ctx.set("x", 1)

    @method
    def pay(self, ctx: Context, to: bytes, amount: int) -> Any:
        """Pay from this contract's own token balance."""
        return ctx.call("token", "transfer", to=to, amount=amount)

    @method
    def pull(self, ctx: Context, amount: int) -> None:
        """Take tokens from the signer into this contract (a deposit within its approval)."""
        ctx.call("token", "transfer_from", owner=ctx.origin, to=ctx.address, amount=amount)
        ctx.set("deposited", ctx.get("deposited", 0) + amount)

    @method
    def try_pay(self, ctx: Context, to: bytes, amount: int) -> str:
        """Call token, catch a failure, and carry on: the callee's writes must be undone."""
        ctx.set("before", 1)
        try:
            ctx.call("token", "transfer", to=to, amount=amount)
        except Exception as e:
            ctx.set("caught", type(e).__name__)
            return "caught"
        return "paid"

    @method
    def swallow_gas(self, ctx: Context, n: int) -> str:
        try:
            for i in range(n):
                ctx.set(f"k{i}", i)
        except Exception:
            return "swallowed"
        return "done"

    @method
    def recurse(self, ctx: Context, depth: int) -> int:
        if depth == 0:
            return 0
        return 1 + ctx.call("probe", "recurse", depth=depth - 1)  # type: ignore[no-any-return]

    @method
    def whoami(self, ctx: Context) -> list:
        return [ctx.sender, ctx.origin, ctx.caller, ctx.height, ctx.time_ms, ctx.tx_hash]

    @method
    def via(self, ctx: Context) -> list:
        return ctx.call("probe", "whoami")  # type: ignore[no-any-return]

    @method
    def prove(self, ctx: Context, circuit: str, inputs: list) -> bool:
        return ctx.verify_proof(circuit, {"pi_a": []}, inputs)

    @method
    def ask(self, ctx: Context, program: str) -> Any:
        return ctx.mpc.request(program, [1, 2], [ctx.sender], "on_result")

    @method
    def bad_key(self, ctx: Context) -> None:
        ctx.set(5, 1)  # type: ignore[arg-type]

    @method
    def float_result(self, ctx: Context) -> Any:
        return 1.5

    @method
    def has_del(self, ctx: Context, key: str) -> list:
        had = ctx.has(key)
        ctx.delete(key)
        return [had, ctx.has(key)]

    def helper(self, ctx: Context) -> None:
        """Not marked: must not be callable."""
        ctx.set("helper", 1)


CONTRACTS = {**BUILTINS, "probe": Probe}


def genesis(**kw: Any) -> Genesis:
    entries = [
        ContractEntry(name=n, code_hash=code_hash(c).hex()) for n, c in sorted(CONTRACTS.items())
    ]
    balances = {ALICE.address.hex(): 1_000, BOB.address.hex(): 500}
    return make_genesis(1, balances=balances, contracts=entries, **kw)


G = genesis()


def runtime(**kw: Any) -> Runtime:
    return Runtime(G, CONTRACTS, check_code=False, **kw)  # Probe returns a float on purpose


def fresh() -> tuple[Runtime, DictState]:
    rt = runtime()
    return rt, DictState({k: v for k, v in rt.genesis_writes().items() if v is not None})


def tx(
    key: AccountKey,
    method: str,
    args: dict[str, Any],
    nonce: int,
    *,
    contract: str = "probe",
    gas_limit: int = 1_000_000,
    chain_id: str | None = None,
) -> Tx:
    return Tx.create(
        key,
        chain_id=chain_id or G.chain_id,
        contract=contract,
        method=method,
        args=args,
        nonce=nonce,
        gas_limit=gas_limit,
    )


def run(rt: Runtime, st: DictState, txs: list[Tx], height: int = 1) -> BlockResult:
    return rt.execute_block(st, txs, height=height, time_ms=1234)


def probe_value(st: DictState | dict[bytes, bytes | None], key: str) -> Any:
    data = st.data if isinstance(st, DictState) else st
    raw = data.get(state_key("probe", key))
    return None if raw is None else encoding.decode(raw)


# --- success and revert ----------------------------------------------------------------------


def test_success_writes_events_result_and_nonce() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "put", {"key": "a", "value": 7}, 0)])
    (rc,) = r.receipts
    assert rc.ok and rc.result == 7 and rc.error_code == ""
    assert [(e.contract, e.name, e.data) for e in rc.events] == [
        ("probe", "Put", {"key": "a", "value": 7})
    ]
    assert probe_value(r.writes, "a") == 7
    assert r.writes[nonce_key(ALICE.address)] == encoding.encode(1)
    st.apply(r.writes)
    assert rt.nonce_of(st, ALICE.address) == 1
    assert rt.query(st, "probe", "read", {"key": "a"}) == 7


def test_failed_tx_reverts_its_writes_keeps_earlier_and_advances_nonce() -> None:
    rt, st = fresh()
    txs = [
        tx(ALICE, "put", {"key": "a", "value": 1}, 0),
        tx(ALICE, "put_then_fail", {"key": "b"}, 1),
        tx(BOB, "put", {"key": "c", "value": 3}, 0),
    ]
    r = run(rt, st, txs)
    ok, failed, later = r.receipts
    assert ok.ok and later.ok
    assert not failed.ok and failed.error_code == "revert" and failed.error == "deliberate revert"
    assert failed.events == () and failed.result is None and failed.gas_used > 0
    assert probe_value(r.writes, "a") == 1 and probe_value(r.writes, "c") == 3
    assert state_key("probe", "b") not in r.writes
    assert r.writes[nonce_key(ALICE.address)] == encoding.encode(2)
    st.apply(r.writes)
    # The consumed nonce cannot be replayed.
    with pytest.raises(InvalidBlock, match="replays a nonce"):
        run(rt, st, [txs[1]])


def test_contract_exception_is_a_failed_receipt_with_stable_message() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "boom", {}, 0)])
    (rc,) = r.receipts
    assert not rc.ok and rc.error_code == "contract_error"
    assert rc.error == "probe.boom raised ZeroDivisionError"
    assert state_key("probe", "boom") not in r.writes
    assert set(r.writes) == {nonce_key(ALICE.address)}


def test_later_tx_sees_earlier_writes_in_block() -> None:
    rt, st = fresh()
    r = run(
        rt, st, [tx(ALICE, "put", {"key": "a", "value": 5}, 0), tx(BOB, "read", {"key": "a"}, 0)]
    )
    assert r.receipts[1].ok and r.receipts[1].result == 5


def test_has_and_delete() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "has_del", {"key": "greeting"}, 0)])
    assert r.receipts[0].result == [True, False]
    assert r.writes[state_key("probe", "greeting")] is None
    st.apply(r.writes)
    assert rt.query(st, "probe", "read", {"key": "greeting"}) is None


def test_str_and_bytes_keys_do_not_collide() -> None:
    assert state_key("probe", "greeting") != state_key("probe", b"greeting")
    rt, st = fresh()
    assert encoding.decode(st.data[state_key("probe", "greeting")]) == "hello"
    assert encoding.decode(st.data[state_key("probe", b"greeting")]) == b"bytes key"


def test_bad_state_key_type_fails_tx() -> None:
    rt, st = fresh()
    rc = run(rt, st, [tx(ALICE, "bad_key", {}, 0)]).receipts[0]
    assert not rc.ok and rc.error_code == BadStateKey.code


def test_float_result_fails_tx() -> None:
    rt, st = fresh()
    rc = run(rt, st, [tx(ALICE, "float_result", {}, 0)]).receipts[0]
    assert not rc.ok and rc.error_code == "decode_error"


# --- unknown contract / method, arguments ------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "method_", "code", "msg"),
    [
        ("nope", "put", UnknownContract.code, "no contract 'nope'"),
        ("probe", "nope", UnknownMethod.code, "no callable method 'nope'"),
        ("probe", "helper", UnknownMethod.code, "no callable method 'helper'"),
        ("probe", "genesis_state", UnknownMethod.code, "no callable method"),
        ("probe", "__init__", UnknownMethod.code, "no callable method"),
    ],
)
def test_unknown_contract_and_method(contract: str, method_: str, code: str, msg: str) -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, method_, {}, 0, contract=contract)])
    rc = r.receipts[0]
    assert not rc.ok and rc.error_code == code and msg in rc.error
    assert set(r.writes) == {nonce_key(ALICE.address)}


def test_contract_not_in_genesis_is_not_callable() -> None:
    g = make_genesis(
        1, contracts=[ContractEntry(name="token", code_hash=code_hash(BUILTINS["token"]).hex())]
    )
    rt = Runtime(g, CONTRACTS, check_code=False)  # probe is available locally but not registered
    assert rt.contract_names == ["token"]
    r = rt.execute_block(
        DictState(),
        [
            Tx.create(
                ALICE,
                chain_id=g.chain_id,
                contract="probe",
                method="put",
                args={"key": "a", "value": 1},
                nonce=0,
            )
        ],
        height=1,
        time_ms=0,
    )
    assert r.receipts[0].error_code == UnknownContract.code


GOOD = {"i": 1, "s": "x", "b": b"y", "flag": True, "xs": [1], "m": {"k": 1}, "maybe": None}


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        ({k: v for k, v in GOOD.items() if k != "s"}, "missing 's'"),
        ({**GOOD, "extra": 1}, "unexpected 'extra'"),
        ({**GOOD, "i": True}, "'i' must be int, got bool"),
        ({**GOOD, "i": "1"}, "'i' must be int, got str"),
        ({**GOOD, "flag": 1}, "'flag' must be bool, got int"),
        ({**GOOD, "b": "y"}, "'b' must be bytes, got str"),
        ({**GOOD, "xs": {"a": 1}}, "'xs' must be list, got dict"),
        ({**GOOD, "m": [1]}, "'m' must be dict, got list"),
        ({**GOOD, "s": None}, "'s' must be str, got NoneType"),
        ({k: v for k, v in GOOD.items() if k != "s"} | {"t": "x"}, "missing 's'; unexpected 't'"),
    ],
)
def test_bad_arguments(args: dict[str, Any], msg: str) -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "typed", args, 0)])
    rc = r.receipts[0]
    assert not rc.ok and rc.error_code == BadArguments.code and msg in rc.error
    assert set(r.writes) == {nonce_key(ALICE.address)}


def test_good_arguments_with_optional() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "typed", GOOD, 0), tx(ALICE, "typed", {**GOOD, "maybe": 3}, 1)])
    assert [rc.result for rc in r.receipts] == [
        [1, "x", b"y", True, [1], {"k": 1}, None],
        [1, "x", b"y", True, [1], {"k": 1}, 3],
    ]


def test_method_declarations_are_checked_at_class_creation() -> None:
    with pytest.raises(TypeError, match="unsupported type"):

        class BadType(Contract):
            @method
            def m(self, ctx: Context, x: float) -> None: ...

    with pytest.raises(TypeError, match="needs a type annotation"):

        class NoAnn(Contract):
            @method
            def m(self, ctx: Context, x) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(TypeError, match="without default"):

        class Default(Contract):
            @method
            def m(self, ctx: Context, x: int = 1) -> None: ...


# --- readonly, queries -------------------------------------------------------------------------


def test_readonly_method_cannot_write() -> None:
    rt, st = fresh()
    rc = run(rt, st, [tx(ALICE, "sneaky_write", {}, 0)]).receipts[0]
    assert not rc.ok and rc.error_code == ReadOnlyViolation.code
    with pytest.raises(ReadOnlyViolation):
        rt.query(st, "probe", "sneaky_write", {})


def test_query_refuses_non_readonly_and_bad_args() -> None:
    rt, st = fresh()
    with pytest.raises(UnknownMethod, match="not a readonly method"):
        rt.query(st, "probe", "put", {"key": "a", "value": 1})
    with pytest.raises(BadArguments):
        rt.query(st, "probe", "read", {"key": 1})
    with pytest.raises(UnknownContract):
        rt.query(st, "nope", "read", {})
    assert rt.query(st, "probe", "read", {"key": "greeting"}) == "hello"


# --- gas -------------------------------------------------------------------------------------


def test_gas_limit_boundary() -> None:
    rt, st = fresh()
    # gas_used depends on the tx's size, and the size on gas_limit's encoding: keep every limit
    # in msgpack's uint16 range so that the three transactions have the same size and cost.
    probe = tx(ALICE, "put", {"key": "a", "value": 1}, 0, gas_limit=60_000)
    used = run(rt, st, [probe]).receipts[0].gas_used
    assert 256 < used < 60_000
    exact = tx(ALICE, "put", {"key": "a", "value": 1}, 0, gas_limit=used)
    less = tx(ALICE, "put", {"key": "a", "value": 1}, 0, gas_limit=used - 1)
    assert len(exact.encode()) == len(less.encode()) == len(probe.encode())
    r_exact = run(rt, st, [exact])
    assert r_exact.receipts[0].ok and r_exact.receipts[0].gas_used == used
    r_less = run(rt, st, [less])
    rc = r_less.receipts[0]
    assert not rc.ok and rc.error_code == "out_of_gas" and rc.gas_used == used - 1
    assert set(r_less.writes) == {nonce_key(ALICE.address)}


def test_gas_below_intrinsic_fails_and_consumes_nonce() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "put", {"key": "a", "value": 1}, 0, gas_limit=10)])
    rc = r.receipts[0]
    assert not rc.ok and rc.error_code == "out_of_gas" and rc.gas_used == 10
    assert "intrinsic" in rc.error
    assert set(r.writes) == {nonce_key(ALICE.address)}


def test_gas_counts_bytes() -> None:
    rt, st = fresh()
    # Both keys are msgpack str8 (32..255 bytes), so only the payload length differs.
    small = run(rt, st, [tx(ALICE, "put", {"key": "a" * 40, "value": 1}, 0)]).receipts[0].gas_used
    big = run(rt, st, [tx(ALICE, "put", {"key": "a" * 139, "value": 1}, 0)]).receipts[0].gas_used
    # 99 more key bytes: in the tx (tx_byte), the written key (write_byte) and the event (event_byte).
    assert big - small == 99 * (GAS.tx_byte + GAS.write_byte + GAS.event_byte)


def test_catching_out_of_gas_does_not_help() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "swallow_gas", {"n": 10_000}, 0, gas_limit=50_000)])
    rc = r.receipts[0]
    assert not rc.ok and rc.error_code == "out_of_gas" and rc.gas_used == 50_000
    assert set(r.writes) == {nonce_key(ALICE.address)}


# --- contract-to-contract calls ----------------------------------------------------------------


def token_balance(rt: Runtime, st: DictState, who: bytes) -> int:
    return rt.query(st, "token", "balance_of", {"account": who})  # type: ignore[no-any-return]


def test_contract_call_uses_contract_address_as_sender() -> None:
    rt, st = fresh()
    pool = contract_address("probe")
    r = run(
        rt,
        st,
        [
            tx(ALICE, "transfer", {"to": pool, "amount": 100}, 0, contract="token"),
            tx(BOB, "pay", {"to": BOB.address, "amount": 30}, 0),
            tx(ALICE, "approve", {"spender": pool, "amount": 50}, 1, contract="token"),
            tx(ALICE, "pull", {"amount": 50}, 2),
        ],
    )
    assert all(rc.ok for rc in r.receipts), r.receipts
    # The token's event is attributed to the token contract, inside the probe's receipt.
    assert [(e.contract, e.name) for e in r.receipts[1].events] == [("token", "Transfer")]
    assert r.receipts[1].events[0].data == {"from": pool, "to": BOB.address, "amount": 30}
    st.apply(r.writes)
    # The approval is used up: a second pull is refused (no implicit pull from the signer).
    again = run(rt, st, [tx(ALICE, "pull", {"amount": 1}, 3)], height=2).receipts[0]
    assert not again.ok and "allowance too small" in again.error
    assert token_balance(rt, st, pool) == 100 - 30 + 50
    assert token_balance(rt, st, BOB.address) == 530
    assert token_balance(rt, st, ALICE.address) == 1000 - 100 - 50
    assert rt.query(st, "probe", "read", {"key": "deposited"}) == 50


def test_contract_call_context_fields() -> None:
    rt, st = fresh()
    t = tx(ALICE, "via", {}, 0)
    rc = run(rt, st, [t], height=9).receipts[0]
    assert rc.result == [contract_address("probe"), ALICE.address, "probe", 9, 1234, t.hash]
    t2 = tx(ALICE, "whoami", {}, 0)
    assert run(rt, st, [t2], height=9).receipts[0].result == [
        ALICE.address,
        ALICE.address,
        None,
        9,
        1234,
        t2.hash,
    ]


def test_failed_callee_is_undone_even_if_caller_catches() -> None:
    rt, st = fresh()
    # The probe holds no tokens: the nested transfer reverts; the caller catches and continues.
    r = run(rt, st, [tx(ALICE, "try_pay", {"to": BOB.address, "amount": 5}, 0)])
    rc = r.receipts[0]
    assert rc.ok and rc.result == "caught" and rc.events == ()
    assert probe_value(r.writes, "caught") == "Revert"
    assert not any(k.startswith(b"c/token/") for k in r.writes)


class FailingReads(DictState):
    """A state reader whose reads under ``prefix`` fail, as a closed snapshot's or a damaged
    store's do."""

    def __init__(self, data: dict[bytes, bytes], prefix: bytes) -> None:
        super().__init__(data)
        self.prefix = prefix

    def get_state(self, key: bytes) -> bytes | None:
        if key.startswith(self.prefix):
            raise StorageError(f"cannot read {key.hex()}")
        return super().get_state(key)


def test_a_failing_state_read_is_raised_even_if_the_contract_catches_it() -> None:
    """The probe catches any exception of its nested token transfer. A failure of this node's
    own store is not the transfer's: it used to become the probe's success ("caught"), a
    receipt only this node would write. Now the block's execution raises it."""
    rt, st = fresh()
    broken = FailingReads(st.data, b"c/token/")
    with pytest.raises(StorageError, match="cannot read"):
        run(rt, broken, [tx(ALICE, "try_pay", {"to": BOB.address, "amount": 5}, 0)])
    # And uncaught, it is not a failed receipt (``storage_error``) either.
    with pytest.raises(StorageError, match="cannot read"):
        run(rt, broken, [tx(ALICE, "pay", {"to": BOB.address, "amount": 5}, 0)])


def test_a_failing_state_read_is_raised_by_a_query_that_catches_it() -> None:
    """What the node serves is read through proofs so that a damaged value raises instead of
    becoming an answer; a contract catching the error must not turn it into one."""
    rt, st = fresh()
    broken = FailingReads(st.data, state_key("probe", "greeting"))
    assert rt.query(st, "probe", "read_or_none", {"key": "greeting"}) == "hello"
    with pytest.raises(StorageError, match="cannot read"):
        rt.query(broken, "probe", "read_or_none", {"key": "greeting"})


def test_call_depth_limit_and_unknown_callee() -> None:
    rt, st = fresh()
    r = run(rt, st, [tx(ALICE, "recurse", {"depth": 3}, 0), tx(ALICE, "recurse", {"depth": 50}, 1)])
    assert r.receipts[0].ok and r.receipts[0].result == 3
    assert not r.receipts[1].ok and "nested deeper" in r.receipts[1].error


def test_transfer_from_without_allowance_by_account_fails() -> None:
    rt, st = fresh()
    rc = run(
        rt,
        st,
        [
            tx(
                BOB,
                "transfer_from",
                {"owner": ALICE.address, "to": BOB.address, "amount": 1},
                0,
                contract="token",
            )
        ],
    ).receipts[0]
    assert not rc.ok and "allowance too small" in rc.error


# --- hooks -------------------------------------------------------------------------------------


OK_VK = {"protocol": "groth16", "curve": "bn128", "note": "circuit ok"}


class FakeVerifier:
    """A real (if trivial) verifier object: accepts circuit "ok" with inputs summing to 10."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int], bytes | None]] = []

    def verify(
        self,
        circuit: str,
        proof: dict[str, Any],
        public_inputs: list[int],
        vk_hash: bytes | None = None,
    ) -> bool:
        self.calls.append((circuit, public_inputs, vk_hash))
        return circuit == "ok" and sum(public_inputs) == 10

    def has(self, vk_hash: bytes) -> bool:
        return vk_hash == genesis_vk_hash(OK_VK)


class RecordingOracle:
    def request(
        self, ctx: Context, program: str, inputs: Any, reveal_to: list[bytes], callback: str
    ) -> Any:
        ctx.set("oracle/" + program, inputs)
        return program + ":" + callback


def test_verify_proof_hook() -> None:
    v = FakeVerifier()
    g = G.model_copy(update={"zk_circuits": {"ok": OK_VK}})
    rt = Runtime(g, CONTRACTS, check_code=False, proof_verifier=v)
    st = DictState(rt.genesis_writes())  # type: ignore[arg-type]
    r = run(
        rt,
        st,
        [
            tx(ALICE, "prove", {"circuit": "ok", "inputs": [4, 6]}, 0),
            tx(ALICE, "prove", {"circuit": "ok", "inputs": [4, 7]}, 1),
            tx(ALICE, "prove", {"circuit": "unknown", "inputs": [4, 6]}, 2),
        ],
    )
    assert [rc.result for rc in r.receipts] == [True, False, None]
    assert r.receipts[0].gas_used >= GAS.proof_base + 2 * GAS.proof_input
    # The verifier is told which key: genesis's, by the hash that names it.
    ok_hash = genesis_vk_hash(OK_VK)
    assert v.calls == [("ok", [4, 6], ok_hash), ("ok", [4, 7], ok_hash)]
    assert "no circuit 'unknown' is registered" in r.receipts[2].error


def test_missing_hooks_give_clear_errors() -> None:
    rt, st = fresh()
    r = run(
        rt,
        st,
        [
            tx(ALICE, "prove", {"circuit": "ok", "inputs": []}, 0),
            tx(ALICE, "ask", {"program": "p"}, 1),
        ],
    )
    assert r.receipts[0].error_code == ProofVerifierUnavailable.code
    assert "no proof verifier" in r.receipts[0].error
    assert r.receipts[1].error_code == OracleUnavailable.code
    assert "no MPC oracle" in r.receipts[1].error


def test_oracle_hook() -> None:
    rt = runtime(oracle=RecordingOracle())
    st = DictState(rt.genesis_writes())  # type: ignore[arg-type]
    r = run(rt, st, [tx(ALICE, "ask", {"program": "sum"}, 0)])
    assert r.receipts[0].ok and r.receipts[0].result == "sum:on_result"
    assert probe_value(r.writes, "oracle/sum") == [1, 2]


# --- invalid blocks ----------------------------------------------------------------------------


def test_invalid_block_cases() -> None:
    rt, st = fresh()
    good = tx(ALICE, "put", {"key": "a", "value": 1}, 0)
    forged = Tx(*good.to_obj()[:7], signature=bytes(64))  # type: ignore[misc]
    obj = good.to_obj()
    tampered = Tx(obj[0], obj[1], obj[2], {"key": "a", "value": 2}, obj[4], obj[5], obj[6], obj[7])
    cases = [
        ([forged], "invalid signature", 0),
        ([tampered], "invalid signature", 0),
        (
            [good, tx(ALICE, "put", {"key": "a", "value": 1}, 0, chain_id="other")],
            "is for chain 'other'",
            1,
        ),
        ([tx(ALICE, "put", {"key": "a", "value": 1}, 1)], "skips a nonce", 0),
        ([good, good], "replays a nonce", 1),
        ([good, tx(ALICE, "put", {"key": "b", "value": 1}, 2)], "skips a nonce", 1),
    ]
    for txs, msg, index in cases:
        with pytest.raises(InvalidBlock, match=msg) as ei:
            run(rt, st, txs)
        assert ei.value.index == index and ei.value.code == "invalid_block"
        with pytest.raises(InvalidBlock, match=msg):
            rt.check_block(st, txs)
    # Malformed transactions built in-process (a decoded one can never look like this).
    unencodable = Tx(obj[0], obj[1], obj[2], {"key": 1.5}, obj[4], obj[5], obj[6], obj[7])
    short_key = Tx(obj[0], obj[1], obj[2], obj[3], obj[4][:31], obj[5], obj[6], obj[7])
    for bad, msg in [(unencodable, "no canonical encoding"), (short_key, "malformed public key")]:
        with pytest.raises(InvalidBlock, match=msg):
            run(rt, st, [bad])
        with pytest.raises(InvalidBlock, match=msg):
            rt.check_block(st, [bad])
    # A signature the caller already verified is not checked again (the hash fixes the bytes).
    assert run(rt, st, [good]).receipts[0].ok
    rt.execute_block(st, [tampered], height=1, time_ms=0, verified={tampered.hash})
    rt.check_block(st, [good, tx(ALICE, "put", {"key": "b", "value": 1}, 1)])


# --- block gas: the limit (validating) and the budget (building) -------------------------------


def _puts(sizes: list[int]) -> list[Tx]:
    """Transactions whose gas differs with ``size`` (bytes written and logged)."""
    return [
        tx(ALICE, "put", {"key": "k" * (1 + size), "value": i}, i) for i, size in enumerate(sizes)
    ]


@given(st.lists(st.integers(0, 300), min_size=1, max_size=8), st.integers(0, 60_000))
def test_gas_budget_cuts_before_the_transaction_that_passes_it(
    sizes: list[int], budget: int
) -> None:
    rt, state = fresh()
    txs = _puts(sizes)
    full = run(rt, state, txs)
    cumulative, total = [], 0
    for r in full.receipts:
        total += r.gas_used
        cumulative.append(total)
    assert full.gas_used == total
    keep = max(1, sum(1 for c in cumulative if c <= budget))  # the first always runs
    cut = rt.execute_block(state, txs, height=1, time_ms=1234, gas_budget=budget)
    assert cut.receipts == full.receipts[:keep]
    assert cut.gas_used == cumulative[keep - 1]
    # The cut result is exactly the block of the prefix: nothing of the cut-off tx leaks in.
    assert cut.writes == run(rt, state, txs[:keep]).writes


def test_block_gas_limit_makes_a_heavy_block_invalid() -> None:
    rt, state = fresh()
    txs = _puts([10, 200, 10])
    gas = [r.gas_used for r in run(rt, state, txs).receipts]
    assert rt.execute_block(state, txs, height=1, time_ms=0, max_gas=sum(gas)).gas_used == sum(gas)
    with pytest.raises(InvalidBlock, match="past the limit") as ei:
        rt.execute_block(state, txs, height=1, time_ms=0, max_gas=gas[0] + gas[1] - 1)
    assert ei.value.index == 1
    # Building with a budget below the limit never trips the limit, except for a first
    # transaction that passes it alone (the builder drops it by its index).
    assert (
        len(
            rt.execute_block(
                state, txs, height=1, time_ms=0, max_gas=gas[0], gas_budget=gas[0]
            ).receipts
        )
        == 1
    )
    with pytest.raises(InvalidBlock) as ei:
        rt.execute_block(state, txs, height=1, time_ms=0, max_gas=gas[0] - 1, gas_budget=gas[0] - 1)
    assert ei.value.index == 0


# --- genesis and code hashes -------------------------------------------------------------------


def test_code_hash_mismatch_refuses_to_start() -> None:
    wrong = "00" * 32
    g = make_genesis(1, contracts=[ContractEntry(name="probe", code_hash=wrong)])
    with pytest.raises(CodeMismatch) as ei:
        Runtime(g, CONTRACTS)
    msg = str(ei.value)
    assert "'probe'" in msg and wrong in msg and code_hash(Probe).hex() in msg
    g2 = make_genesis(1, contracts=[ContractEntry(name="ghost", code_hash=wrong)])
    with pytest.raises(CodeMismatch, match="no such contract"):
        Runtime(g2, CONTRACTS)


def test_genesis_contract_name_and_duplicates() -> None:
    h = code_hash(Probe).hex()
    with pytest.raises(GenesisError, match="registered twice"):
        Runtime(
            make_genesis(1, contracts=[ContractEntry(name="probe", code_hash=h)] * 2),
            CONTRACTS,
            check_code=False,
        )
    with pytest.raises(GenesisError, match="must match"):
        Runtime(
            make_genesis(1, contracts=[ContractEntry(name="Pro/be", code_hash=h)]),
            {"Pro/be": Probe},
        )


def test_code_hash_is_sha256_of_module_source() -> None:
    import hashlib
    import inspect

    assert code_hash(Probe) == hashlib.sha256(Path(inspect.getfile(Probe)).read_bytes()).digest()
    assert code_hash(BUILTINS["token"]) != code_hash(Probe)


# --- determinism -------------------------------------------------------------------------------


def test_same_block_twice_gives_identical_bytes() -> None:
    def block() -> list[Tx]:
        return [
            tx(ALICE, "put", {"key": "a", "value": 1}, 0),
            tx(ALICE, "put_then_fail", {"key": "b"}, 1),
            tx(BOB, "transfer", {"to": ALICE.address, "amount": 9}, 0, contract="token"),
            tx(ALICE, "boom", {}, 2),
            tx(BOB, "typed", {**GOOD, "i": "x"}, 1),
            tx(ALICE, "pull", {"amount": 3}, 3),
        ]

    outs = []
    for _ in range(2):
        rt, st = fresh()  # a fresh runtime too: nothing may carry over between instances
        r = run(rt, st, block())
        outs.append(
            (
                encoding.encode([rc.to_obj() for rc in r.receipts]),
                encoding.encode(sorted([k, v] for k, v in r.writes.items())),
                list(r.writes),
            )
        )
    assert outs[0] == outs[1]


# --- the encoding fast path --------------------------------------------------------------------

scalars = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.binary(max_size=300),
    st.text(max_size=300),
    st.booleans(),
    st.none(),
)


@given(
    st.one_of(scalars, st.lists(scalars, max_size=5), st.dictionaries(st.text(max_size=5), scalars))
)
def test_state_value_fast_path_is_canonical(v: Any) -> None:
    assert _encode_value(v) == encoding.encode(v)


@given(st.one_of(st.integers(2**64, 2**70), st.integers(-(2**70), -(2**63) - 1), st.floats()))
def test_state_value_fast_path_rejects_what_canonical_rejects(v: Any) -> None:
    with pytest.raises(DecodeError):
        _encode_value(v)


def test_receipts_are_in_canonical_shape() -> None:
    """Receipts' values are already canonical, so hashing them needs no re-canonicalising."""
    import msgpack

    rt, st = fresh()
    r = run(
        rt,
        st,
        [
            tx(ALICE, "transfer", {"to": BOB.address, "amount": 2}, 0, contract="token"),
            tx(ALICE, "typed", {**GOOD, "m": {"z": 1, "a": [2]}}, 1),
            tx(ALICE, "boom", {}, 2),
        ],
    )
    for rc in r.receipts:
        assert msgpack.packb(rc.to_obj()) == encoding.encode(rc.to_obj())
    assert list(r.receipts[0].events[0].data) == ["amount", "from", "to"]


def test_receipts_of_every_kind_encode_canonically() -> None:
    """The runtime's receipts skip the encoder's canonical walk (Receipt.canonical): their
    bytes must still be exactly the generic canonical encoding, for results and event data of
    every shape a contract can produce."""
    rt, st = fresh()
    txs = [
        tx(ALICE, "put", {"key": "a", "value": 7}, 0),
        tx(
            ALICE,
            "typed",
            {
                "i": -5,
                "s": "é",
                "b": b"\x00",
                "flag": True,
                "xs": [3, [1, "x"]],
                "m": {"z": 1, "a": {"y": b"", "b": None}},
                "maybe": None,
            },
            1,
        ),
        tx(ALICE, "put_then_fail", {"key": "b"}, 2),
        tx(ALICE, "boom", {}, 3),
        tx(ALICE, "pay", {"to": BOB.address, "amount": 1}, 4),
    ]
    receipts = run(rt, st, txs).receipts
    assert len(receipts) == 5 and receipts[1].ok and not receipts[2].ok
    for rc in receipts:
        assert rc.encode() == encoding.encode(rc.to_obj())


def test_token_balances_without_the_token_contract_are_refused() -> None:
    """Balances in the token section are the token contract's state: without the contract
    they would silently not exist, so the genesis itself is invalid."""
    from pydantic import ValidationError

    from accord.base.genesis import TokenGenesis

    g = make_genesis(1)
    data = g.model_dump(mode="json")
    data["contracts"] = [c for c in data["contracts"] if c["name"] != "token"]
    data["token"] = TokenGenesis(
        authority=ALICE.address.hex(), balances={BOB.address.hex(): 5}
    ).model_dump(mode="json")
    with pytest.raises(ValidationError, match="no 'token' contract"):
        Genesis.model_validate(data)
    data["token"]["balances"] = {}
    Genesis.model_validate(data)  # an authority alone grants nothing: accepted
