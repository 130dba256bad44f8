"""Determinism by construction (issue 19, deliverable 5): a contract that could compute different
results on different validators is refused when it is registered, with file, line and construct;
code that slips past the check still cannot reach randomness, clocks or files when it runs; and a
transaction that makes validators disagree is named and, once proposals of f+1 proposers holding
it were refused, left out of proposals and evicted from the mempool."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ContractEntry, Genesis
from accord.base.types import Block, Tx
from accord.contracts import BUILTINS
from accord.contracts.determinism import (
    NondeterministicContract,
    check_contract,
    check_module_source,
    check_source,
)
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import Runtime, code_hash
from accord.ledger.application import InvalidProposal
from accord.ledger.chain import Chain
from accord.ledger.mempool import Evicted, Mempool
from accord.node.config import builtin_contract_entries
from accord.storage import Store

from .support.genesis import make_genesis
from .support.modules import load_module

ROOT = Path(__file__).resolve().parent.parent
ALICE = AccountKey.from_name("det-alice")
BOB = AccountKey.from_name("det-bob")

RANDOM_CONTRACT = """\
from __future__ import annotations

import random

from accord.contracts.base import Context, Contract, method


class Lottery(Contract):
    name = "lottery"

    @method
    def draw(self, ctx: Context) -> int:
        n = random.randrange(100)
        ctx.set("last", n)
        return n
"""

# Written as a contract that got past the check (registered with check_code=False): every
# method tries another way to reach what the check refuses.
ESCAPES = """\
from __future__ import annotations

from accord.contracts.base import Context, Contract, method


def _address(x):
    return id(x)


class Escapes(Contract):
    name = "escapes"

    @method
    def builtins_import(self, ctx: Context) -> int:
        return __builtins__["__import__"]("random").randrange(100)

    @method
    def import_time(self, ctx: Context) -> int:
        import time

        return time.time_ns()

    @method
    def getattr_open(self, ctx: Context) -> str:
        return getattr(__builtins__, "open")("/etc/hostname").read()

    @method
    def globals_lookup(self, ctx: Context) -> int:
        return globals()["__builtins__"]["hash"]("x")

    @method
    def eval_code(self, ctx: Context) -> int:
        return eval("__import__('os').getpid()")

    @method
    def helper_id(self, ctx: Context) -> int:
        return _address(ctx)

    @method
    def lambda_hash(self, ctx: Context) -> int:
        return (lambda s: hash(s))("abc")

    @method
    def allowed_import(self, ctx: Context, data: bytes) -> bytes:
        import hashlib

        return hashlib.sha256(data).digest()
