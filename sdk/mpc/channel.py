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
from collections.abc import Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
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
# Below this a frame is sealed and opened in one call: a streaming GCM context costs about
# 10 us to set up, more than the copies it saves on a small frame.
_SMALL_FRAME = 1 << 16


def _recv_chunks(sock: socket.socket, n: int) -> list[memoryview]:
    """Read an ``n``-byte frame into chunks that grow with what actually arrives.

    A frame is authenticated only once all of it is in, so its announced length is the
    sender's word alone: allocating it up front let two idle connections that each
    announced 512 MiB take that much memory. Chunks start at 1 MiB and double, so memory stays
    within twice the bytes received; unlike a buffer grown in place, no byte is copied (or
    zeroed) twice on the way.
    """
    chunks: list[memoryview] = []
    got = 0
    size = _FIRST_CHUNK
    while got < n:
        chunk = np.empty(min(size, n - got), dtype=np.uint8).data
        have = 0
        while have < chunk.nbytes:
            k = sock.recv_into(chunk[have:], chunk.nbytes - have)
            if k == 0:
                raise PeerGone("connection closed by peer")
            have += k
        chunks.append(chunk)
        got += chunk.nbytes
        size *= 2
    return chunks


def _tail(chunks: list[memoryview], k: int) -> bytes:
    """The last ``k`` bytes of the concatenation of ``chunks`` (the tag may straddle two)."""
    out = b""
    for chunk in reversed(chunks):
        out = bytes(chunk[max(0, chunk.nbytes - (k - len(out))) :]) + out
        if len(out) == k:
            break
    return out


class Channel:
    """One authenticated encrypted connection. ``send`` is thread-safe, ``recv`` single-reader."""

    def __init__(
        self, sock: socket.socket, send_key: bytes, recv_key: bytes, max_frame: int = MAX_FRAME
    ) -> None:
        self.sock = sock
        self._tx = AESGCM(send_key)
        self._tx_alg = algorithms.AES(send_key)
        self._rx = AESGCM(recv_key)
        self._rx_alg = algorithms.AES(recv_key)
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
        self.send_parts((data,))

    def send_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Send the concatenation of ``parts`` as one frame.

        The same bytes on the wire as ``AESGCM.encrypt`` of the joined plaintext (ciphertext
        then the 16-byte tag), but the parts are encrypted one after another straight into
        the frame buffer: a megabyte share array is neither copied behind its header first
        nor into a separate ciphertext, and leaves in one ``sendall``.
        """
        views = [memoryview(p).cast("B") for p in parts]
        size = sum(v.nbytes for v in views)
        with self._lock:
            if self.closed:
                raise PeerGone("channel is closed")
            nonce = struct.pack(">IQ", 0, self._tx_n)
            self._tx_n += 1
            if size < _SMALL_FRAME:
                ct = self._tx.encrypt(nonce, b"".join(views), None)
                self._sendall(struct.pack(">I", len(ct)) + ct)
                return
            enc = Cipher(self._tx_alg, modes.GCM(nonce)).encryptor()
            # 4-byte length, ciphertext, tag; update_into wants one block of slack at the end
            frame = bytearray(4 + size + 16 + 15)
            struct.pack_into(">I", frame, 0, size + 16)
            out = memoryview(frame)
            at = 4
            for v in views:
                if v.nbytes:
                    at += enc.update_into(v, out[at : at + v.nbytes + 15])
            tail = enc.finalize()  # empty for GCM, a stream mode; kept for exactness
            out[at : at + len(tail)] = tail
            at += len(tail)
            if at != 4 + size:
                raise AssertionError("GCM wrote a ciphertext of another length")
            out[at : at + 16] = enc.tag
            try:
                self._sendall(out[: at + 16])
            finally:
                out.release()

    def _sendall(self, data: bytes | memoryview) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.closed = True
            raise PeerGone(f"send failed: {e}") from None

    def recv(self) -> memoryview:
        """The next frame's plaintext (read-only), once its tag has checked out."""
        try:
            (n,) = struct.unpack(">I", bytes(_recv_exact(self.sock, 4)))
            if n > self.max_frame + 16:
                self.closed = True
                raise ChannelAuthError(f"frame of {n} bytes exceeds the limit of {self.max_frame}")
            if n < 16:
                self.closed = True
                raise ChannelAuthError("a frame shorter than its tag")
            small = n < _SMALL_FRAME + 16
            chunks = (
                [memoryview(_recv_exact(self.sock, n))] if small else _recv_chunks(self.sock, n)
            )
        except PeerGone:
            self.closed = True  # the peer closed: a later send must not reuse this channel
            raise
        except OSError as e:
            self.closed = True
            raise PeerGone(f"receive failed: {e}") from None
        nonce = struct.pack(">IQ", 0, self._rx_n)
        self._rx_n += 1
        if small:
            try:
                return memoryview(self._rx.decrypt(nonce, chunks[0], None))
            except InvalidTag:
                self.closed = True
                raise ChannelAuthError("a frame failed authentication") from None
        tag = _tail(chunks, 16)
        # Decrypted chunk by chunk into one buffer of the received size, so the plaintext
        # costs one pass and one allocation; nothing of it leaves before finalize() has
        # checked the tag.
        dec = Cipher(self._rx_alg, modes.GCM(nonce, tag)).decryptor()
        size = n - 16
        plain = np.empty(size + 15, dtype=np.uint8)
        out = plain.data
        at = 0
        left = size
        for chunk in chunks:
            part = chunk[: min(chunk.nbytes, left)]
            left -= part.nbytes
            if part.nbytes:
                at += dec.update_into(part, out[at : at + part.nbytes + 15])
        try:
            dec.finalize()
        except InvalidTag:
            self.closed = True
            raise ChannelAuthError("a frame failed authentication") from None
        if at != size:
            raise AssertionError("GCM wrote a plaintext of another length")
        # The view's ``obj`` is ``plain`` itself: read-only too, so no holder of the view can
        # write into a frame others hold slices of, and the block of slack holds no stale heap
        # (with the servers' kept heap it would be whatever the last array there held).
        plain[size:] = 0
        plain.flags.writeable = False
        return plain.data[:size]

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
