"""The validator handshake: both ends prove they hold a BLS key listed in genesis.

Protocol (D dials A; every message is a frame, see :mod:`accord.net.frames`)::

    D -> A  HELLO      {version, genesis, key: D's BLS public key, to: A's key, nonce: nD}
    A -> D  CHALLENGE  {nonce: nA, sig: sign_A(transcript(nD, nA, signer=A, peer=D))}
    D -> A  AUTH       {sig: sign_D(transcript(nD, nA, signer=D, peer=A))}
    A -> D  READY      {}

``transcript`` is the canonical encoding of (domain tag, genesis hash, nD, nA, signer key,
peer key[, channel binding]). Why each part is there:

* the domain tag keeps these signatures apart from every other BLS signature a validator
  makes (votes, sortition);
* the genesis hash ties the proof to this chain: a node of another network is refused;
* both fresh 32-byte nonces make each signature good for one connection only: a recorded
  AUTH fails against a new nA, and a recorded CHALLENGE fails against a new nD. The acceptor
  also remembers recent nD values, so a replayed HELLO is refused before any signing work;
* signer and peer keys differ between the two signatures, so one side cannot reflect the
  other's signature back. Keys, not indexes: validators governance adds after genesis have no
  index both sides agree on (each node numbers its roster itself, see
  :class:`accord.net.transport.Transport`);
* on an encrypted link, the channel binding (:func:`accord.net.tls.channel_binding`, the
  SHA-256 of the listener's TLS certificate as each side saw it) ties both signatures to this
  TLS session: a man in the middle terminating TLS with a certificate of its own makes the two
  sides sign different bindings, so neither accepts the other's signature. Plaintext links
  (networks configured without TLS) sign the transcript without it, as before.

Once READY is sent, the WebSocket connection is bound to the peer's validator key; frames on
it need no signature of their own (consensus messages carry their own BLS signatures).
"""

from __future__ import annotations

import collections
import os

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.errors import HandshakeRefused

VERSION = 2
DOMAIN = "accord/net/handshake/v2"
NONCE_SIZE = 32


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def transcript(
    genesis_hash: bytes,
    dialer_nonce: bytes,
    acceptor_nonce: bytes,
    signer: int | bytes,
    peer: int | bytes,
    binding: bytes | None = None,
) -> bytes:
    parts: list[encoding.Value] = [DOMAIN, genesis_hash, dialer_nonce, acceptor_nonce, signer, peer]
    if binding is not None:
        parts.append(binding)
    return encoding.encode(parts)


def sign(
    secret: bytes,
    genesis_hash: bytes,
    dialer_nonce: bytes,
    acceptor_nonce: bytes,
    signer: int | bytes,
    peer: int | bytes,
    binding: bytes | None = None,
) -> bytes:
    return bls.sign(
        secret, transcript(genesis_hash, dialer_nonce, acceptor_nonce, signer, peer, binding)
    )


def verify(
    public_key: bytes,
    signature: object,
    genesis_hash: bytes,
    dialer_nonce: bytes,
    acceptor_nonce: bytes,
    signer: int | bytes,
    peer: int | bytes,
    binding: bytes | None = None,
) -> None:
    """Raise :class:`HandshakeRefused` (reason ``bad_signature``) unless it verifies."""
    if type(signature) is not bytes or len(signature) != bls.SIGNATURE_SIZE:
        raise HandshakeRefused("handshake signature has the wrong shape", reason="malformed")
    msg = transcript(genesis_hash, dialer_nonce, acceptor_nonce, signer, peer, binding)
    if not bls.verify(public_key, msg, signature):
        why = (
            "handshake signature does not verify (on TLS: it does not cover the certificate this "
            "connection runs under, e.g. a man in the middle)"
            if binding is not None
            else "handshake signature does not verify"
        )
        raise HandshakeRefused(why, reason="bad_signature")


def field(payload: object, name: str, typ: type, size: int | None = None) -> object:
    """One field of a handshake payload, type- and size-checked."""
    if type(payload) is not dict or name not in payload:
        raise HandshakeRefused(f"handshake message lacks {name!r}", reason="malformed")
    v = payload[name]
    if type(v) is not typ or (size is not None and len(v) != size):  # type: ignore[arg-type]
        raise HandshakeRefused(f"handshake field {name!r} is malformed", reason="malformed")
    return v


class RecentSet:
    """A set that remembers the last ``capacity`` items only (bounded memory)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def __contains__(self, item: bytes) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: bytes) -> bool:
        """Add ``item``; return False if it was already there."""
        if item in self._items:
            return False
        self._items[item] = None
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return True
