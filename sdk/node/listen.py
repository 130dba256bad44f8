"""Where a validator listens and how its links are set up, with errors an operator can act on.

A port already taken is the commonest start-up failure (a second validator on the machine, a
leftover process): it becomes :class:`CannotListen`, one line naming the address and what
was being started, instead of an ``Errno 98`` traceback.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Awaitable
from pathlib import Path

from accord.base.errors import AccordError
from accord.net.transport import NetConfig
from accord.node.config import NodeConfig

log = logging.getLogger("accord.node")


class CannotListen(AccordError):
    """A port this validator must listen on is taken (or not available to it)."""

    code = "cannot_listen"


async def listen(what: str, host: str, port: int, starting: Awaitable[None]) -> None:
    """Await a listener's start; a port already taken becomes one clear error, not a traceback."""
    try:
        await starting
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            reason = {
                errno.EADDRINUSE: "address already in use",
                errno.EACCES: "permission denied",
                errno.EADDRNOTAVAIL: "address not available on this machine",
            }[e.errno]
            raise CannotListen(
                f"cannot listen on {host}:{port} for the {what}: {reason} "
                f"(is another validator or program using it?)"
            ) from None
        raise


def link_config(
    name: str, config: NodeConfig, home: Path, net_config: NetConfig | None
) -> NetConfig:
    """The transport's settings with node.json's link certificate (paths from the folder)."""
    cfg = net_config or NetConfig()
    tls = config.p2p_tls
    if tls is not None and cfg.tls_cert is None:
        cfg = dataclasses.replace(cfg, tls_cert=str(home / tls.cert), tls_key=str(home / tls.key))
    if cfg.tls_cert is None:
        log.warning(
            "%s: validator links are NOT encrypted (no p2p_tls in node.json); see docs/operations.md",
            name,
        )
    return cfg