"""


_load = load_module


def _genesis(name: str, cls: type, n: int = 1) -> Genesis:
    entries = [
        *builtin_contract_entries(),
        ContractEntry(name=name, code_hash=code_hash(cls).hex()),
    ]
    return make_genesis(n, balances={ALICE.address.hex(): 1_000}, contracts=entries)


# --- the check at registration -----------------------------------------------------------------


def test_a_contract_calling_random_is_refused_at_registration_naming_file_and_line(
    tmp_path: Path,
) -> None:
    mod = _load(tmp_path, "det_lottery", RANDOM_CONTRACT)
    g = _genesis("lottery", mod.Lottery)
    with pytest.raises(NondeterministicContract) as ei:
        Runtime(g, {**BUILTINS, "lottery": mod.Lottery})
    msg = str(ei.value)
    assert f"{tmp_path / 'det_lottery.py'}:3: import random" in msg
    assert "'lottery'" in msg
    # The function a governance `register` action calls refuses the same source.
    with pytest.raises(NondeterministicContract, match=r"lottery\.py:3: import random"):
        check_module_source(RANDOM_CONTRACT, "lottery.py", "lottery")


REFUSED = [
    ("import time", 1, "import time"),
    ("import os.path", 1, "import os.path"),
    ("from datetime import datetime", 1, "from datetime import datetime"),
    ("from threading import Thread", 1, "from threading import Thread"),
    ("import subprocess", 1, "import subprocess"),
    ("from . import helpers", 1, "relative import"),
    ("def f(x):\n    return id(x)", 2, "builtin id()"),
    ("def f(s):\n    return hash(s)", 2, "builtin hash()"),
    ("def f():\n    return open('x').read()", 2, "builtin open()"),
    ("def f():\n    return eval('1')", 2, "builtin eval()"),
    ("def f():\n    exec('x = 1')", 2, "builtin exec()"),
    ("def f():\n    return compile('1', 'x', 'eval')", 2, "builtin compile()"),
    ("def f():\n    return __import__('random')", 2, "builtin __import__()"),
    ("def f():\n    return globals()", 2, "builtin globals()"),
    ("def f():\n    print('hi')", 2, "builtin print()"),
    ("def f():\n    return getattr(__builtins__, 'open')", 2, "builtin getattr()"),
    ("def f():\n    return __builtins__", 2, "builtin __builtins__()"),
    ("def f():\n    return ().__class__.__base__.__subclasses__()", 2, "attribute __class__"),
    ("def f(a):\n    for x in {1, 2}:\n        a.append(x)", 2, "iteration over a set"),
    ("def f(a):\n    return [x for x in set(a)]", 2, "iteration over a set"),
    ("def f(a):\n    return [x for x in frozenset(a)]", 2, "iteration over a set"),
    ("def f():\n    return 1.5", 2, "float literal 1.5"),
    ("def f(a, b):\n    return a / b", 2, "true division"),
    ("def f(a):\n    a /= 2", 2, "true division /="),
    ("def f(a):\n    return float(a)", 2, "builtin float()"),
    ("N = 0\ndef f():\n    global N\n    N += 1", 3, "global statement"),
    ("def f(n):\n    return f(n - 1) if n else 0", 1, "recursion f -> f"),
    ("def f(n):\n    return g(n)\ndef g(n):\n    return f(n)", 1, "recursion"),
    (
        "class C:\n    def a(self):\n        return self.b()\n    def b(self):\n        return self.a()",
        2,
        "recursion",
    ),
    ("import typing\ndef f():\n    return typing.sys.modules", 3, "typing.sys (it is module sys)"),
    ("from typing import sys", 1, "from typing import sys (it is module sys)"),
    ("from accord.base import genesis\ndef f():\n    return genesis.Path('/')", 3, "genesis.Path"),
    ("from accord.contracts import Runtime", 1, "Runtime from module accord.contracts.runtime"),
    ("def f(ctx):\n    return ctx._rt.oracle", 2, "private attribute _rt"),
    ("def f(ctx):\n    ctx._writes[b'c/token/x'] = b''", 2, "private attribute _writes"),
    ("class C:\n    def bump(self):\n        self.n += 1", 3, "assignment to self.n"),
    ("class C:\n    def keep(self, v):\n        self.v = v", 3, "assignment to self.v"),
]


@pytest.mark.parametrize(("source", "line", "construct"), REFUSED)
def test_each_refused_construct_is_named_with_its_line(
    source: str, line: int, construct: str
) -> None:
    problems = check_source(source, "c.py")
    assert problems, source
    assert any(p.line == line and construct in p.construct for p in problems), [
        str(p) for p in problems
    ]
    with pytest.raises(NondeterministicContract, match=f"c.py:{line}: "):
        check_module_source(source, "c.py")


ALLOWED = [
    "from __future__ import annotations\nfrom typing import Any\nimport hashlib",
    "from accord.base import encoding\nfrom accord.contracts.base import Context, method",
    "from collections.abc import Mapping\nfrom dataclasses import dataclass",
    "def f(a):\n    return [x for x in sorted(set(a))]",
    "def f(a, b):\n    return a // b",
    "class C:\n    def __init__(self, g):\n        self.g = g\n    def get(self):\n        return self.g",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import os",
    "def f(n):\n    return g(n)\ndef g(n):\n    return n + 1",
    "import hashlib\ndef f():\n    return hashlib.sha256(b'').digest()",
    "from accord.zk import notes as zk\ndef f():\n    return zk.FIELD",
    "class C:\n    def a(self):\n        return self._b()\n    def _b(self):\n        return 1",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_deterministic_code_passes(source: str) -> None:
    assert check_source(source, "c.py") == []


CONTRACT_FILES = sorted(
    [
        *(ROOT / "contracts" / f"{n}.py" for n in ("token", "loans", "mpc_loans")),
        *(ROOT / "contracts" / f"{n}.py" for n in ("mpc_oracle", "shielded_pool")),
        ROOT / "examples" / "zk_credit_score" / "contract.py",
    ]
)


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=lambda p: p.name)
def test_every_builtin_and_example_contract_module_passes_the_whole_module_check(
    path: Path,
) -> None:
    check_module_source(path.read_text(), str(path))


def test_every_builtin_contract_class_passes_and_registers() -> None:
    for cls in BUILTINS.values():
        check_contract(cls)
    g = make_genesis(1, contracts=builtin_contract_entries())
    rt = Runtime(g)
    assert rt.contract_names == sorted(e.name for e in builtin_contract_entries())


def test_next_to_other_code_a_contract_answers_only_for_what_it_uses() -> None:
    source = textwrap.dedent(
        """\
        import time
        from accord.contracts import Contract, Runtime, method

        T0 = time.time()


        class Fine(Contract):
            name = "fine"

            @method
            def go(self, ctx):
                return 1


        class Bad(Contract):
            name = "bad"

            @method
            def go(self, ctx):
                return int(T0)
        """
    )
    assert check_source(source, "m.py", ["Fine"]) == []
    bad = [str(p) for p in check_source(source, "m.py", ["Bad"])]
    assert bad == ["m.py:1: import time (not in the contract import allow-list)"]
    whole = [str(p) for p in check_source(source, "m.py")]
    assert "m.py:2: from accord.contracts import Runtime (it is Runtime from module " in whole[1]


def test_the_check_covers_module_helpers_the_contract_calls(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """\
        from __future__ import annotations

        from accord.contracts.base import Context, Contract, method


        def _seed(x):
            return id(x)


        class UsesHelper(Contract):
            name = "uses_helper"

            @method
            def go(self, ctx: Context) -> int:
                return _seed(ctx) % 7
        """
    )
    mod = _load(tmp_path, "det_helper", source)
    with pytest.raises(NondeterministicContract, match=r"det_helper\.py:7: builtin id\(\)"):
        check_contract(mod.UsesHelper)


# --- restricted builtins at execution ----------------------------------------------------------


def _call(rt: Runtime, state: MemoryState, method: str, nonce: int, **args: object) -> tuple:
    tx = Tx.create(
        ALICE, chain_id=rt.chain_id, contract="escapes", method=method, args=args, nonce=nonce
    )
    result = rt.execute_block(state, [tx], height=1, time_ms=0)
    r = result.receipts[0]
    return r.ok, r.error_code, r.error, r.result, r.hash


def test_code_past_the_check_cannot_reach_random_time_files_or_hash(tmp_path: Path) -> None:
    mod = _load(tmp_path, "det_escapes", ESCAPES)
    with pytest.raises(NondeterministicContract) as ei:
        check_contract(mod.Escapes)
    for construct in ("builtin id()", "builtin __builtins__()", "builtin getattr()"):
        assert construct in str(ei.value)
    g = _genesis("escapes", mod.Escapes)
    contracts = {**BUILTINS, "escapes": mod.Escapes}
    # Two validators: a bypass must fail, and fail the same way on both.
    runtimes = [Runtime(g, contracts, check_code=False) for _ in range(2)]
    expected = {
        "builtins_import": "ImportError",
        "import_time": "ImportError",
        "getattr_open": "NameError",
        "globals_lookup": "NameError",
        "eval_code": "NameError",
        "helper_id": "NameError",
        "lambda_hash": "NameError",
    }
    for name, error in expected.items():
        outcomes = [_call(rt, MemoryState(rt.genesis_writes()), name, 0) for rt in runtimes]
        ok, code, message, _, receipt_hash = outcomes[0]
        assert not ok, name
        assert code == "contract_error" and message == f"escapes.{name} raised {error}", name
        assert outcomes[1][4] == receipt_hash, name
    # Allow-listed modules still import inside contract code.
    ok, _, _, result, _ = _call(
        runtimes[0], MemoryState(runtimes[0].genesis_writes()), "allowed_import", 0, data=b"x"
    )
    assert ok and isinstance(result, bytes) and len(result) == 32


# --- a transaction that makes validators disagree ----------------------------------------------

DRIFT = '''\
from __future__ import annotations

from accord.contracts.base import Context, Contract, method


class Drift(Contract):
    """Passes the check, yet is not deterministic: it counts its calls in a list it keeps."""

    name = "drift"

    def __init__(self, genesis):
        super().__init__(genesis)
        self.calls = []

    @method
    def bump(self, ctx: Context) -> int:
        self.calls.append(1)
        return len(self.calls)
'''


def _tx(key: AccountKey, g: Genesis, contract: str, method: str, nonce: int, **args: object) -> Tx:
    return Tx.create(
        key, chain_id=g.chain_id, contract=contract, method=method, args=args, nonce=nonce
    )


def test_a_disagreeing_transaction_is_named_banned_after_f_plus_1_proposers_and_evicted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mod = _load(tmp_path, "det_drift", DRIFT)
    check_contract(mod.Drift)  # the check cannot see it: this is what the later guard is for
    g = _genesis("drift", mod.Drift, n=4)
    contracts = {**BUILTINS, "drift": mod.Drift}
    proposer = Chain(g, Store(tmp_path / "a", sync=False), Runtime(g, contracts))
    validator = Chain(g, Store(tmp_path / "b", sync=False), Runtime(g, contracts))
    assert validator.ban_threshold == 2  # f + 1 of 4
    innocent = _tx(BOB, g, "token", "balance_of", 0, account=bytes(20))
    culprit = _tx(ALICE, g, "drift", "bump", 0)
    t = g.genesis_time_ms + g.consensus.round_ms

    def proposal(by: int) -> Block:
        b = proposer.build([innocent, culprit], round=1, proposer=by, time_ms=t)
        assert [x.hash for x in b.txs] == [innocent.hash, culprit.hash]
        return b

    validator.build([culprit], round=1, time_ms=t)  # the validator's drift has run once more
    first = proposal(0)
    with pytest.raises(InvalidProposal, match=r"tx root does not match") as ei:
        validator.validate(first, now_ms=t)
    assert f"transaction 1 {culprit.hash.hex()[:16]} (drift.bump)" in str(ei.value)
    (record,) = validator.refused_blocks()
    assert record.suspect == 1 and record.reason == "tx_root" and record.proposer == 0
    assert [(e.index, e.tx_hash, e.contract) for e in record.txs] == [
        (0, innocent.hash, "token"),
        (1, culprit.hash, "drift"),
    ]
    assert all(e.receipt_hash is not None for e in record.txs)
    counts = validator.mismatch_counts()
    assert counts["tx_root"] == 1 and counts["contract:drift"] == 1
    assert culprit.hash.hex()[:16] in caplog.text and "drift.bump" in caplog.text
    # The same proposer again (a Byzantine one could do this for ever): no ban.
    with pytest.raises(InvalidProposal):
        validator.validate(proposal(0), now_ms=t)
    assert not validator.banned(culprit.hash) and validator.take_banned() == []
    # A second proposer: f + 1 distinct proposers, at least one honest.
    with pytest.raises(InvalidProposal):
        validator.validate(proposal(1), now_ms=t)
    assert validator.banned(culprit.hash) and not validator.banned(innocent.hash)
    banned = validator.take_banned()
    assert banned == [(culprit.hash, "drift.bump")] and validator.take_banned() == []
    # The chain is not stuck: this node's proposals leave the transaction out.
    own = validator.build([innocent, culprit], round=2, proposer=2, time_ms=t)
    assert [x.hash for x in own.txs] == [innocent.hash]
    # The mempool evicts it (with its sender's later nonces), counts it, refuses it again.
    pool = Mempool(g.chain_id, validator.nonce_of)
    later = _tx(ALICE, g, "token", "balance_of", 1, account=bytes(20))
    for tx in (innocent, culprit, later):
        pool.add(tx)
    assert pool.evict(banned) == 2
    assert len(pool) == 1 and innocent.hash in pool
    assert pool.evicted == {"disagreement": 2}
    with pytest.raises(Evicted, match="drift.bump"):
        pool.add(culprit)
    assert pool.rejected == {"evicted": 1}


def test_a_commit_of_a_certified_block_names_but_never_strikes(tmp_path: Path) -> None:
    mod = _load(tmp_path, "det_drift2", DRIFT.replace('"drift"', '"drift2"'))
    g = _genesis("drift2", mod.Drift, n=4)
    contracts = {**BUILTINS, "drift2": mod.Drift}
    proposer = Chain(g, Store(tmp_path / "a", sync=False), Runtime(g, contracts))
    validator = Chain(g, Store(tmp_path / "b", sync=False), Runtime(g, contracts))
    culprit = _tx(ALICE, g, "drift2", "bump", 0)
    t = g.genesis_time_ms + g.consensus.round_ms
    validator.build([culprit], round=9, time_ms=t)  # not the block below: nothing cached
    for by in (0, 1, 2):
        block = proposer.build([culprit], round=1, proposer=by, time_ms=t)
        with pytest.raises(InvalidProposal):
            validator.commit(block, None)
    assert len(validator.refused_blocks()) == 3
    assert not validator.banned(culprit.hash)


def test_the_chain_worker_evicts_what_the_chain_banned(tmp_path: Path) -> None:
    """The node's side: proposals refused by the chain worker for a disagreement, from f + 1
    proposers, get the culprit evicted from the worker's mempool (not only left out of
    blocks), so it stops taking a slot and is refused if sent again."""
    import asyncio
    import dataclasses

    from accord.base.metrics import Registry
    from accord.consensus import BlockValidated, Status
    from accord.node.worker import ChainWorker

    mod = _load(tmp_path, "det_drift_worker", DRIFT)
    g = _genesis("drift", mod.Drift, n=4)
    contracts = {**BUILTINS, "drift": mod.Drift}
    proposer = Chain(g, Store(tmp_path / "a", sync=False), Runtime(g, contracts))
    validator = Chain(g, Store(tmp_path / "b", sync=False), Runtime(g, contracts))
    culprit = _tx(ALICE, g, "drift", "bump", 0)
    t = g.genesis_time_ms + g.consensus.round_ms
    validator.build([culprit], round=1, proposer=3, time_ms=t)  # its drift ran once more
    blocks: list[Block] = []
    fields = {f.name: None for f in dataclasses.fields(Status)}
    status = Status(**{**fields, "height": 1, "round": 1, "stats": {}})
    got: list[object] = []

    async def main() -> None:
        pool = Mempool(g.chain_id, validator.nonce_of)
        pool.add(culprit)
        worker = ChainWorker(
            "v",
            g.consensus,
            Registry(),
            status=lambda: status,
            deliver=got.append,
            now_ms=lambda: t,
            known_good=lambda h: False,
            note_verified=lambda hs: None,
            remember=lambda b: None,
        )
        worker.open(validator, pool, asyncio.get_running_loop())
        for p in (0, 1):  # as in the test above: each proposal built just before it is judged
            blocks.append(proposer.build([culprit], round=1, proposer=p, time_ms=t))
            worker.validate(blocks[-1])
            for _ in range(500):
                await asyncio.sleep(0.01)
                if len(got) == p + 1:
                    break
        await worker.close()
        assert got == [BlockValidated(b.hash, False) for b in blocks]
        assert culprit.hash not in pool and pool.evicted == {"disagreement": 1}
        with pytest.raises(Evicted):
            pool.add(culprit)

    asyncio.run(main())
