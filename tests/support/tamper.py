"""Peers that lie in their answers to other nodes' requests (catch-up, snapshots, sets),
and the snapshots they offer."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from accord.base.encoding import Value
from accord.node import Node


def tamper_requests(node: Node, alter: Callable[[Value, Value], Value | None]) -> list[int]:
    """Make ``node`` answer with ``alter(request, honest answer)`` where that is not None (the
    honest answer otherwise); returns a list that grows by one for each lie told."""
    transport = node.transport
    assert transport is not None
    honest = transport.on_request
    assert honest is not None
    told: list[int] = []

    async def lying(frm: int, body: Value) -> Value:
        out = await honest(frm, body)
        lie = alter(body, out)
        if lie is None:
            return out
        told.append(1)
        return lie

    transport.on_request = lying
    return told


def offer_the_same_snapshots(nodes: list[Node]) -> int:
    """Stop ``nodes`` building snapshots and drop those above the highest they all hold, so
    a joining node is offered that height by every one of them (each liar among them is
    asked); returns it."""
    from accord.storage import snapshot

    from .wait import until

    for n in nodes:
        n.config.snapshot_interval = 0
    until(lambda: all(n.ops._builder is None for n in nodes), 30, "snapshot builds to end")
    common = min(snapshot.available(n.ops.dir)[0] for n in nodes)
    for n in nodes:
        for h in snapshot.available(n.ops.dir):
            if h > common:
                shutil.rmtree(n.ops.dir / str(h))
    return common
