"""The MPC servers' fast paths against their references.

* ``Prf.words`` fills an uninitialised buffer with AES-CTR: every word must be keystream (an
  unwritten word would hand out stale heap memory as "randomness").
* ``Channel.send_parts`` encrypts the pieces of a frame one after another into the frame
  buffer: its bytes must be exactly ``AESGCM.encrypt`` of the joined plaintext.
* ``Channel.recv`` reads a frame in growing chunks and decrypts them in turn: any split of
  ciphertext and tag across chunks must give the plaintext, and a flipped bit anywhere, the
  tag included, must fail.
* ``Party.trunc`` works in pieces so the servers' rounds overlap: the shares must be those of
  one piece, word for word.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base.errors import ChannelAuthError
from accord.base.heap import keep_freed_memory
from accord.mpc import channel as channel_mod
from accord.mpc import engine as E
from accord.mpc.channel import Channel, public_bytes
from accord.mpc.engine import Party
from accord.mpc.local import combine, run_local
from accord.mpc.prf import Prf

from .support.mpc_sessions import FixedNonces


def _ctr_reference(key: bytes, op: int, purpose: int, n: int) -> np.ndarray:
    """AES-CTR written out: block i is AES_k(op || purpose || i) (big-endian counter)."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = b"".join(struct.pack(">QII", op, purpose, i) for i in range((8 * n + 15) // 16))
    stream = enc.update(blocks) + enc.finalize()
    return np.frombuffer(stream[: 8 * n], dtype=np.uint64)


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    op=st.integers(0, (1 << 64) - 1),
    purpose=st.integers(0, (1 << 32) - 1),
    n=st.integers(0, 300),
)
def test_prf_words_are_the_aes_ctr_keystream(key: bytes, op: int, purpose: int, n: int) -> None:
    got = Prf(key).words(op, purpose, n)
    assert got.dtype == np.uint64 and got.shape == (n,)
    assert np.array_equal(got, _ctr_reference(key, op, purpose, n))


def test_prf_words_never_show_stale_memory() -> None:
    """Draws after large frees land on reused heap: still exactly the keystream."""
    keep_freed_memory()
    key = bytes(range(16))
    prf = Prf(key)
    for n in (1 << 17, 3, (1 << 17) + 1, 1 << 16):
        junk = np.full(n + 64, 0xDEADBEEF, dtype=np.uint64)  # dirty pages for the next draw
        del junk
        assert np.array_equal(prf.words(7, 1, n), _ctr_reference(key, 7, 1, n))


def _pair() -> tuple[Channel, Channel, socket.socket]:
    a, b = socket.socketpair()
    ka, kb = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    res: dict[str, Channel] = {}
    t = threading.Thread(
        target=lambda: res.update(b=Channel.handshake(b, kb, public_bytes(ka), False)[0])
    )
    t.start()
    ca, _ = Channel.handshake(a, ka, public_bytes(kb), True)
    t.join()
    return ca, res["b"], a


