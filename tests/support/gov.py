"""A governed chain for tests: members with account keys, the real runtime and store, one
block per call (no consensus: these tests are about what the ledger decides)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.encoding import Value
from accord.base.genesis import Genesis, GovernanceParams, ValidatorInfo
from accord.base.types import Receipt, Tx
from accord.contracts.runtime import Runtime
from accord.ledger.chain import Chain
from accord.node.config import builtin_contract_entries
from accord.storage import Store


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` every 0.1 s until it holds; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def stranger_txs(chain_id: str, count: int, tag: str) -> list[Tx]:
    """``count`` transactions of as many fresh senders, each calling governance as a
    non-member (the call fails; the transaction is still included and fills a block)."""
    return [
        Tx.create(
            AccountKey.from_name(f"{tag}-{i}"),
            chain_id=chain_id,
            contract="governance",
            method="approve",
            args={"proposal": bytes(32)},
            nonce=0,
            gas_limit=1_000_000,
        )
        for i in range(count)
    ]


def member_key(i: int) -> AccountKey:
    return AccountKey.from_name(f"member-v{i}")


def validator_info(name: str, account: AccountKey | None) -> ValidatorInfo:
    sk = bls.demo_secret(name)
    return ValidatorInfo(
        name=name,
        bls_public_key=bls.public_key(sk).hex(),
        pop=bls.pop_prove(sk).hex(),
        account=None if account is None else account.address.hex(),
    )


def governed_genesis(
    n: int = 4, *, governance: GovernanceParams | None = None, **consensus: Any
) -> Genesis:
    return Genesis.model_validate(
        {
            "chain_id": "accord-gov-test",
            "genesis_time_ms": 0,
            "validators": [
                validator_info(f"v{i}", member_key(i)).model_dump(mode="json") for i in range(n)
            ],
            "consensus": consensus,
            "contracts": [e.model_dump() for e in builtin_contract_entries()],
            **({} if governance is None else {"governance": governance.model_dump()}),
        }
    )


def next_tx(
    nonces: dict[bytes, int],
    key: AccountKey,
    chain_id: str,
    contract: str,
    method: str,
    args: dict[str, Value],
) -> Tx:
    """A transaction signed by ``key`` with its next nonce (``nonces`` tracks them)."""
    nonce = nonces.get(key.address, 0)
    nonces[key.address] = nonce + 1
    return Tx.create(
        key,
        chain_id=chain_id,
        contract=contract,
        method=method,
        args=args,
        nonce=nonce,
        gas_limit=5_000_000,
    )


class GovChain:
    """A chain on a real store; ``call`` commits one block holding one transaction."""

    def __init__(self, tmp: Path, genesis: Genesis, runtime: Runtime | None = None) -> None:
        self.genesis = genesis
        self.runtime = runtime or Runtime(genesis)
        self.chain = Chain(genesis, Store(tmp / "db", sync=False), self.runtime)
        self.nonces: dict[bytes, int] = {}

    @property
    def height(self) -> int:
        return self.chain.head()[0]

    def tx(self, key: AccountKey, contract: str, method: str, **args: Value) -> Tx:
        return next_tx(self.nonces, key, self.genesis.chain_id, contract, method, args)

    def block(self, *txs: Tx) -> list[Receipt]:
        height = self.height
        b = self.chain.build(list(txs), time_ms=(height + 1) * 1000)
        assert len(b.txs) == len(txs), "a transaction was left out of the block"
        return self.chain.commit(b, None)

    def call(self, key: AccountKey, method: str, **args: Value) -> Receipt:
        return self.block(self.tx(key, "governance", method, **args))[0]

    def empty(self, n: int = 1) -> None:
        for _ in range(n):
            self.block()

    def propose(
        self, key: AccountKey, action: dict[str, Value], activation: int | None = None
    ) -> Receipt:
        return self.call(key, "propose", action=action, activation=activation)

    def query(self, method: str, **args: Value) -> Any:
        return self.chain.query("governance", method, args)

    def pass_action(self, action: dict[str, Value], activation: int | None = None) -> int:
        """Propose ``action`` as member 0, approve it as members 1 and 2 (enough of four);
        returns the height it takes effect at."""
        r = self.propose(member_key(0), action, activation)
        assert r.ok, r.error
        for i in (1, 2):
            last = self.call(member_key(i), "approve", proposal=r.result)
        assert last.result == "passed", last.error
        return int(self.query("proposal", proposal=r.result)["effective"])


ESCROW_INIT = '"""A contract package made by a test: installed on a node like a release."""\n'

ESCROW_RULES = '''"""The escrow's rules: a helper module of its package (covered by its code hash)."""

VERSION = {version}
FEE = {fee}
'''

ESCROW_MAIN = '''"""An escrow contract that a test deploys, upgrades and retires by vote."""

