"""Attacks on the MPC fast paths (chunked frames, uninitialised buffers, pieced truncation).

* A frame's plaintext leaves ``Channel.recv`` only once its tag checked out, whatever the
  chunking, and nothing reachable from it is writable or stale heap.
* A PRF draw exposes no stale heap, not even through the result's ``base``.
* Pieced truncation shows each server exactly the words of the one-piece protocol, and what
  role 0 opens is uniform whatever the product, pieces or not.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accord.base.errors import ChannelAuthError
from accord.base.heap import keep_freed_memory
from accord.mpc import channel as channel_mod
from accord.mpc import engine as E
from accord.mpc.channel import Channel
from accord.mpc.local import run_local
from accord.mpc.prf import Prf

from .support.mpc_sessions import F, FixedNonces, _opened_by_role0

KEY = bytes(range(32))


def _deliver(raw: bytes) -> Channel:
    """A receiving channel whose peer wrote ``raw`` and then closed its side."""
    a, b = socket.socketpair()

    def write() -> None:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)

    threading.Thread(target=write, daemon=True).start()
    return Channel(b, os.urandom(32), KEY)


def _frame(plain: bytes, seq: int = 0) -> bytearray:
    ct = AESGCM(KEY).encrypt(struct.pack(">IQ", 0, seq), plain, None)
    return bytearray(struct.pack(">I", len(ct)) + ct)


def _dirty_heap() -> None:
    keep_freed_memory()
    junk = np.full(4 << 20, 0xA5, dtype=np.uint8)
    del junk


@pytest.mark.parametrize("j", range(18))
def test_the_tag_split_at_every_offset_of_a_chunk_boundary(j: int) -> None:
    """Frames of FIRST_CHUNK + j bytes: the second chunk holds j bytes of the tag (j <= 16)."""
    size = channel_mod._FIRST_CHUNK + j - 16
    plain = os.urandom(size)
    got = _deliver(bytes(_frame(plain))).recv()
    assert bytes(got) == plain
    for at in {4 + size, 4 + channel_mod._FIRST_CHUNK - 1, 4 + channel_mod._FIRST_CHUNK}:
        bad = _frame(plain)
        if at < len(bad):
            bad[at] ^= 1
            with pytest.raises(ChannelAuthError):
                _deliver(bytes(bad)).recv()


@pytest.mark.parametrize("size", [0, 1, channel_mod._SMALL_FRAME - 1, channel_mod._SMALL_FRAME])
@pytest.mark.parametrize("delta", [-1, 1])
def test_an_announced_length_that_lies_is_refused(size: int, delta: int) -> None:
    raw = _frame(os.urandom(size))
    (n,) = struct.unpack(">I", raw[:4])
    struct.pack_into(">I", raw, 0, n + delta)
    with pytest.raises(ChannelAuthError):
        _deliver(bytes(raw) + b"\x00").recv()


def test_reordered_frames_are_refused() -> None:
    first, second = _frame(b"a" * 10, 0), _frame(b"b" * (1 << 17), 1)
    with pytest.raises(ChannelAuthError):
        _deliver(bytes(second + first)).recv()


def test_a_chunked_plaintext_is_read_only_and_holds_no_stale_heap() -> None:
    """Regression: the view was read-only but its ``obj`` (the whole plaintext buffer) was a
    writable array whose last 15 bytes were uninitialised heap."""
    _dirty_heap()
    plain = os.urandom(channel_mod._SMALL_FRAME + 3)
    got = _deliver(bytes(_frame(plain))).recv()
    assert bytes(got) == plain and got.readonly
    backing = np.asarray(got.obj)
    assert not backing.flags.writeable
    assert not np.any(backing[len(plain) :])
    with pytest.raises(ValueError):
        np.frombuffer(got, dtype=np.uint8).flags.writeable = True


@pytest.mark.parametrize(("n", "start"), [(0, 0), (1, 0), (3, 2), (1 << 16, 4), (5, 1 << 20)])
def test_prf_words_hold_no_stale_heap_even_in_their_base(n: int, start: int) -> None:
    """Regression: the two words of slack behind a draw (reachable as ``base``) were stale."""
    _dirty_heap()
    prf = Prf(KEY[:16])
    got = prf.words(9, 2, n, start)
    assert np.array_equal(got, prf.words(9, 2, start + n)[start:])
    assert got.base is not None and not np.any(np.asarray(got.base)[n:])


def _views_run(z: np.ndarray) -> list[list[np.ndarray]]:
    parts = [z, np.zeros_like(z), np.zeros_like(z)]

    def prog(p: E.Party) -> None:
        p.stats.keep_views = True
        p.trunc(parts[p.i].copy(), F)

    run_local(prog, keys=[bytes([k]) * 16 for k in range(3)], party_class=FixedNonces)
    from accord.mpc.local import local_runs

    return [list(p.stats.views) for p in local_runs[-1]]


def test_pieced_truncation_shows_each_server_the_words_of_one_piece(monkeypatch) -> None:
    """What each server receives, pieced, is word for word what it receives in one piece."""
    z = np.arange(1000, dtype=np.uint64) << np.uint64(20)
    whole = _views_run(z)
    monkeypatch.setattr(E, "PIECE_WORDS", 100)
    pieced = _views_run(z)
    k = len(E.trunc_pieces(z.size))
    assert k == E.MAX_PIECES
    for w, pc in zip(whole, pieced, strict=True):
        per = len(pc) // k  # messages a piece
        assert per == len(w)
        for s in range(per):
            got = [pc[q * per + s] for q in range(k)]
            if w[s].size == 2 * z.size:  # role 1's (x01, e) from role 0: halves per piece
                halves = [np.split(g, 2) for g in got]
                got = [
                    np.concatenate([h[0] for h in halves]),
                    np.concatenate([h[1] for h in halves]),
                ]
            assert np.array_equal(np.concatenate(got), w[s])


def test_role0_opening_is_rebuilt_and_uniform_when_pieced(monkeypatch) -> None:
    """Regression for the test helper: it read only the first piece's two messages, so for
    arrays of more than one piece it failed on shapes (and could not test privacy there)."""
    n = 40_000
    monkeypatch.setattr(E, "PIECE_WORDS", 8192)

    def prog(p, x, y):
        return _opened_by_role0(p, x, y)

    out = run_local(prog, {"x": (np.full(n, 8192.0), F), "y": (np.full(n, 4096.0), F)})
    (c,) = [c for _, c in out if c is not None]
    assert c.shape == (n,)
    rate = float((c >> np.uint64(63)).mean())
    assert abs(rate - 0.5) < 5 * np.sqrt(0.25 / n), rate