class _Capture:
    """A socket stand-in that keeps what is sent."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: bytes | memoryview) -> None:
        self.sent += data


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.binary(max_size=200), max_size=5), seq=st.integers(0, 1000))
def test_send_parts_is_aesgcm_of_the_joined_plaintext(parts: list[bytes], seq: int) -> None:
    key = os.urandom(32)
    cap = _Capture()
    ch = Channel(cap, key, os.urandom(32))  # type: ignore[arg-type]
    ch._tx_n = seq
    ch.send_parts(parts)
    nonce = struct.pack(">IQ", 0, seq)
    ct = AESGCM(key).encrypt(nonce, b"".join(parts), None)
    assert bytes(cap.sent) == struct.pack(">I", len(ct)) + ct


@pytest.mark.parametrize(
    "sizes",
    [[70_000], [10, channel_mod._SMALL_FRAME], [3, 0, 1 << 20, 5], [channel_mod._SMALL_FRAME - 1]],
)
def test_large_frames_are_aesgcm_of_the_joined_plaintext_too(sizes: list[int]) -> None:
    key = os.urandom(32)
    cap = _Capture()
    ch = Channel(cap, key, os.urandom(32))  # type: ignore[arg-type]
    parts = [os.urandom(k) for k in sizes]
    ch.send_parts(parts)
    ct = AESGCM(key).encrypt(struct.pack(">IQ", 0, 0), b"".join(parts), None)
    assert bytes(cap.sent) == struct.pack(">I", len(ct)) + ct


@pytest.mark.parametrize(
    "size",
    [
        0,
        channel_mod._SMALL_FRAME - 1,  # the last one-call frame
        channel_mod._SMALL_FRAME,  # the first chunked one
        1,
        channel_mod._FIRST_CHUNK - 16,  # the tag ends the first chunk exactly
        channel_mod._FIRST_CHUNK - 8,  # the tag straddles the first two chunks
        channel_mod._FIRST_CHUNK,  # the tag alone in the second chunk
        3 * channel_mod._FIRST_CHUNK - 5,  # the tag straddles the second and third
        5 * channel_mod._FIRST_CHUNK + 3,
    ],
)
def test_recv_decrypts_whatever_the_chunking(size: int) -> None:
    ca, cb, _ = _pair()
    data = os.urandom(size)
    t = threading.Thread(target=ca.send, args=(data,))
    t.start()
    got = cb.recv()
    t.join()
    assert bytes(got) == data
    assert got.readonly
    ca.close()
    cb.close()


@pytest.mark.parametrize(
    ("size", "flip"),
    [
        (channel_mod._FIRST_CHUNK - 8, 0),  # ciphertext + tag straddle the first chunk boundary
        (channel_mod._FIRST_CHUNK - 8, channel_mod._FIRST_CHUNK - 12),
        (channel_mod._FIRST_CHUNK - 8, -9),
        (channel_mod._FIRST_CHUNK - 8, -1),
        (100, 3),  # a one-call frame
        (100, -1),
    ],
)
def test_recv_refuses_a_flipped_bit_anywhere(size: int, flip: int) -> None:
    """Body, the byte before a chunk boundary inside the tag, and tag bytes: all refused."""
    ca, cb, raw = _pair()
    nonce = struct.pack(">IQ", 0, ca._tx_n)
    ca._tx_n += 1
    frame = bytearray(ca._tx.encrypt(nonce, os.urandom(size), None))
    frame[flip] ^= 0x10
    t = threading.Thread(target=raw.sendall, args=(struct.pack(">I", len(frame)) + frame,))
    t.start()
    with pytest.raises(ChannelAuthError):
        cb.recv()
    t.join()
    ca.close()
    cb.close()


def test_a_frame_shorter_than_a_tag_is_refused() -> None:
    ca, cb, raw = _pair()
    raw.sendall(struct.pack(">I", 5) + b"12345")
    with pytest.raises(ChannelAuthError):
        cb.recv()
    ca.close()
    cb.close()


def test_the_heap_settings_take_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True


# --- truncation in pieces ------------------------------------------------------------------


def _trunc_run(z: np.ndarray, f: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Truncate the 3-out-of-3 sharing (z - r1 - r2, r1, r2) of ``z`` on three servers."""
    rng = np.random.default_rng(7)
    r1 = rng.integers(0, 1 << 63, z.size, dtype=np.uint64) * np.uint64(2)
    r2 = rng.integers(0, 1 << 63, z.size, dtype=np.uint64) + np.uint64(1)
    parts = [z.view(np.uint64) - r1 - r2, r1, r2]

    def prog(p: Party) -> tuple[np.ndarray, np.ndarray]:
        return p.trunc(parts[p.i].copy(), f)

    return run_local(prog, keys=[bytes([k]) * 16 for k in range(3)], party_class=FixedNonces)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 3000),
    piece=st.sampled_from([2, 64, 100, 1000, 1 << 20]),
    f=st.sampled_from([1, 16, 30]),
    seed=st.integers(0, 1 << 30),
)
def test_truncation_in_pieces_is_truncation_in_one(n: int, piece: int, f: int, seed: int) -> None:
    """Same shares, word for word, whatever the pieces; and the shares are z >> f (+-1)."""
    z = np.random.default_rng(seed).integers(-(1 << 61), 1 << 61, n, dtype=np.int64)
    whole = _trunc_run(z, f)
    old = E.PIECE_WORDS
    E.PIECE_WORDS = piece
    try:
        pieced = _trunc_run(z, f)
    finally:
        E.PIECE_WORDS = old
    for (a, b), (c, d) in zip(whole, pieced, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    got = combine(whole).view(np.int64)
    assert np.all(np.abs(got - (z >> f)) <= 1)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 65_536, 262_143, 262_144, 1_000_001])
def test_pieces_cover_the_array_with_even_starts(n: int) -> None:
    pieces = E.trunc_pieces(n)
    assert 1 <= len(pieces) <= E.MAX_PIECES
    assert sum(m for _, m in pieces) == n
    at = 0
    for lo, m in pieces:
        assert lo == at and lo % 2 == 0 and (m > 0 or n == 0)
        at += m
