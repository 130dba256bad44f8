"""Key-compromise impersonation: whoever stole server A's static key must still not be able
to pose as server B to A (the handshake's ephemeral-static terms)."""

from __future__ import annotations

import socket
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accord.base.errors import AccordError
from accord.mpc.channel import Channel, public_bytes


class _Impostor:
    """Holds A's private key and presents B's public key. Any DH with A's static public key
    it can compute (DH(a, B) = DH(b, A)); any other DH needs b, which it does not have, so
    it answers with its best guess (its own key)."""

    def __init__(self, a: X25519PrivateKey, b_pub: bytes) -> None:
        self.a, self.b_pub = a, X25519PublicKey.from_public_bytes(b_pub)
        self.a_pub = public_bytes(a)

    def public_key(self) -> X25519PublicKey:
        return self.b_pub

    def exchange(self, peer: X25519PublicKey) -> bytes:
        if peer.public_bytes_raw() == self.a_pub:
            return self.a.exchange(self.b_pub)
        return self.a.exchange(peer)


def test_a_stolen_static_key_does_not_impersonate_others_to_its_owner():
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    s_att, s_a = socket.socketpair()
    result: list = [None]

    def victim():
        try:
            result[0] = Channel.handshake(s_a, a, public_bytes(b), initiator=False, prologue=b"S")
        except AccordError as e:
            result[0] = e

    t = threading.Thread(target=victim)
    t.start()
    with pytest.raises(AccordError):
        Channel.handshake(
            s_att, _Impostor(a, public_bytes(b)), public_bytes(a), initiator=True, prologue=b"S"
        )  # type: ignore[arg-type]
    s_att.close()
    t.join(15)
    assert isinstance(result[0], AccordError), "A accepted the impostor as B"


def test_honest_handshake_still_works():
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    s1, s2 = socket.socketpair()
    out: list = [None]
    t = threading.Thread(
        target=lambda: out.__setitem__(0, Channel.handshake(s2, b, public_bytes(a), False))
    )
    t.start()
    ch, peer = Channel.handshake(s1, a, public_bytes(b), True)
    t.join()
    assert peer == public_bytes(b) and out[0][1] == public_bytes(a)
    ch.send(b"hello")
    assert out[0][0].recv() == b"hello"
