"""The client identities a consortium registers with its MPC cluster, and their quotas.

A server serves only keys listed here (``clients`` in the cluster file): quotas are per
identity, so a client cannot escape its share of memory or connections by making a new key.
An entry is ``{"name": ..., "public_key": hex, "quota_mb": int, "connections": int}``; the
last two are optional (the server's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accord.base.errors import MpcError

MAX_IDENTITIES = 10_000
MAX_IDENTITY_NAME = 64


@dataclass(frozen=True)
class Identity:
    """One registered client: its name (logs, errors), key and limits on every server."""

    name: str
    public_key: bytes
    quota_bytes: int
    max_connections: int


def parse_clients(entries: Any, *, quota_bytes: int, max_connections: int) -> dict[bytes, Identity]:
    """The registry from a cluster file's ``clients`` list; any malformed entry is an error.

    Names and keys are unique: two entries for one key would give it two quotas.
    """
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_IDENTITIES:
        raise MpcError(f"clients is a list of 1..{MAX_IDENTITIES} registered identities")
    out: dict[bytes, Identity] = {}
    names: set[str] = set()
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or set(e) - {"name", "public_key", "quota_mb", "connections"}:
            raise MpcError(f"client {k}: a map of name, public_key, quota_mb, connections")
        name, pub = e.get("name"), e.get("public_key")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_IDENTITY_NAME:
            raise MpcError(f"client {k}: a name of 1..{MAX_IDENTITY_NAME} characters")
        try:
            key = bytes.fromhex(pub) if isinstance(pub, str) else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise MpcError(f"client {name!r}: public_key is 32 bytes in hex")
        quota_mb, conns = e.get("quota_mb"), e.get("connections")
        if quota_mb is not None and (type(quota_mb) is not int or not 0 < quota_mb <= 1 << 20):
            raise MpcError(f"client {name!r}: quota_mb is a positive integer")
        if conns is not None and (type(conns) is not int or not 0 < conns <= 1024):
            raise MpcError(f"client {name!r}: connections is an integer in 1..1024")
        if name in names or key in out:
            raise MpcError(f"client {name!r}: registered twice (by name or by key)")
        names.add(name)
        out[key] = Identity(
            name,
            key,
            quota_bytes if quota_mb is None else quota_mb << 20,
            max_connections if conns is None else conns,
        )
    return out
