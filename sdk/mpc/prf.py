"""Correlated randomness: per-pair keys expanded with AES in counter mode.

Server ``P_i`` holds the keys ``k_i`` and ``k_{i+1}`` (indices mod 3), so each key is known to
exactly two servers and hidden from the third. Expanding a key gives both of its holders the
same pseudorandom words without a message; that is how zero-sharings, random masks and the
reshares of the protocols are made. Nothing here uses ``random`` or NumPy's generators.

Every expansion is addressed by ``(op, purpose)``: ``op`` is a counter that all servers of one
computation advance identically (they run the same program), ``purpose`` tells apart several
draws of one operation. The 16-byte AES-CTR counter block starts at ``op || purpose || 0``, so
two different addresses never share a keystream block (up to 2^32 blocks = 64 GiB per draw).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from accord.base.errors import MpcError
from accord.mpc.ring import Ring

KEY_SIZE = 16
_MAX_WORDS = 1 << 31


class Prf:
    """A keyed pseudorandom function from ``(op, purpose, n)`` to ``n`` ring words."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 32):
            raise MpcError("a PRF key has 16 or 32 bytes")
        self._alg = algorithms.AES(key)
        self._zeros = bytearray(0)

    def words(self, op: int, purpose: int, n: int, start: int = 0) -> Ring:
        """Words ``start .. start + n`` of the stream at ``(op, purpose)``.

        ``start`` (even: two words a block) lets a protocol draw its stream piece by piece,
        the pieces together being exactly the words one draw of the whole would give.
        """
        if not 0 <= n <= _MAX_WORDS:
            raise MpcError(f"cannot draw {n} words")
        if not (0 <= start <= _MAX_WORDS - n and start % 2 == 0):
            raise MpcError(f"cannot draw from word {start}")
        if not (0 <= op < 1 << 64 and 0 <= purpose < 1 << 32):
            raise MpcError("PRF address out of range")
        nbytes = 8 * n
        if len(self._zeros) < nbytes:
            self._zeros = bytearray(nbytes)
        # Uninitialised: the keystream overwrites every byte handed out (zeroing 8 bytes a
        # word first cost as much as the AES). update_into wants room for one more block.
        out = np.empty(n + 2, dtype=np.uint64)
        enc = Cipher(self._alg, modes.CTR(struct.pack(">QII", op, purpose, start // 2))).encryptor()
        enc.update_into(memoryview(self._zeros)[:nbytes], out.data.cast("B"))
        out[n:] = 0  # the slack stays reachable through the result's ``base``: no stale heap
        return out[:n]


def derive_key(secret: bytes, label: str) -> bytes:
    """A 16-byte subkey of ``secret`` for ``label`` (HMAC-SHA256, truncated)."""
    return hmac.new(secret, b"accord/mpc/" + label.encode(), hashlib.sha256).digest()[:KEY_SIZE]


def fresh_key() -> bytes:
    return os.urandom(KEY_SIZE)


class LocalRandom:
    """Fresh private randomness for a data owner's sharing (AES-CTR keyed from os.urandom)."""

    def __init__(self) -> None:
        self._prf = Prf(os.urandom(KEY_SIZE))
        self._op = 0

    def words(self, n: int) -> Ring:
        self._op += 1
        return self._prf.words(self._op, 0, n)
