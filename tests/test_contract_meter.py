"""Gas for computation (accord.contracts.meter): a contract that loops without touching state
must run out of gas, on every validator at the same point, instead of running for ever.

Before the meter, gas bounded state access only: each hostile method below ran until the
test's timeout on the first validator that executed it (the chain would have stopped for
good). Each test is given a timeout so that, on code without the meter, it fails instead of
hanging the suite."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.contracts import meter
from accord.contracts.determinism import check_source
from accord.testing import Sandbox

from .support.modules import load_module

HOSTILE = textwrap.dedent(
    """\
    from __future__ import annotations

    from accord.contracts.base import Context, Contract, method


    def _spin(n: int) -> int:
        total = 0
        for i in range(n):
            total += i
        return total


    class Hostile(Contract):
        name = "hostile"

        @method
        def forever(self, ctx: Context) -> None:
            while True:
                pass

        @method
        def comprehension(self, ctx: Context) -> int:
            return len([i for i in range(10**12)])

        @method
        def generator(self, ctx: Context) -> int:
            return sum(i for i in range(10**12))

        @method
        def helper(self, ctx: Context) -> int:
            return _spin(10**12)

        @method
        def swallow(self, ctx: Context) -> None:
            # Catching the meter's OutOfGas and carrying on must not help.
            while True:
                try:
                    for _ in range(10**12):
                        pass
                except Exception:
                    pass

        @method
        def nested(self, ctx: Context) -> int:
            def inner(k: int) -> int:
                return sum([j for j in range(k)])

            return inner(10**12)

        @method
        def count(self, ctx: Context, n: int) -> int:
            total = 0
            for i in range(n):
                total += i
            ctx.set("total", total)
            return total

        @method
        def down(self, ctx: Context, n: int) -> int:
            def level(k: int) -> int:
                return 0 if k == 0 else 1 + level(k - 1)

            return level(n)

        @method
        def lambda_down(self, ctx: Context, n: int) -> int:
            f = lambda g, k: 0 if k == 0 else 1 + g(g, k - 1)  # noqa: E731
            return f(f, n)

        @method
        def generator_down(self, ctx: Context, n: int) -> int:
            def level(k: int):
                yield 0 if k == 0 else 1 + next(level(k - 1))

            return next(level(n))

        @method(readonly=True)
        def stuck(self, ctx: Context) -> int:
            n = 0
            while True:
                n += 1
    """
)

LIMIT = 200_000


_load = load_module


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    mod = _load(tmp_path, "meter_hostile", HOSTILE)
    sb = Sandbox([mod.Hostile], validators=2)
    yield sb
    sb.close()
    sys.modules.pop("meter_hostile", None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "method", ["forever", "comprehension", "generator", "helper", "swallow", "nested"]
)
def test_a_loop_that_never_touches_state_runs_out_of_gas(sandbox: Sandbox, method: str) -> None:
    r = sandbox.call("alice", "hostile", method, gas_limit=LIMIT)
    assert not r.ok and r.error_code == "out_of_gas", (r.error_code, r.error)
    assert r.gas_used == LIMIT
    # Both validators executed it the same way (the sandbox certifies only equal results),
    # and the chain goes on: the next transaction commits.
    after = sandbox.call("alice", "hostile", "count", n=3)
    assert after.ok and after.result == 3
    heads = sandbox.heads()
    assert len(set(heads)) == 1


@pytest.mark.timeout(120)
def test_a_readonly_query_that_loops_ends_with_an_error(sandbox: Sandbox) -> None:
    from accord.base.errors import OutOfGas

    with pytest.raises(OutOfGas):
        sandbox.query("hostile", "stuck")


@settings(max_examples=20, deadline=None)
@given(a=st.integers(0, 127), b=st.integers(0, 127))  # n encodes in one byte: same tx size
def test_gas_grows_by_one_step_per_iteration(
    tmp_path_factory: pytest.TempPathFactory, a: int, b: int
) -> None:
    # Determinism in numbers: the gas of a loop is a function of its iteration count only.
    tmp = tmp_path_factory.mktemp("meter")
    mod = _load(tmp, "meter_count", HOSTILE)
    try:
        with Sandbox([mod.Hostile]) as sb:
            ra = sb.call("alice", "hostile", "count", n=a)
            rb = sb.call("alice", "hostile", "count", n=b)
    finally:
        sys.modules.pop("meter_count", None)
    assert ra.ok and rb.ok

    # The state write's size differs with the total's encoding; take it out.
    def write_gas(total: int) -> int:
        from accord.base import encoding
        from accord.contracts.base import GAS

        return GAS.write_byte * len(encoding.encode(total))

    da = ra.gas_used - write_gas(ra.result)
    db = rb.gas_used - write_gas(rb.result)
    assert da - db == (a - b) * meter.STEP_GAS


def test_contract_code_cannot_name_the_meter() -> None:
    source = textwrap.dedent(
        """\
        from accord.contracts.base import Context, Contract, method


        class Dodge(Contract):
            name = "dodge"

            @method
            def free(self, ctx: Context) -> None:
                __accord_step__ = None
        """
    )
    problems = check_source(source, "dodge.py")
    assert any("reserved for the gas meter" in str(p) for p in problems), problems


def test_steps_are_free_outside_a_transaction() -> None:
    # A contract's __init__ and a test calling a helper run without a context: no charge.
    assert meter.CURRENT.get() is None
    meter.step()
    assert list(meter.steps(range(3))) == [0, 1, 2]


@pytest.mark.timeout(120)
def test_a_loop_in_a_helper_module_of_the_contracts_package_is_metered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The helper is imported from another module of the contract's own package: it runs
    # restricted and metered like the contract's module (before, it ran free).
    pkg = tmp_path / "meterpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def spin() -> None:\n    while True:\n        pass\n")
    (pkg / "contract.py").write_text(
        textwrap.dedent(
            """\
            from accord.contracts.base import Context, Contract, method

            from meterpkg.helpers import spin


            class Spinner(Contract):
                name = "spinner"

                @method
                def go(self, ctx: Context) -> None:
                    spin()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("meterpkg.contract")
    try:
        with Sandbox([mod.Spinner]) as sb:
            r = sb.call("alice", "spinner", "go", gas_limit=LIMIT)
            assert not r.ok and r.error_code == "out_of_gas"
    finally:
        for name in ("meterpkg", "meterpkg.helpers", "meterpkg.contract"):
            sys.modules.pop(name, None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["down", "lambda_down", "generator_down"])