from __future__ import annotations

from accord.contracts.base import Context, Contract, method
from {package} import rules


class Escrow(Contract):
    name = "escrow"

    @method
    def deposit(self, ctx: Context, amount: int) -> int:
        ctx.require(amount > rules.FEE, "amount must exceed the fee")
        total = int(ctx.get(ctx.sender, 0)) + amount - rules.FEE
        ctx.set(ctx.sender, total)
        ctx.emit("Deposit", who=ctx.sender, amount=amount, version=rules.VERSION)
        return total

    @method(readonly=True)
    def version(self, ctx: Context) -> int:
        return rules.VERSION

    @method(readonly=True)
    def held(self, ctx: Context, who: bytes) -> int:
        return int(ctx.get(who, 0))
'''


def make_escrow_package(root: Path, package: str, *, version: int, fee: int = 0) -> str:
    """Write an importable contract package under ``root`` (put on sys.path by the caller);
    return the ``module:Class`` spec of its contract."""
    d = root / package
    d.mkdir(parents=True, exist_ok=True)
    (d / "__init__.py").write_text(ESCROW_INIT)
    (d / "rules.py").write_text(ESCROW_RULES.format(version=version, fee=fee))
    (d / "escrow.py").write_text(ESCROW_MAIN.format(package=package))
    return f"{package}.escrow:Escrow"


class NetworkGov:
    """Governance transactions sent to a running in-process network (tests.support.inproc),
    one member per validator folder, each waited for until it commits."""

    def __init__(self, net: Any, members: int) -> None:
        from accord.client import Client

        self.net = net
        self.keys = [
            AccountKey.load(net.root / f"validator-{i}" / "account.json") for i in range(members)
        ]
        self.clients = [Client(u) for u in net.urls]
        self.nonces = [0] * members

    def send(self, i: int, method: str, **args: Any) -> Receipt:
        import time

        tx = Tx.create(
            self.keys[i],
            chain_id=self.net.genesis.chain_id,
            contract="governance",
            method=method,
            args=args,
            nonce=self.nonces[i],
            gas_limit=5_000_000,
        )
        self.nonces[i] += 1
        h = self.clients[i].submit(tx)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = self.clients[i].tx(h, proof=False)
            if st.committed and st.receipt is not None:
                return st.receipt
            time.sleep(0.1)
        raise AssertionError(f"{method} did not commit")

    def vote(self, action: dict[str, Any], voters: list[int], activation: int | None = None) -> int:
        """Propose with the first voter, approve with the rest; the height it takes effect."""
        r = self.send(voters[0], "propose", action=action, activation=activation)
        assert r.ok, r.error
        last = r
        for i in voters[1:]:
            last = self.send(i, "approve", proposal=r.result)
        assert last.result == "passed", last.error
        doc = self.clients[voters[0]].query("governance", "proposal", proposal=r.result)
        return int(doc["effective"])


def add_validator_action(folder: Path) -> dict[str, Any]:
    """The ``add_validator`` action for the member set up apart in ``folder`` (from the
    public card its ``keys new --validator`` wrote: member.json)."""
    from accord.base.members import MemberCard

    card = MemberCard.model_validate_json((folder / "member.json").read_text())
    return {
        "kind": "add_validator",
        "name": card.name,
        "bls_public_key": bytes.fromhex(card.bls_public_key),
        "pop": bytes.fromhex(card.pop),
        "account": bytes.fromhex(card.account),
    }


def new_validator_folder(
    root: Path, name: str, port: int, api_port: int, *, with_key: bool = False
) -> Path:
    """A member that was not in genesis sets up apart (keys new --validator), and every other
    validator's node.json learns where it listens (peers, new_validators) and, ``with_key``,
    its BLS key (new_validator_keys: accepted for catch-up before a set names it)."""
    from accord.base.members import MemberCard, new_member
    from accord.net.tls import make_self_signed
    from accord.node.config import P2P_TLS, NodeConfig

    folder = root / name
    folder.mkdir()
    new_member(folder, name)
    peers = {}
    for other in sorted(root.glob("validator-*")):
        if other == folder:
            continue
        cfg = NodeConfig.load(other)
        peers[cfg.name] = f"{cfg.host}:{cfg.port}"
        cfg.peers[name] = f"127.0.0.1:{port}"
        cfg.new_validators.append(name)
        if with_key:
            card = MemberCard.model_validate_json((folder / "member.json").read_text())
            cfg.new_validator_keys[name] = card.bls_public_key
        cfg.save(other)
    make_self_signed(folder / P2P_TLS.cert, folder / P2P_TLS.key, name=name)
    NodeConfig(
        name=name,
        genesis="../genesis.json",
        port=port,
        api_port=api_port,
        peers=peers,
        p2p_tls=P2P_TLS,
    ).save(folder)
    return folder
