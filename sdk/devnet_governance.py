"""``accord devnet --demo-governance``: a consortium that changes while it runs.

While the devnet's load runs, the members, by on-chain votes:

1. deploy a contract (``board``, a notice board whose code every node has installed from
   node.json ``contracts``), and post to it;
2. add a fifth validator, a member that made its keys in a folder of its own and whose node
   has been following by certificates; it then signs certificates;
3. upgrade the contract to its second release (same state, one more method);
4. remove a validator of genesis, which goes on following.

Then every validator, the newcomer and the removed one included, must report the same head.
Each step is a real governance proposal approved by the members' account keys and waited
for until it is in force (see docs/governance.md); nothing is configured behind the chain's
back but what a Fabric peer would also install: the contract's code and peers' addresses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError
from accord.base.genesis import Genesis
from accord.base.members import CARD_FILE, MemberCard, new_member
from accord.base.types import Receipt, Tx
from accord.client import Client
from accord.contracts.runtime import code_hash
from accord.devnet import Devnet, Validator, free_ports
from accord.node.config import P2P_TLS, InstalledContract, NodeConfig

NEWCOMER = "validator-new"
CODE_DIR = "contracts"

BOARD = '''"""A notice board: members post short notes (release {version})."""

from accord.contracts.base import Context, Contract, method

VERSION = {version}


class Board(Contract):
    name = "board"

    @method
    def post(self, ctx: Context, note: str) -> int:
        ctx.require(0 < len(note) <= 140, "a note is 1 to 140 characters")
        n = int(ctx.get("n", 0))
        ctx.set(f"note/{{n}}", {{"by": ctx.sender, "note": note}})
        ctx.set("n", n + 1)
        ctx.emit("Posted", id=n, by=ctx.sender)
        return n

    @method(readonly=True)
    def version(self, ctx: Context) -> int:
        return VERSION

    @method(readonly=True)
    def count(self, ctx: Context) -> int:
        return int(ctx.get("n", 0))
{extra}'''

BOARD_V2_EXTRA = '''
    @method
    def clear(self, ctx: Context, number: int) -> None:
        """New in release 2: the author takes a note down."""
        note = ctx.get(f"note/{number}")
        ctx.require(note is not None, "no such note")
        ctx.require(note["by"] == ctx.sender, "only its author may take a note down")
        ctx.delete(f"note/{number}")
        ctx.emit("Cleared", id=number)
'''


def prepare(root: Path, genesis: Genesis) -> Path:
    """Before the validators start: the board's two releases installed on every node, and the
    newcomer's folder (keys made there; its address in the others' node.json). Idempotent."""
    code = root / CODE_DIR
    code.mkdir(exist_ok=True)
    (code / "board_v1.py").write_text(BOARD.format(version=1, extra=""))
    (code / "board_v2.py").write_text(BOARD.format(version=2, extra=BOARD_V2_EXTRA))
    specs = [
        InstalledContract(module="board_v1:Board", path=str(code)),
        InstalledContract(module="board_v2:Board", path=str(code)),
    ]
    folder = root / NEWCOMER
    fresh = not (folder / "node.json").exists()
    if fresh:
        folder.mkdir(exist_ok=True)
        if not (folder / CARD_FILE).exists():
            new_member(folder, NEWCOMER)
        port, api_port = free_ports(2)
    else:
        mine = NodeConfig.load(folder)
        port, api_port = mine.port, mine.api_port
    peers: dict[str, str] = {}
    for v in genesis.validators:
        cfg = NodeConfig.load(root / v.name)
        peers[v.name] = f"{cfg.host}:{cfg.port}"
        cfg.peers[NEWCOMER] = f"127.0.0.1:{port}"
        if NEWCOMER not in cfg.new_validators:
            cfg.new_validators.append(NEWCOMER)
        cfg.contracts = specs
        cfg.save(root / v.name)
        template = cfg
    if fresh:
        tls = None
        if template.p2p_tls is not None:
            from accord.net.tls import make_self_signed

            make_self_signed(folder / P2P_TLS.cert, folder / P2P_TLS.key, name=NEWCOMER)
            tls = P2P_TLS
        NodeConfig(
            name=NEWCOMER,
            genesis="../genesis.json",
            port=port,
            api_port=api_port,
            peers=peers,
            p2p_tls=tls,
            contracts=specs,
        ).save(folder)
    return folder


class GovernanceDemo:
    """The votes of the demo, sent through the validators' APIs (see the module docstring)."""

    def __init__(self, net: Devnet, genesis: Genesis, say: Callable[[str], None]) -> None:
        self.net = net
        self.genesis = genesis
        self.say = say
        self.root = net.root
        self.members: dict[str, AccountKey] = {
            v.name: AccountKey.load(self.root / v.name / "account.json") for v in genesis.validators
        }
        self.nonces: dict[str, int] = {}
        self.steps: list[dict[str, Any]] = []

    def add_newcomer(self) -> Validator:
        """The newcomer's process joins the devnet's validators (it follows at first)."""
        cfg = NodeConfig.load(self.root / NEWCOMER)
        v = Validator(NEWCOMER, self.root / NEWCOMER, f"http://{cfg.api_host}:{cfg.api_port}")
        self.net.validators.append(v)
        return v

    # --- transactions ----------------------------------------------------------------------

    def _client(self, name: str) -> Client:
        v = next(v for v in self.net.validators if v.name == name)
        return Client(v.api_url, ca_file=v.ca_file)

    def _send(self, member: str, contract: str, method: str, **args: Any) -> Receipt:
        key = self.members[member]
        via = member if member in self.members and member != NEWCOMER else NEWCOMER
        c = self._client(via)
        if member not in self.nonces:
            self.nonces[member] = int(c.account(key.address)["next_nonce"])
        tx = Tx.create(
            key,
            chain_id=self.genesis.chain_id,
            contract=contract,
            method=method,
            args=args,
            nonce=self.nonces[member],
            gas_limit=5_000_000,
        )
        self.nonces[member] += 1
        h = c.submit(tx)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = c.tx(h, proof=False)
            if st.committed and st.receipt is not None:
                return st.receipt
            time.sleep(0.2)
        raise AccordError(f"{contract}.{method} from {member} did not commit in 60 s")

    def _vote(self, action: dict[str, Any], voters: list[str]) -> int:
        r = self._send(voters[0], "governance", "propose", action=action, activation=None)
        if not r.ok:
            raise AccordError(f"proposal {action['kind']} refused: {r.error}")
        last = r
        for m in voters[1:]:
            last = self._send(m, "governance", "approve", proposal=r.result)
            if last.result == "passed":
                break
        if last.result != "passed":
            raise AccordError(f"{action['kind']} did not pass: {last.error or last.result}")
        doc = self._client(voters[0]).query("governance", "proposal", proposal=r.result)
        return int(doc["effective"])

    def _wait_height(self, name: str, height: int, timeout: float = 90) -> None:
        c = self._client(name)
        deadline = time.monotonic() + timeout
        while c.status()["height"] < height:
            if time.monotonic() > deadline:
                raise AccordError(f"{name} did not reach height {height} in {timeout:g} s")
            time.sleep(0.2)

    def _step(self, what: str, **facts: Any) -> None:
        self.steps.append({"step": what, **facts})
        self.say(f"governance: {what} " + " ".join(f"{k}={v}" for k, v in facts.items()))

    # --- the demo ------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        from accord.node.hooks import installed_contracts

        # the hashes of the code the nodes installed, computed the way they compute them
        first_dir = self.root / self.genesis.validators[0].name
        v1, v2 = (
            code_hash(cls)
            for cls in installed_contracts(NodeConfig.load(first_dir), first_dir)
            if cls.name == "board"
        )
        names = [v.name for v in self.genesis.validators]
        first = names[0]
        at = self._vote({"kind": "register_contract", "name": "board", "code_hash": v1}, names)
        self._wait_height(first, at)
        posted = self._send(first, "board", "post", note="hello from the consortium")
        if not posted.ok:
            raise AccordError(f"board.post failed: {posted.error}")
        self._step("deployed board by vote", effective=at, version=self._query("version"))

        card = MemberCard.model_validate_json((self.root / NEWCOMER / CARD_FILE).read_text())
        added = self._vote(
            {
                "kind": "add_validator",
                "name": card.name,
                "bls_public_key": bytes.fromhex(card.bls_public_key),
                "pop": bytes.fromhex(card.pop),
                "account": bytes.fromhex(card.account),
            },
            names,
        )
        self.members[NEWCOMER] = AccountKey.load(self.root / NEWCOMER / "account.json")
        self._wait_height(NEWCOMER, added + 5, timeout=120)
        signed = [h for h in range(added, added + 5) if NEWCOMER in self._signers(h)]
        if not signed:
            raise AccordError(f"{NEWCOMER} signed no certificate after joining at {added}")
        self._step("added validator by vote", name=NEWCOMER, effective=added, signed=len(signed))

        members = [*names, NEWCOMER]
        up = self._vote({"kind": "upgrade_contract", "name": "board", "code_hash": v2}, members)
        self._wait_height(first, up)
        self._step("upgraded board by vote", effective=up, version=self._query("version"))

        gone = names[-1]
        out = self._vote({"kind": "remove_validator", "name": gone}, members)
        self._wait_height(first, out + 4)
        if any(gone in self._signers(h) for h in range(out, out + 4)):
            raise AccordError(f"{gone} still signs certificates after its removal at {out}")
        in_force = [v["name"] for v in self._in_force(out + 4)["validators"]]
        self._step("removed validator by vote", name=gone, effective=out, set=",".join(in_force))
        return self.steps

    def _in_force(self, height: int) -> dict[str, Any]:
        doc = self._client(self.genesis.validators[0].name).query(
            "governance", "in_force", height=height
        )
        assert isinstance(doc, dict)
        return doc

    def _signers(self, height: int) -> set[str]:
        """Names of the validators whose votes the certificate of ``height`` carries, read
        against the set in force at that height."""
        from accord.consensus import certificate_signers

        cert = self._client(self.genesis.validators[0].name).header(height).certificate
        if cert is None:
            return set()
        names = [v["name"] for v in self._in_force(height)["validators"]]
        return {names[i] for i in certificate_signers(cert, len(names))}

    def _query(self, method: str) -> Any:
        return self._client(self.genesis.validators[0].name).query("board", method)


async def run_demo(demo: GovernanceDemo) -> list[dict[str, Any]]:
    """The votes on a thread of their own (they wait for commits), the devnet's loop free."""
    return await asyncio.to_thread(demo.run)
