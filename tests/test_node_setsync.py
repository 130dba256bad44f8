"""A validator joins by state sync a network whose validator set changed since genesis
(issue 19), past peers that lie about the set, and then validates.

Four genesis validators vote in validator-4 (set up apart, not running), then remove
validator-0: the set of the snapshots' heights is validator-1 to validator-4, which genesis
does not name. validator-4 then starts from an empty folder; it trusts genesis only, so it
must learn the set of the snapshot's height from checkpoints its peers prove
(:mod:`accord.ledger.validatorsets`). validator-0 hides the addition, validator-1 forges it
(its own key in place of validator-4's): both are refused, the snapshot comes from an honest
peer, and with validator-3 stopped blocks commit only with validator-4's votes.

On the code before, the manifest's certificate was checked against genesis's set: every
snapshot was refused and the newcomer replayed from genesis.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.encoding import Value
from accord.consensus import certificate_signers
from accord.ledger.validatorsets import Checkpoint, Proved
from accord.node import Node
from accord.storage import snapshot as snap

from .support.gov import NetworkGov, add_validator_action, new_validator_folder
from .support.inproc import ThreadedNetwork
from .support.tamper import offer_the_same_snapshots, tamper_requests
from .support.wait import until


def _head(nd: Node) -> int:
    if not nd.running or nd.chain is None or nd.ops.syncing:
        return 0
    return nd.chain.head()[0]


def _lie_about_sets(node: Node, how: str) -> list[int]:
    """Make ``node`` serve false checkpoints; returns a list counting the lies told."""

    def alter(body: Value, out: Value) -> Value | None:
        if type(body) is not list or body[:1] != ["sets"] or type(out) is not list or not out:
            return None
        if how == "hide":  # the first set change never happened
            return out[1:]
        first = Checkpoint.from_obj(out[0])
        entry = encoding.decode(first.changes[0].value)  # type: ignore[arg-type]
        entry[1][-1]["bls_public_key"] = bls.public_key(bls.demo_secret("evil"))  # type: ignore[index]
        change = Proved(encoding.encode(entry), first.changes[0].proof)
        forged = dataclasses.replace(first, changes=(change, *first.changes[1:]))
        return [forged.to_obj(), *out[1:]]

    return tamper_requests(node, alter)


def test_a_validator_state_syncs_into_a_network_whose_set_changed_and_validates(
    tmp_path: Path,
) -> None:
    from accord.devnet import free_ports

    port, api_port = free_ports(2)
    made: list[Path] = []

    def prepare(root: Path) -> None:
        made.append(new_validator_folder(root, "validator-4", port, api_port))
        for folder in sorted(root.glob("validator-*")):
            cfg = folder / "node.json"
            data = json.loads(cfg.read_text())
            data.update(snapshot_interval=4, sync=False)
            cfg.write_text(json.dumps(data))

    net = ThreadedNetwork(tmp_path / "net", validators=4, name="setsync", prepare=prepare)
    newcomer: Node | None = None
    try:
        nodes = net.nodes
        gov = NetworkGov(net, 4)
        added = gov.vote(add_validator_action(made[0]), [0, 1, 2])
        removed = gov.vote({"kind": "remove_validator", "name": "validator-0"}, [0, 1, 2, 3])
        assert added < removed

        def snapshots() -> list[list[int]]:
            return [snap.available(n.ops.dir) for n in nodes]

        until(
            lambda: all(s and s[0] >= removed + 2 for s in snapshots()),
            120,
            "snapshots past the removal",
            lambda: (removed, snapshots(), [_head(n) for n in nodes]),
        )
        offer_the_same_snapshots(nodes)
        hid = _lie_about_sets(nodes[0], "hide")
        forged = _lie_about_sets(nodes[1], "forge")

        newcomer = Node.from_dir(made[0])
        late = newcomer
        net.run(late.start())
        until(
            lambda: (
                late.ops.synced_height is not None
                and _head(late) >= min(_head(n) for n in nodes[1:]) - 1
            ),
            120,
            "validator-4 syncs and catches up",
            lambda: (
                late.ops.synced_height,
                late.ops.deciding,
                late.ops.refused,
                [_head(n) for n in nodes],
                _head(late),
            ),
        )
        synced = late.ops.synced_height
        assert synced is not None and synced >= removed
        assert late.store.base() == synced and late.store.get_block(1) is None
        # Both liars were asked, caught and counted; nothing they sent was believed.
        assert hid and forged
        refused = {(peer, what) for peer, what, _ in late.ops.refused}
        assert {(0, "sets"), (1, "sets")} <= refused, late.ops.refused
        assert late.ops.m_refused.get(what="sets") >= 2
        assert not late.driver.following and late.fault is None
        # Now it validates: with validator-3 stopped, the set of four (quorum three) decides
        # only with validator-4's votes.
        net.run(nodes[3].stop())
        start = _head(late)
        until(
            lambda: min(_head(late), _head(nodes[1]), _head(nodes[2])) >= start + 3,
            90,
            "blocks committed by validators 1, 2 and 4",
            lambda: (start, [_head(n) for n in nodes], _head(late)),
        )
        cert = late.store.get_certificate(start + 3)
        assert cert is not None
        vals = late.chain.scheduled(start + 3).validators
        assert [v.name for v in vals] == [
            "validator-1",
            "validator-2",
            "validator-3",
            "validator-4",
        ]
        assert "validator-4" in {vals[i].name for i in certificate_signers(cert, len(vals))}
        for h in range(synced, start + 3):
            assert late.store.get_header(h).hash == nodes[1].store.get_header(h).hash
    finally:
        if newcomer is not None:
            net.run(newcomer.stop())
        net.close()


def test_new_validator_keys_must_name_an_expected_validator_and_a_bls_key() -> None:
    """node.json's new_validator_keys: refused with a clear error unless each is a 48-byte
    key of a name in new_validators (a typo must not leave a key accepted for ever)."""
    from accord.base.errors import ValidationError
    from accord.node.config import NodeConfig

    key = bls.public_key(bls.demo_secret("erin"))
    good = NodeConfig(
        name="v0",
        genesis="g.json",
        new_validators=["erin"],
        new_validator_keys={"erin": key.hex()},
    )
    assert good.expected_keys() == [("erin", key)]
    for bad, why in (
        ({"eirn": key.hex()}, "not in new_validators"),
        ({"erin": key.hex()[:-2]}, "48-byte"),
        ({"erin": "zz" * 48}, "48-byte"),
    ):
        cfg = NodeConfig(
            name="v0", genesis="g.json", new_validators=["erin"], new_validator_keys=bad
        )
        with pytest.raises(ValidationError, match=why):
            cfg.expected_keys()
