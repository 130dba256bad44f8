"""Frames from peers, each to the part of the node whose job it is.

Runs in a peer's read loop, so it never awaits: a slow part would stall that peer's link. A
frame that is malformed, or of a kind that has no business arriving as a message (catch-up
goes through the transport's requests), is counted (``accord_bad_messages_total``) and logged,
and changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from accord.base.encoding import Value
from accord.base.errors import AccordError, DecodeError
from accord.consensus import MessageReceived
from accord.net.frames import Kind

if TYPE_CHECKING:
    from accord.node.node import Node

log = logging.getLogger("accord.node")


async def on_message(node: Node, frm: int, kind: Kind, payload: Value) -> None:
    """Hand one frame from validator ``frm`` to the core, admission or catch-up."""
    try:
        if kind == Kind.CONSENSUS:
            if type(payload) is not bytes:
                raise DecodeError("consensus payload must be bytes")
            node.driver.step(MessageReceived(frm, payload))
        elif kind == Kind.TX_BATCH:
            node.admission.on_txs(payload)
        elif kind == Kind.STATUS:
            node.catchup.on_status(frm, payload)
        else:
            raise DecodeError(f"unexpected {kind.name} frame")
    except AccordError as e:
        node.meters.bad_msgs.inc(kind=kind.name.lower())
        log.info("%s: bad %s from validator %d: %s", node.name, kind.name, frm, e)
