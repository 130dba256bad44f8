"""A running network follows the validator set governance puts in force (issue 19,
deliverable 3, the node's side): removed by vote, a validator stops counting towards quorums
and follows by certificates; added back, it votes again. Every certificate is checked against
the set of its height, and the heads stay identical."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.consensus import certificate_signers

from .support.gov import NetworkGov, add_validator_action, new_validator_folder, wait_until
from .support.inproc import ThreadedNetwork

N = 5


def test_a_validator_removed_by_vote_stops_voting_follows_and_rejoins(tmp_path: Path) -> None:
    net = ThreadedNetwork(tmp_path / "net", validators=N, name="sets")
    try:
        gov = NetworkGov(net, N)
        clients = gov.clients
        vote = gov.vote

        def signers(node: int, height: int) -> set[str]:
            nd = net.nodes[node]
            cert = nd.store.get_certificate(height)
            assert cert is not None
            keys = nd.chain.scheduled(height).validators
            return {keys[i].name for i in certificate_signers(cert, len(keys))}

        gone = net.genesis.validators[4]
        out = vote({"kind": "remove_validator", "name": gone.name}, [0, 1, 2, 3])
        wait_until(
            lambda: min(c.status()["height"] for c in clients) >= out + 6, 90, "past the removal"
        )
        # From its height on, validator-4 is in no certificate; before, it may be.
        for h in range(out, out + 6):
            assert gone.name not in signers(0, h)
            assert len(signers(0, h)) >= 3  # a quorum of the four
        # It follows by certificates: same blocks as the others.
        for h in range(1, out + 6):
            assert net.nodes[4].store.get_header(h).hash == net.nodes[0].store.get_header(h).hash
        assert net.nodes[4].fault is None and net.nodes[4].driver.following

        back = vote(
            {
                "kind": "add_validator",
                "name": gone.name,
                "bls_public_key": bytes.fromhex(gone.bls_public_key),
                "pop": bytes.fromhex(gone.pop),
                "account": gov.keys[4].address,
            },
            [0, 1, 2],
        )
        wait_until(
            lambda: min(c.status()["height"] for c in clients) >= back + 8, 90, "past the re-add"
        )
        assert not net.nodes[4].driver.following
        assert any(gone.name in signers(1, h) for h in range(back, back + 8)), "it never voted"
        heads = {net.nodes[i].store.get_header(back + 8).hash for i in range(N)}
        assert len(heads) == 1
        assert all(nd.fault is None for nd in net.nodes)
        _light_client_follows_the_changes(net, back + 8, out, back)
    finally:
        net.close()


def test_a_member_set_up_apart_is_added_by_vote_and_a_genesis_one_removed(tmp_path: Path) -> None:
    """Deliverable 3 end to end: a fifth member makes its keys on its own machine, starts
    following (no peer accepts it yet), is added by vote, catches up by certificates and
    votes; then a genesis validator is removed. The heads stay identical throughout."""
    from accord.devnet import free_ports
    from accord.node import Node

    port, api_port = free_ports(2)
    made: list[Path] = []

    def prepare(root: Path) -> None:
        made.append(new_validator_folder(root, "validator-4", port, api_port))

    net = ThreadedNetwork(tmp_path / "net", validators=4, name="sets-new", prepare=prepare)
    newcomer = Node.from_dir(made[0])
    try:
        net.run(newcomer.start())
        assert newcomer.driver.following  # not a validator yet: nobody counts its votes
        gov = NetworkGov(net, 4)
        clients = gov.clients
        added = gov.vote(add_validator_action(made[0]), [0, 1, 2])

        def head(nd: Node) -> int:
            assert nd.chain is not None
            return nd.chain.head()[0]

        wait_until(lambda: head(newcomer) >= added + 6, 120, "the newcomer catches up and votes")
        assert not newcomer.driver.following

        def names(nd: Node, h: int) -> set[str]:
            cert = nd.store.get_certificate(h)
            assert cert is not None and nd.chain is not None
            vals = nd.chain.scheduled(h).validators
            return {vals[i].name for i in certificate_signers(cert, len(vals))}

        assert any("validator-4" in names(net.nodes[0], h) for h in range(added, added + 6))
        assert all(len(names(net.nodes[0], h)) >= 4 for h in range(added, added + 6))  # of 5
        removed = gov.vote({"kind": "remove_validator", "name": "validator-0"}, [0, 1, 2, 3])
        wait_until(
            lambda: min(head(nd) for nd in [*net.nodes, newcomer]) >= removed + 5,
            120,
            "past the removal",
        )
        assert net.nodes[0].driver.following
        for h in range(removed, removed + 5):
            assert "validator-0" not in names(newcomer, h)
        for h in range(1, removed + 5):
            hashes = {nd.store.get_header(h).hash for nd in [*net.nodes, newcomer]}
            assert len(hashes) == 1, h
        assert all(nd.fault is None for nd in [*net.nodes, newcomer])
        assert clients[1].status()["height"] >= removed + 5
    finally:
        net.run(newcomer.stop())
        net.close()


def _light_client_follows_the_changes(net: ThreadedNetwork, height: int, *changes: int) -> None:
    """A light client from genesis walks across both set changes, proving each against a
    certified state root; a node that lies about a change (the count, an entry) is caught,
    and with only that node the client trusts nothing past the change."""
    import asyncio

    from aiohttp import ClientSession, web

    from accord.base import encoding
    from accord.base.errors import AccordError
    from accord.light import LightClient

    honest = net.urls[1]
    with LightClient(net.genesis, [honest]) as lc:
        lc.sync()
        assert lc.head is not None and lc.head.height >= height
        sets = lc.inner.sets
        assert [a for a, _ in sets.entries] == list(changes)
        assert len(sets.keys_at(changes[0])) == N - 1 and len(sets.keys_at(changes[1])) == N
        assert not lc.inner.faults

    def lie(doc: dict) -> dict:
        if doc.get("contract") == "governance" and doc.get("key") == "s/validators/n":
            doc["value"] = encoding.encode(0).hex()  # "no change ever": genesis's set for ever
        return doc

    async def handle(request: web.Request) -> web.Response:
        async with ClientSession() as s, s.get(honest + request.rel_url.raw_path_qs) as r:
            body, status = await r.read(), r.status
        if status == 200 and request.rel_url.path.startswith("/v1/state/"):
            return web.json_response(lie(__import__("json").loads(body)))
        return web.Response(body=body, status=status, content_type="application/json")

    async def serve() -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"

    runner, liar = net.run(serve())
    try:
        with LightClient(net.genesis, [liar]) as lc:
            with pytest.raises(AccordError):
                lc.sync()
            assert lc.head is None or lc.head.height < changes[0] + 2
            assert any(f.check == "state_proof" for f in lc.inner.faults)
        with LightClient(net.genesis, [liar, honest]) as lc:
            lc.sync()
            assert lc.head is not None and lc.head.height >= height
            assert {f.check for f in lc.inner.faults} == {"state_proof"}
    finally:
        net.run(runner.cleanup())
    del asyncio


def test_the_set_view_maps_set_and_roster_numbering_by_key() -> None:
    from accord.base.crypto import bls
    from accord.base.genesis import ValidatorInfo
    from accord.node.sets import SetView

    def info(name: str) -> ValidatorInfo:
        sk = bls.demo_secret(name)
        return ValidatorInfo(
            name=name, bls_public_key=bls.public_key(sk).hex(), pop=bls.pop_prove(sk).hex()
        )

    a, b, c = info("a"), info("b"), info("c")
    roster = [("a", a.public_key_bytes), ("c", c.public_key_bytes)]

    def index(name: str, key: bytes) -> int:
        for i, (_, k) in enumerate(roster):
            if k == key:
                return i
        roster.append((name, key))
        return len(roster) - 1

    v = SetView.of((b, a), c.public_key_bytes, index)
    assert v.me is None  # c is not in this set
    assert v.to_transport == (2, 0) and v.from_transport == {2: 0, 0: 1}
    assert roster[2] == ("b", b.public_key_bytes)  # a newcomer joins the roster
    assert SetView.of((c, b), c.public_key_bytes, index).me == 0
