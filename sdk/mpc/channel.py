"""Authenticated, encrypted, framed channels between MPC servers and their clients.

A share sent to the wrong server breaks privacy, so both ends prove who they are. Every
server has a static X25519 key listed in the cluster configuration (genesis ``mpc.servers``).
The handshake mixes the static-static, the ephemeral-ephemeral and both ephemeral-static
Diffie-Hellman results (a Noise-KK-like pattern): only the holders of the two expected static
keys can derive the session keys, fresh ephemerals make every connection's keys new, and a
stolen static key does not let its thief impersonate others to its owner. A key confirmation
frame ends the handshake, so an impostor fails before any share is sent.

Frames are ``4-byte length || AES-GCM(ciphertext)`` with a per-direction counter as nonce;
a frame above ``max_frame`` bytes, a replayed, reordered or altered frame ends the channel.
Until the key confirmation, no frame longer than the confirmation is read; after it, a
frame's buffer grows with the bytes that arrive, never to the announced length up front.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.base.errors import AccordError, ChannelAuthError, PeerGone

MAX_FRAME = 512 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
_CONFIRM = b"accord/mpc/confirm"


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def pair_secret(me: X25519PrivateKey, peer_public: bytes, label: str) -> bytes:
    """A 32-byte secret that only the two key holders can compute (static-static DH)."""
    shared = me.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"accord/mpc/" + label.encode()).derive(shared)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise PeerGone("connection closed by peer")
        got += k
    return buf


_FIRST_CHUNK = 1 << 20


def _recv_frame(sock: socket.socket, n: int) -> bytearray:
    """Read an ``n``-byte frame into a buffer that grows with what actually arrives.

    A frame is authenticated only once all of it is in, so its announced length is the
    sender's word alone: allocating it up front let two idle connections that each
    announced 512 MiB take that much memory. Growing by doubling from 1 MiB keeps memory
    within twice the bytes received (and the copies amortised to one per byte).
    """
    buf = bytearray(min(n, _FIRST_CHUNK))
    got = 0
    while got < n:
        if got == len(buf):
            buf += bytes(min(n, 2 * len(buf)) - len(buf))
        k = sock.recv_into(memoryview(buf)[got:], len(buf) - got)
        if k == 0:
            raise PeerGone("connection closed by peer")
        got += k
    return buf


class Channel:
    """One authenticated encrypted connection. ``send`` is thread-safe, ``recv`` single-reader."""

    def __init__(
        self, sock: socket.socket, send_key: bytes, recv_key: bytes, max_frame: int = MAX_FRAME
    ) -> None:
        self.sock = sock
        self._tx = AESGCM(send_key)
        self._rx = AESGCM(recv_key)
        self._tx_n = 0
        self._rx_n = 0
        self._lock = threading.Lock()
        self.max_frame = max_frame
        self.closed = False

    @classmethod
    def handshake(
        cls,
        sock: socket.socket,
        me: X25519PrivateKey,
        peer_public: bytes | None,
        initiator: bool,
        prologue: bytes = b"",
        max_frame: int = MAX_FRAME,
    ) -> tuple[Channel, bytes]:
        """Run the handshake; returns the channel and the peer's static public key.

        ``peer_public=None`` (a server accepting clients) accepts any client key; the client
        still authenticates the server, and the server learns the key to encrypt results to.
        """
        eph = X25519PrivateKey.generate()
        mine = public_bytes(me) + public_bytes(eph)
        # A silent or slow peer cannot hold the handshake (and a thread) open for ever.
        old_timeout = sock.gettimeout()
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            sock.sendall(mine)
            theirs = bytes(_recv_exact(sock, 64))
        except OSError as e:
            raise PeerGone(f"handshake failed: {e}") from None
        their_static, their_eph = theirs[:32], theirs[32:]
        if peer_public is not None and their_static != peer_public:
            raise ChannelAuthError("peer presented an unexpected static key")
        try:
            their_s = X25519PublicKey.from_public_bytes(their_static)
            their_e = X25519PublicKey.from_public_bytes(their_eph)
            ss = me.exchange(their_s)
            ee = eph.exchange(their_e)
            # The ephemeral-static terms: without them, whoever stole one side's static key
            # could impersonate anyone to that side (key-compromise impersonation), since
            # ss and ee need only that key and an ephemeral of the attacker's own.
            mine_e_their_s = eph.exchange(their_s)
            mine_s_their_e = me.exchange(their_e)
        except ValueError:  # a low-order point: the shared secret would be all zeros
            raise ChannelAuthError("peer sent an invalid public key") from None
        first, second = (mine, theirs) if initiator else (theirs, mine)
        # canonical order: DH(initiator eph, responder static), DH(initiator static, responder eph)
        es, se = (mine_e_their_s, mine_s_their_e) if initiator else (mine_s_their_e, mine_e_their_s)
        okm = HKDF(
            hashes.SHA256(), 64, salt=None, info=b"accord/mpc/channel" + prologue + first + second
        ).derive(ss + ee + es + se)
        k_init, k_resp = okm[:32], okm[32:]
        send_key, recv_key = (k_init, k_resp) if initiator else (k_resp, k_init)
        # Until the confirmation authenticates the peer, no frame above a few bytes is read.
        ch = cls(sock, send_key, recv_key, max_frame=len(_CONFIRM))
        ch.send(_CONFIRM)
        try:
            if ch.recv() != _CONFIRM:
                raise ChannelAuthError("bad key confirmation")
        except AccordError:
            ch.close()
            raise
        ch.max_frame = max_frame
        sock.settimeout(old_timeout)
        return ch, their_static

    def send(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            if self.closed:
                raise PeerGone("channel is closed")
            nonce = struct.pack(">IQ", 0, self._tx_n)
            self._tx_n += 1
            ct = self._tx.encrypt(nonce, data, None)
            try:
                # small frames in one segment; large ones without copying the ciphertext again
                if len(ct) < 65536:
                    self.sock.sendall(struct.pack(">I", len(ct)) + ct)
                else:
                    self.sock.sendall(struct.pack(">I", len(ct)))
                    self.sock.sendall(ct)
            except OSError as e:
                self.closed = True
                raise PeerGone(f"send failed: {e}") from None

    def recv(self) -> bytes:
        try:
            (n,) = struct.unpack(">I", bytes(_recv_exact(self.sock, 4)))
            if n > self.max_frame + 16:
                self.closed = True
                raise ChannelAuthError(f"frame of {n} bytes exceeds the limit of {self.max_frame}")
            ct = _recv_frame(self.sock, n)
        except PeerGone:
            self.closed = True  # the peer closed: a later send must not reuse this channel
            raise
        except OSError as e:
            self.closed = True
            raise PeerGone(f"receive failed: {e}") from None
        nonce = struct.pack(">IQ", 0, self._rx_n)
        self._rx_n += 1
        try:
            return self._rx.decrypt(nonce, ct, None)
        except InvalidTag:
            self.closed = True
            raise ChannelAuthError("a frame failed authentication") from None

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
