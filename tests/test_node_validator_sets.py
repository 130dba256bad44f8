"""A running network follows the validator set governance puts in force (issue 19,
deliverable 3, the node's side): removed by vote, a validator stops counting towards quorums
and follows by certificates; added back, it votes again. Every certificate is checked against
the set of its height, and the heads stay identical."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from accord.consensus import certificate_signers

from .support.gov import NetworkGov
from .support.inproc import ThreadedNetwork

N = 5


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


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
        _wait(lambda: min(c.status()["height"] for c in clients) >= out + 6, 90, "past the removal")
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
        _wait(lambda: min(c.status()["height"] for c in clients) >= back + 8, 90, "past the re-add")
        assert not net.nodes[4].driver.following
        assert any(gone.name in signers(1, h) for h in range(back, back + 8)), "it never voted"
        heads = {net.nodes[i].store.get_header(back + 8).hash for i in range(N)}
        assert len(heads) == 1
        assert all(nd.fault is None for nd in net.nodes)
    finally:
        net.close()


@pytest.mark.parametrize("bad", ["unknown key"])
def test_a_set_with_a_key_the_transport_lacks_is_refused_clearly(bad: str) -> None:
    from accord.node.sets import SetView, UnknownValidator

    with pytest.raises(UnknownValidator, match="not followed by the node yet"):
        SetView.of((b"\x01" * 48,), [b"\x02" * 48], b"\x02" * 48)
    v = SetView.of((b"b" * 48, b"a" * 48), [b"a" * 48, b"b" * 48, b"c" * 48], b"c" * 48)
    assert v.me is None and v.to_transport == (1, 0) and v.from_transport == {1: 0, 0: 1}
    del bad
