"""A validator's BLS key is rotated by vote on a running network (issue 19): the validator
moves to its new key at the activation height, certificates from there on are checked with
the new key, the old key is refused, and the heads stay identical.

Four validators; validator-3's node.json names the key it is to move to
(``next_validator_key``, docs/governance.md "rotation"), and the members vote the rotation.
validator-3 runs on, signing with its old key until the set of the next height names the new
one, then with the new one, without a restart; with validator-2 stopped after the activation
nothing commits without validator-3's votes under its new key.

On the code before, a node had one key: the rotated validator followed from the activation
on (no set named its key) and the chain stopped once validator-2 did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.base.crypto import bls
from accord.base.errors import InvalidSignature
from accord.base.keys import save_validator_key
from accord.consensus import certificate_signers, verify_certificate
from accord.node import Node
from accord.node.config import NodeConfig
from accord.node.sets import quorum_of

from .support.gov import NetworkGov
from .support.inproc import ThreadedNetwork
from .support.rawpeer import completes_handshake
from .support.wait import until


def _head(nd: Node) -> int:
    if not nd.running or nd.chain is None:
        return 0
    return nd.chain.head()[0]


def test_a_key_rotated_by_vote_is_taken_up_at_its_activation_height(tmp_path: Path) -> None:
    old_sk, new_sk = bls.demo_secret("validator-3"), bls.demo_secret("validator-3-next")
    old_key, new_key = bls.public_key(old_sk), bls.public_key(new_sk)

    def prepare(root: Path) -> None:
        folder = root / "validator-3"
        save_validator_key(folder / "validator-next.key", new_sk)
        cfg = NodeConfig.load(folder)
        cfg.next_validator_key = "validator-next.key"
        cfg.save(folder)

    net = ThreadedNetwork(tmp_path / "net", validators=4, name="rotate", prepare=prepare)
    try:
        nodes = net.nodes
        rotated = nodes[3]
        assert rotated.public_key == old_key
        at = NetworkGov(net, 4).vote(
            {
                "kind": "rotate_validator_key",
                "name": "validator-3",
                "bls_public_key": new_key,
                "pop": bls.pop_prove(new_sk),
            },
            [0, 1, 2],
        )
        until(
            lambda: min(_head(n) for n in nodes) >= at + 4,
            120,
            "past the activation",
            lambda: (at, [_head(n) for n in nodes], rotated.driver.following),
        )
        assert rotated.public_key == new_key and not rotated.driver.following
        assert rotated.fault is None
        # From the activation on, its votes count only with the new key: with validator-2
        # stopped, the three left decide only if validator-3 signs.
        net.run(nodes[2].stop())
        live = [nodes[0], nodes[1], rotated]
        start = max(_head(n) for n in live)
        until(
            lambda: min(_head(n) for n in live) >= start + 3,
            90,
            "blocks decided by validators 0, 1 and 3 under its new key",
            lambda: (start, [_head(n) for n in live], rotated.fault),
        )
        chain_id = net.genesis.chain_id
        keys: list[bytes] = []
        for h in range(at, start + 4):
            cert = nodes[0].store.get_certificate(h)
            assert cert is not None
            keys = [v.public_key_bytes for v in nodes[0].chain.scheduled(h).validators]
            assert keys[3] == new_key and old_key not in keys
            verify_certificate(keys, chain_id, cert, quorum_of(4))  # with the new key
        for h in range(at - 3, at):  # before the activation validator-3 signed with the old
            keys_then = [v.public_key_bytes for v in nodes[0].chain.scheduled(h).validators]
            assert keys_then[3] == old_key
        cert = nodes[0].store.get_certificate(start + 3)
        assert cert is not None and 3 in certificate_signers(cert, 4), "validator-3 signed"
        with pytest.raises(InvalidSignature):
            verify_certificate([*keys[:3], old_key], chain_id, cert, quorum_of(4))
        # The old key is refused from then on, by every node that runs (itself included).
        for n in live:
            assert n.transport is not None
            assert not net.run(completes_handshake(n.transport, old_sk)), n.name
        for h in range(1, start + 3):
            assert len({n.store.get_header(h).hash for n in live}) == 1, h
        assert all(n.fault is None for n in live)
    finally:
        net.close()
