"""accord.testing used the way a contract author would: register a contract, call it as
signed transactions, read receipts and state; and hostile contracts refused at registration
or stopped by gas, on the real chain and runtime."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.base.errors import ValidationError
from accord.base.genesis import Genesis
from accord.contracts import Context, Contract, method
from accord.contracts.determinism import NondeterministicContract
from accord.contracts.installed import load_class
from accord.testing import Disagreement, NotIncluded, Sandbox, check, check_source


class Counter(Contract):
    """Per-account counters with a shared total; events and a revert path."""

    name = "counter"

    @method
    def bump(self, ctx: Context, by: int) -> int:
        ctx.require(0 < by <= 100, "by must be between 1 and 100")
        mine = int(ctx.get(ctx.sender, 0)) + by
        ctx.set(ctx.sender, mine)
        ctx.set("total", int(ctx.get("total", 0)) + by)
        ctx.emit("Bumped", who=ctx.sender, by=by, at=ctx.time_ms)
        return mine

    @method
    def fill(self, ctx: Context, n: int) -> None:
        """Writes ``n`` keys: what a loop over state costs in gas."""
        for i in range(n):
            ctx.set(f"k/{i}", i)

    @method
    def spin(self, ctx: Context) -> None:
        """A loop with no exit that touches state: only gas stops it."""
        i = 0
        while True:
            ctx.set("spin", i)
            i += 1

    @method(readonly=True)
    def of(self, ctx: Context, who: bytes) -> int:
        return int(ctx.get(who, 0))


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox([Counter], accounts={"alice": 1_000, "bob": 0}) as s:
        yield s


def test_calls_are_signed_transactions_with_receipts_state_and_events(sb: Sandbox) -> None:
    r = sb.call("alice", "counter", "bump", by=3)
    assert r.ok and r.result == 3 and r.gas_used > 0
    (ev,) = sb.events(r, "Bumped")
    assert ev.contract == "counter" and ev.data == {"who": sb.address("alice"), "by": 3, "at": 1000}
    assert sb.query("counter", "of", who=sb.address("alice")) == 3
    assert sb.state("counter", "total") == 3
    assert sb.state("counter", sb.address("alice")) == 3
    assert sb.height == 1 and sb.time_ms == 1000
    assert sb.chain.nonce_of(sb.address("alice")) == 1

    # A revert is a failed receipt: nothing it wrote stays, the nonce is still consumed.
    bad = sb.call("alice", "counter", "bump", by=500)
    assert not bad.ok and bad.error_code == "revert" and "between 1 and 100" in bad.error
    assert bad.events == () and sb.state("counter", "total") == 3
    assert sb.chain.nonce_of(sb.address("alice")) == 2

    # Wrong argument types and unknown methods fail as receipts too, with clear errors.
    r = sb.call("bob", "counter", "bump", by="3")
    assert not r.ok and "must be int" in r.error
    r = sb.call("bob", "counter", "nope")
    assert not r.ok and "no callable method 'nope'" in r.error


def test_several_transactions_per_block_and_time(sb: Sandbox) -> None:
    a = sb.submit("alice", "counter", "bump", by=1)
    b = sb.submit("bob", "counter", "bump", by=2)
    c = sb.submit("alice", "counter", "bump", by=4)
    receipts = sb.advance(time_ms=50_000)
    assert [r.tx_hash for r in receipts] == [a.hash, b.hash, c.hash]
    assert sb.receipt(c).result == 5 and sb.height == 1
    assert sb.events(receipts[0])[0].data["at"] == 50_000
    sb.advance(3)
    assert sb.height == 4 and sb.time_ms == 53_000
    assert sb.state("counter", "total") == 7


def test_token_balances_and_builtins(sb: Sandbox) -> None:
    assert sb.balance("alice") == 1_000 and sb.balance("bob") == 0
    r = sb.call("alice", "token", "transfer", to=sb.address("bob"), amount=250)
    assert r.ok and sb.balance("bob") == 250 and sb.balance("alice") == 750
    r = sb.call("bob", "token", "transfer", to=sb.address("alice"), amount=10**6)
    assert not r.ok and "insufficient balance" in r.error
    r = sb.call("authority", "token", "mint", to=sb.address("carol"), amount=5)
    assert r.ok and sb.balance("carol") == 5


def test_gas_is_metered_and_running_out_changes_nothing(sb: Sandbox) -> None:
    small = sb.call("alice", "counter", "fill", n=1)
    large = sb.call("alice", "counter", "fill", n=20)
    assert small.ok and large.ok and large.gas_used > small.gas_used
    r = sb.call("alice", "counter", "fill", n=10_000, gas_limit=200_000)
    assert not r.ok and r.error_code == "out_of_gas" and r.gas_used == 200_000
    assert sb.state("counter", "k/9999") is None  # the failed call wrote nothing

    # An infinite loop over state is stopped by gas, the same way on every validator.
    r = sb.call("bob", "counter", "spin", gas_limit=300_000)
    assert not r.ok and r.error_code == "out_of_gas" and r.gas_used == 300_000
    assert sb.state("counter", "spin") is None


def test_four_validators_execute_and_certify_every_block() -> None:
    with Sandbox([Counter], validators=4) as sb:
        for i in range(5):
            assert sb.call("alice", "counter", "bump", by=i + 1).ok
        heads = sb.heads()
        assert len(set(heads)) == 1 and heads[0][0] == 5
        for h in range(1, 6):
            block, cert = sb.chain.block_and_certificate(h)
            assert cert is not None and cert.block_hash == block.hash
            assert block.header.proposer == h % 4  # every validator proposed in turn


# --- hostile contracts ---------------------------------------------------------------------

HOSTILE = {
    "random": (
        "import random\n",
        "return random.randrange(100)",
        "import random",
    ),
    "clock": ("import time\n", "return int(time.time())", "import time"),
    "hash": ("", "return hash(ctx.sender.hex()) & 1", "hash"),
    "set_order": ("", "return [x for x in {'a', 'b', 'c'}]", "set"),
    "float": ("", "return 1 / 3", "/"),
}


def _module(tmp_path: Path, name: str, imports: str, body: str) -> Path:
    source = textwrap.dedent(
        f"""\
        from __future__ import annotations
        {imports}
        from accord.contracts.base import Context, Contract, method


        class Hostile(Contract):
            name = "hostile"

            @method
            def go(self, ctx: Context) -> object:
                {body}
        """
    )
    path = tmp_path / f"hostile_{name}.py"
    path.write_text(source)
    return path


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_nondeterministic_contract_is_refused_at_registration(on_path: Path, kind: str) -> None:
    imports, body, construct = HOSTILE[kind]
    path = _module(on_path, f"{kind}_{on_path.name[-8:]}".replace("-", "_"), imports, body)
    cls = load_class(f"{path.stem}:Hostile")
    with pytest.raises(NondeterministicContract) as refused:
        check(cls)
    assert path.name in refused.value.message and construct in refused.value.message
    with pytest.raises(NondeterministicContract):
        Sandbox([cls])  # genesis registration refuses it before it runs anywhere
    with pytest.raises(NondeterministicContract):
        check_source(path.read_text(), str(path))
    # nor can it be offered as installed code for a later vote
    with pytest.raises(NondeterministicContract):
        Sandbox([], installed=[cls])


class Memo(Contract):
    """Keeps memory between calls through a method of a reference (``self.seen.update``), which the
    static check does not recognise (docs/determinism.md, limits): a query on one validator
    changes what its next transaction computes."""

    name = "memo"

    def __init__(self, genesis: Genesis) -> None:
        super().__init__(genesis)
        self.seen: dict[str, int] = {}

    @method(readonly=True)
    def peek(self, ctx: Context) -> int:
        self.seen.update(n=self.seen.get("n", 0) + 1)
        return self.seen["n"]

    @method
    def go(self, ctx: Context) -> int:
        n = self.seen.get("n", 0)
        ctx.set("n", n)
        return n


def test_validators_that_compute_differently_are_reported_and_nothing_is_committed() -> None:
    with Sandbox([Memo], validators=4) as sb:
        assert sb.call("alice", "memo", "go").ok  # every validator agrees so far
        before = sb.heads()
        assert sb.query("memo", "peek") == 1  # runs on validator-0 only
        with pytest.raises(Disagreement, match=r"validator-0 refuses block 2 built by validator-2"):
            sb.call("alice", "memo", "go")
        assert sb.heads() == before  # no validator committed it
    # One validator alone cannot show it: the harness's n-validator mode is what catches it.
    with Sandbox([Memo], validators=1) as solo:
        solo.query("memo", "peek")
        assert solo.call("alice", "memo", "go").result == 1


def test_bad_input_to_the_harness_is_a_clear_error(sb: Sandbox) -> None:
    with pytest.raises(ValidationError, match="above the block's"):
        sb.submit("alice", "counter", "bump", by=1, gas_limit=10**12)
    stale = sb.sign("alice", "counter", "bump", by=1, nonce=7)
    sb.submit_tx(stale)
    with pytest.raises(NotIncluded, match="nonce 7"):
        sb.advance()
    assert sb.height == 0
    assert sb.call("alice", "counter", "bump", by=1).ok  # nonces recover from the chain
    with pytest.raises(ValidationError, match="not a contract class"):
        Sandbox([int])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="two contracts are named 'counter'"):
        Sandbox([Counter, Counter])
    with pytest.raises(ValidationError, match="no built-in contract"):
        Sandbox([], builtins=["nope"])


RELEASE = '''"""Release {version} of a contract, installed like a package on each validator."""

from __future__ import annotations

from accord.contracts.base import Context, Contract, method


class Tally(Contract):
    name = "tally"

    @method
    def add(self, ctx: Context, n: int) -> int:
        total = int(ctx.get("total", 0)) + n * {factor}
        ctx.set("total", total)
        ctx.emit("Added", n=n, version={version})
        return total
'''


def _release(root: Path, version: int, factor: int) -> type[Contract]:
    module = f"tally_v{version}_{root.name[-8:]}".replace("-", "_")
    (root / f"{module}.py").write_text(RELEASE.format(version=version, factor=factor))
    return load_class(f"{module}:Tally")


def test_upgrade_and_deploy_by_governance(on_path: Path) -> None:
    v1, v2 = _release(on_path, 1, 1), _release(on_path, 2, 10)
    with Sandbox([v1], installed=[v2, Counter], builtins=["governance"], validators=4) as sb:
        assert sb.call("alice", "tally", "add", n=2).result == 2
        at = sb.upgrade(v2)  # member 0 proposes, two more approve (threshold 3 of 4)
        assert sb.height == at
        r = sb.call("alice", "tally", "add", n=2)
        assert r.result == 22 and sb.events(r)[0].data["version"] == 2  # v2 on v1's state

        r = sb.call("alice", "counter", "bump", by=1)
        assert not r.ok and "no contract 'counter'" in r.error  # installed, not deployed
        sb.deploy(Counter)
        assert sb.call("alice", "counter", "bump", by=1).result == 1
        sb.retire("counter")
        assert "retired" in sb.call("alice", "counter", "bump", by=1).error
        assert len(set(sb.heads())) == 1

        # A non-member cannot push a change through the harness either.
        r = sb.call(
            "alice",
            "governance",
            "propose",
            action={"kind": "retire_contract", "name": "tally"},
            activation=None,
        )
        assert not r.ok and "only members may propose" in r.error
        with pytest.raises(
            ValidationError, match="proposal refused: contract tally runs that code already"
        ):
            sb.upgrade(v2)  # already running v2


def test_two_releases_in_one_file_are_refused_by_name() -> None:
    class CounterV2(Counter):
        pass

    with pytest.raises(ValidationError, match="same code hash.*its own module"):
        Sandbox([Counter], installed=[CounterV2])
