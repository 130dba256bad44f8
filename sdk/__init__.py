"""Accord: an embeddable consortium ledger SDK.

The top-level package re-exports what an application needs most: the types, account keys,
and (when the network layer is installed) ``Node`` and ``Client``.
"""

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import AccordError
from accord.base.genesis import Genesis
from accord.base.types import Block, Certificate, Event, Header, Receipt, Tx

__all__ = [
    "AccordError",
    "AccountKey",
    "Block",
    "Certificate",
    "Event",
    "Genesis",
    "Header",
    "Receipt",
    "Tx",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The clients pull in aiohttp: import them only when asked for (``accord.Client``).
    if name in ("Client", "AsyncClient"):
        from accord import client

        return getattr(client, name)
    raise AttributeError(f"module 'accord' has no attribute {name!r}")