def test_recursion_ends_at_the_same_call_on_every_validator(sandbox: Sandbox, method: str) -> None:
    # Python's recursion limit counts the node's own frames, so a recursion it stops ends at
    # a point that depends on the caller's stack: the meter stops contract code at
    # MAX_DEPTH levels of its own instead, whatever the stack below (a method is one level).
    ok = sandbox.call("alice", "hostile", method, n=meter.MAX_DEPTH - 2)
    assert ok.ok and ok.result == meter.MAX_DEPTH - 2, (ok.error_code, ok.error)
    deep = sandbox.call("alice", "hostile", method, n=10**6)
    assert not deep.ok and deep.error_code == "revert"
    assert f"nested deeper than {meter.MAX_DEPTH} calls" in deep.error
    chain = sandbox.chain
    tx = sandbox.sign("alice", "hostile", method, n=10**6)

    def run() -> bytes:
        with chain.store.snapshot() as snap:
            result = chain.runtime.execute_block(snap, [tx], height=sandbox.height + 1, time_ms=1)
        return result.receipts[0].encode()

    def at_depth(frames: int) -> bytes:
        return run() if frames == 0 else at_depth(frames - 1)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default: what a node runs with
    try:
        assert run() == at_depth(400)
    finally:
        sys.setrecursionlimit(old)


def test_two_module_functions_on_one_line_keep_their_own_code(tmp_path: Path) -> None:
    # The meter finds a function's rewritten code by name and first line: two lambdas on one
    # line share both, and one must never run the other's code.
    source = textwrap.dedent(
        """\
        from accord.contracts.base import Context, Contract, method

        ONE, TWO = (lambda: 1), (lambda: 2)


        class Pair(Contract):
            name = "pair"

            @method
            def both(self, ctx: Context) -> list:
                return [ONE(), TWO()]
        """
    )
    mod = load_module(tmp_path, "meter_pair", source)
    try:
        with Sandbox([mod.Pair]) as sb:
            r = sb.call("alice", "pair", "both")
            assert r.ok and r.result == [1, 2], (r.error_code, r.error)
    finally:
        sys.modules.pop("meter_pair", None)
