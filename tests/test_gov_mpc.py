"""Governed MPC servers: ``set_mpc_servers`` takes effect at its activation height.

A request filed from that height names the new servers' accounts (its record and its
``OracleRequest`` event), only they may answer it, and the old servers' workers leave it to
them; a request filed before stays with the servers in force when it was filed, even after
the change. The requesting contract is itself deployed by vote, on a real chain and store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from accord.base.crypto.ed25519 import AccountKey
from accord.base.types import Receipt
from accord.contracts.base import Context, Contract, method
from accord.contracts.runtime import Runtime, code_hash
from accord.mpc.oracle import OracleWorker, oracle_from_genesis, requests_in

from .support.gov import GovChain, governed_genesis, member_key

M0 = member_key(0)
OLD = [AccountKey.from_name(f"gov-mpc-old-{i}") for i in range(3)]
NEW = [AccountKey.from_name(f"gov-mpc-new-{i}") for i in range(3)]
PROGRAM = "count"
RECEIVER = bytes([7]) * 32


class Requester(Contract):
    """Files one oracle request per call; keeps what the callback delivered."""

    name = "requester"

    @method
    def ask(self, ctx: Context) -> bytes:
        return ctx.mpc.request(PROGRAM, {"shares": [], "params": {}}, [RECEIVER], "done")

    @method
    def done(
        self, ctx: Context, request_id: bytes, ok: bool, outputs: list | None, error: str
    ) -> None:
        ctx.require(ctx.caller == "mpc_oracle", "only the oracle delivers")
        ctx.set(request_id, ok)

    @method(readonly=True)
    def delivered(self, ctx: Context, request_id: bytes) -> bool | None:
        return ctx.get(request_id)


def _servers(keys: list[AccountKey], port: int) -> list[dict]:
    return [
        {
            "address": k.address,
            "host": f"mpc{i}.example",
            "port": port + i,
            "public_key": hashlib.sha256(k.address).digest(),
        }
        for i, k in enumerate(keys)
    ]


@pytest.fixture
def gov(tmp_path: Path) -> GovChain:
    old = _servers(OLD, 7000)
    g = governed_genesis(4).model_copy(
        update={
            "mpc": {
                "servers": [
                    {
                        "address": s["address"].hex(),
                        "channel_key": s["public_key"].hex(),
                        "host": s["host"],
                        "port": s["port"],
                    }
                    for s in old
                ],
                "programs": {PROGRAM: "ab" * 32},
                "timeout_blocks": 50,
            }
        }
    )
    rt = Runtime(g, installed=[Requester], oracle=oracle_from_genesis(g))
    chain = GovChain(tmp_path, g, rt)
    at = chain.pass_action(
        {"kind": "register_contract", "name": "requester", "code_hash": code_hash(Requester)}
    )
    chain.empty(at - chain.height)
    return chain


def _ask(gov: GovChain) -> tuple[bytes, Receipt]:
    (r,) = gov.block(gov.tx(M0, "requester", "ask"))
    assert r.ok, r.error
    return bytes(r.result), r


def _answer(gov: GovChain, server: AccountKey, rid: bytes) -> Receipt:
    outputs = {RECEIVER.hex(): b"sealed"}
    tx = gov.tx(server, "mpc_oracle", "answer", request_id=rid, ok=True, outputs=outputs, error="")
    return gov.block(tx)[0]


def test_requests_go_to_the_servers_in_force_at_their_height(gov: GovChain) -> None:
    genesis_servers = gov.query("in_force", height=gov.height)["mpc_servers"]
    assert [s["address"] for s in genesis_servers] == [k.address for k in OLD]

    before, r = _ask(gov)
    (req,) = requests_in([r])
    assert req.servers == tuple(k.address for k in OLD)

    new = _servers(NEW, 8000)
    at = gov.pass_action({"kind": "set_mpc_servers", "servers": new}, activation=gov.height + 5)
    gov.empty(at - 2 - gov.height)
    still_old, r = _ask(gov)  # filed at at - 1
    assert gov.height == at - 1 and requests_in([r])[0].servers == tuple(k.address for k in OLD)
    after, r = _ask(gov)  # filed at the activation height
    (req_after,) = requests_in([r])
    assert gov.height == at and req_after.servers == tuple(k.address for k in NEW)
    assert gov.query("in_force", height=at)["mpc_servers"] == new

    # Only the servers in force when a request was filed may answer it, before or after.
    refused = _answer(gov, OLD[0], after)
    assert not refused.ok and "in force when the request was filed" in refused.error
    refused = _answer(gov, NEW[0], before)
    assert not refused.ok and "in force when the request was filed" in refused.error
    for server in OLD:
        assert _answer(gov, server, still_old).ok
    for server in NEW:
        assert _answer(gov, server, after).ok
    assert gov.chain.query("mpc_oracle", "pending", {"request_id": after}) is None
    assert gov.chain.query("requester", "delivered", {"request_id": after}) is True
    pending = gov.chain.query("mpc_oracle", "pending", {"request_id": before})
    assert pending is not None and pending["servers"] == [k.address for k in OLD]

    # The servers' workers: a new server answers the new request only, an old one the old.
    new_worker = SimpleNamespace(account=NEW[1])
    old_worker = SimpleNamespace(account=OLD[1])
    assert OracleWorker.mine(new_worker, req_after)  # type: ignore[arg-type]
    assert not OracleWorker.mine(old_worker, req_after)  # type: ignore[arg-type]
    assert OracleWorker.mine(old_worker, req) and not OracleWorker.mine(new_worker, req)  # type: ignore[arg-type]
