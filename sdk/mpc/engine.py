"""Three-party replicated secret sharing over Z_2^64 (honest majority, semi-honest servers).

A secret ``x`` is split as ``x = x_0 + x_1 + x_2 (mod 2^64)`` and server ``P_i`` holds the pair
``(x_i, x_{i+1})``. Any two servers can reconstruct; one server alone holds two uniformly
random words and learns nothing. Every protocol here is written for one server (SPMD): the
three servers run the same program, so their operation counters, and hence their PRF
addresses, stay in step without coordination.

Protocols (each message is one array for the whole operation, so the number of rounds does
not depend on the array size):

* addition, public constants, sums, slicing: local.
* multiplication / matrix product: a local cross product gives a 3-out-of-3 sharing, masked
  with a PRF zero-sharing and sent to the previous server (1 round).
* truncation of fixed-point products (3 rounds): two servers send their masked terms, one of
  them adding a mask r uniform over Z_2^64 that they share, to a third server, which opens
  ``z + 2^62 + r`` (a one-time pad: perfectly hiding) and shifts it; the wrap-around that a
  full-ring mask causes is corrected exactly with one masked bit (see :meth:`Party.trunc`),
  so the result is exact to one unit in the last place for every |z| < 2^62.
* comparison via the most significant bit (10 rounds): the arithmetic sharing becomes two
  boolean-shared words (one reshare), a Kogge-Stone carry network on 64-bit words computes
  the carry into bit 63 with 6 rounds of word-wide ANDs, and the bit is converted back to an
  arithmetic share (2 rounds).

The roles in the asymmetric protocols rotate with the operation counter, so the three
servers carry the same load on average.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from accord.base.errors import MpcError
from accord.mpc import ring
from accord.mpc.prf import KEY_SIZE, Prf
from accord.mpc.ring import FixedPoint, Ring

_ONE = np.uint64(1)
_LOW63 = np.uint64((1 << 63) - 1)


class Transport(Protocol):
    """Ordered, private, authenticated point-to-point links between the three servers."""

    def send(self, to: int, data: Ring) -> None: ...

    def recv(self, frm: int, count: int) -> Ring: ...


@dataclass
class Stats:
    """What one server did: rounds it waited on, words it sent."""

    ops: int = 0
    messages: int = 0
    words_sent: int = 0
    views: list[Ring] = field(default_factory=list)
    keep_views: bool = False


NONCE_WORDS = 4  # 32 bytes of fresh randomness per server per session

# Truncation works in pieces (see Party.trunc): at least this many words a piece (even, for the
# PRF's two-word blocks), and few enough pieces that a peer's queue of unread messages for one
# session (8 deep on a server) never fills while a piece waits for the one before.
PIECE_WORDS = 1 << 16
MAX_PIECES = 4


def trunc_pieces(n: int) -> list[tuple[int, int]]:
    """``(start, length)`` of the pieces of an ``n``-word truncation: even starts, in order."""
    if n == 0:
        return [(0, 0)]
    k = max(1, min(MAX_PIECES, n // PIECE_WORDS))
    size = -(-n // k)
    size += size % 2
    return [(lo, min(size, n - lo)) for lo in range(0, n, size)]


def session_key(static: bytes, session: str, nonces: Sequence[bytes]) -> bytes:
    """A session's PRF key: HMAC-SHA256 of the static pair key over the session id and the
    three servers' fresh nonces (length-prefixed, in server order)."""
    sid = session.encode()
    msg = b"accord/mpc/session" + len(sid).to_bytes(4, "big") + sid + b"".join(nonces)
    return hmac.new(static, msg, hashlib.sha256).digest()[:KEY_SIZE]


class Party:
    """One server's side of the protocols.

    ``keys`` is ``(k_i, k_{i+1})``: the static key shared with the previous server and the
    one shared with the next. They are never used directly: :meth:`start` (the session
    handshake, one round before the first operation) has every server send a fresh 32-byte
    nonce to the other two, and each PRF key of the session is a KDF of the static key, the
    session id and all three nonces. A stream therefore never repeats, whatever the session
    id, the requester's choices or a server restart: an honest server's nonce alone makes
    the keys new, so no replay gives a server two messages masked by the same pad.
    """

    def __init__(
        self,
        index: int,
        keys: tuple[bytes, bytes],
        transport: Transport,
        fp: FixedPoint | None = None,
        session: str = "",
    ) -> None:
        if index not in (0, 1, 2):
            raise MpcError("party index must be 0, 1 or 2")
        self.i = index
        self.fp = fp or FixedPoint()
        self._static = keys
        self.session = session
        self.net = transport
        self.stats = Stats()
        self._op = 0
        self._own: Prf | None = None
        self._next: Prf | None = None
        self.nonces: list[bytes] = []

    # --- the session handshake ---------------------------------------------------------

    def start(self) -> None:
        """Exchange fresh nonces with the other two servers and derive the session keys."""
        if self._own is not None:
            return
        mine = os.urandom(8 * NONCE_WORDS)
        word = np.frombuffer(mine, dtype=np.uint64).copy()
        after, before = (self.i + 1) % 3, (self.i - 1) % 3
        self.send(after, word)
        self.send(before, word)
        got = {self.i: mine}
        for j in (before, after):
            got[j] = self.recv(j, (NONCE_WORDS,)).tobytes()
        self.nonces = [got[0], got[1], got[2]]
        self._own = Prf(session_key(self._static[0], self.session, self.nonces))
        self._next = Prf(session_key(self._static[1], self.session, self.nonces))

    @property
    def own(self) -> Prf:
        """The PRF of k_i (shared with the previous server) for this session."""
        if self._own is None:
            self.start()
        assert self._own is not None
        return self._own

    @property
    def next(self) -> Prf:
        """The PRF of k_{i+1} (shared with the next server) for this session."""
        if self._next is None:
            self.start()
        assert self._next is not None
        return self._next

    # --- plumbing --------------------------------------------------------------------------

    def new_op(self) -> int:
        if self._own is None:
            self.start()
        self._op += 1
        self.stats.ops += 1
        return self._op

    def role(self, op: int) -> int:
        """This server's role in an asymmetric protocol; role r is server (r + op) mod 3."""
        return (self.i - op) % 3

    @staticmethod
    def who(role: int, op: int) -> int:
        return (role + op) % 3

    def send(self, to: int, data: Ring) -> None:
        flat = np.ascontiguousarray(data, dtype=np.uint64).ravel()
        self.stats.messages += 1
        self.stats.words_sent += flat.size
        self.net.send(to, flat)

    def recv(self, frm: int, shape: tuple[int, ...]) -> Ring:
        count = int(np.prod(shape, dtype=np.int64))
        data = self.net.recv(frm, count)
        if data.size != count:
            raise MpcError(f"expected {count} words from server {frm}, got {data.size}")
        if self.stats.keep_views:
            self.stats.views.append(data.copy())
        return data.reshape(shape)

    def zero_share(self, op: int, purpose: int, shape: tuple[int, ...]) -> Ring:
        """alpha_i = F(k_i) - F(k_{i+1}): the three sum to zero, each looks uniform alone."""
        n = int(np.prod(shape, dtype=np.int64))
        z = self.own.words(op, purpose, n)
        np.subtract(z, self.next.words(op, purpose, n), out=z)
        return z.reshape(shape)

    def xor_zero_share(self, op: int, purpose: int, shape: tuple[int, ...]) -> Ring:
        n = int(np.prod(shape, dtype=np.int64))
        z = self.own.words(op, purpose, n)
        np.bitwise_xor(z, self.next.words(op, purpose, n), out=z)
        return z.reshape(shape)

    # --- arithmetic sharing ----------------------------------------------------------------

    def public(self, value: Ring) -> tuple[Ring, Ring]:
        """The trivial sharing of a public value: x_0 = value, x_1 = x_2 = 0."""
        zero = np.zeros_like(value)
        if self.i == 0:
            return value.copy(), zero
        if self.i == 2:
            return zero, value.copy()
        return zero, zero.copy()

    def reshare(self, t: Ring) -> tuple[Ring, Ring]:
        """3-out-of-3 additive sharing -> replicated sharing (1 round)."""
        op = self.new_op()
        z = t + self.zero_share(op, 0, t.shape)
        self.send((self.i - 1) % 3, z)
        return z, self.recv((self.i + 1) % 3, t.shape)

    def input_from(
        self, owner: int, value: Ring | None, shape: tuple[int, ...]
    ) -> tuple[Ring, Ring]:
        """Share a value that server ``owner`` holds in the clear (1 message)."""
        op = self.new_op()
        n = int(np.prod(shape, dtype=np.int64))
        if self.i == owner:
            if value is None or value.shape != shape:
                raise MpcError("the owner must supply a value of the announced shape")
            mask = self.own.words(op, 0, n).reshape(shape)  # x_owner, known to owner and prev
            rest = value - mask  # x_{owner+1}
            self.send((owner + 1) % 3, rest)
            return mask, rest
        if self.i == (owner + 1) % 3:
            return self.recv(owner, shape), np.zeros(shape, dtype=np.uint64)
        return np.zeros(shape, dtype=np.uint64), self.next.words(op, 0, n).reshape(shape)

    def trunc(self, t: Ring, f: int) -> tuple[Ring, Ring]:
        """Replicated sharing of ``z >> f`` from a 3-out-of-3 sharing ``t`` of ``z`` (3 rounds).

        Exact to one unit in the last place for every ``-2^62 <= z < 2^62`` (no failure
        probability inside that range), and perfectly hiding: the only value any server
        opens is ``c = z + 2^62 + r`` with ``r`` uniform over all of Z_2^64.

        Let ``z' = z + 2^62`` (in [0, 2^63)). Roles 1 and 2 share ``r`` (from k'_2, unknown to
        role 0); role 0 opens ``c = z' + r mod 2^64`` (round 1). Over the integers
        ``z' = c - r + 2^64 w`` with the wrap bit ``w = msb(r) (1 - msb(c))`` (z' < 2^63, so a
        wrap happened exactly when r's top bit is set and c's is not), hence

            z >> f = (c >> f) - (r >> f) + s - 2^(62-f) - msb(c) s,  s = 2^(64-f) msb(r),

        up to the borrow of the low bits. ``msb(c)`` is role 0's bit, ``s`` is known to roles
        1 and 2: their product is shared with one masked bit, ``e = msb(c) - a`` where ``a``
        is known to roles 0 and 2 only, so ``msb(c) s = e s + a s`` with ``e s`` at role 1
        and ``a s`` at role 2. Role 2 sends ``a s + nu`` to role 1 (round 1; ``nu`` from
        k'_0), role 0 sends its part and ``e`` to role 1 (round 2), and role 1 sends role 2
        its masked part of the last component (round 3; mask ``mu`` from k'_1). Every word a
        server receives carries a fresh mask from a key it does not hold. ``t`` is consumed.

        The work goes in pieces of at least :data:`PIECE_WORDS` words (at most
        :data:`MAX_PIECES` of them), each piece's messages sent as soon as it is done, so one
        server's rounds overlap the others' on later pieces instead of the three waiting for
        each other in turn. The pieces draw their masks at their own offsets of the same
        streams: the words sent and the result are exactly those of one piece.
        """
        op = self.new_op()
        out_shape = t.shape
        n = t.size
        t = t.reshape(n)  # flat: NumPy would turn 0-d results into scalars (with overflow warnings)
        r = self.role(op)
        pieces = trunc_pieces(n)
        fs = np.uint64(f)
        top = np.uint64(63)
        offset = np.uint64(1 << (62 - f))
        scale = np.uint64(1 << (64 - f)) if f > 0 else np.uint64(0)
        own, nxt = self.own, self.next
        ra, rb = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
        if r == 0:  # own key k'_0 (with role 2), next key k'_1 (with role 1)
            for lo, m in pieces:
                c = t[lo : lo + m] + self.recv(self.who(1, op), (m,))
                c += self.recv(self.who(2, op), (m,))
                c -= nxt.words(op, 0, m, lo)
                c += np.uint64(1 << 62)
                e = (c >> top) - own.words(op, 3, m, lo)
                y0 = own.words(op, 2, m, lo)
                x01 = (c >> fs) - y0
                x01 += nxt.words(op, 4, m, lo)
                self.send(self.who(1, op), np.concatenate([x01, e]))
                y0 += own.words(op, 5, m, lo)
                ra[lo : lo + m], rb[lo : lo + m] = y0, x01  # (x20, x01)
            return ra.reshape(out_shape), rb.reshape(out_shape)
        if r == 1:  # own key k'_1 (with role 0), next key k'_2 (with role 2)
            for lo, m in pieces:
                u = t[lo : lo + m] + own.words(op, 0, m, lo)
                u -= nxt.words(op, 0, m, lo)
                u += nxt.words(op, 1, m, lo)
                self.send(self.who(0, op), u)
            for lo, m in pieces:
                rr = nxt.words(op, 1, m, lo)
                s_ = (rr >> top) * scale
                q = (rr >> fs) - s_  # (r >> f) - 2^(64-f) msb(r): see the formula above
                q += offset
                w = self.recv(self.who(2, op), (m,))
                got = self.recv(self.who(0, op), (2 * m,))
                x01, e = got[:m], got[m:]
                v = -(e * s_) - own.words(op, 4, m, lo)
                self.send(self.who(2, op), v)
                q += w
                ra[lo : lo + m], rb[lo : lo + m] = x01, v - q  # (x01, x12)
            return ra.reshape(out_shape), rb.reshape(out_shape)
        # role 2: own key k'_2 (with role 1), next key k'_0 (with role 0)
        qs: list[Ring] = []
        for lo, m in pieces:
            u = t[lo : lo + m] + own.words(op, 0, m, lo)
            self.send(self.who(0, op), u)
            rr = own.words(op, 1, m, lo)
            s_ = (rr >> top) * scale
            nu = nxt.words(op, 5, m, lo)
            w = nxt.words(op, 3, m, lo) * s_
            w += nu
            self.send(self.who(1, op), w)
            q = (rr >> fs) - s_
            q += offset
            q += w
            qs.append(q)
            x20 = nxt.words(op, 2, m, lo)
            x20 += nu
            rb[lo : lo + m] = x20
        for (lo, m), q in zip(pieces, qs, strict=True):
            ra[lo : lo + m] = self.recv(self.who(1, op), (m,)) - q  # x12
        return ra.reshape(out_shape), rb.reshape(out_shape)

    def mul_shared(self, x: SharedArray, y: SharedArray) -> SharedArray | None:
        """Hook for a party that computes products of shared arrays itself (the checked
        products of :mod:`accord.mpc.malicious`); None means the protocols below."""
        return None

    def matmul_shared(self, x: SharedArray, y: SharedArray) -> SharedArray | None:
        """The same hook for matrix products of two shared arrays."""
        return None

    def trunc_linear(
        self, fn: Callable[[Ring], Ring], a: Ring, b: Ring, f: int
    ) -> tuple[Ring, Ring]:
        """``trunc(fn(x), f)`` for a public linear map ``fn`` of a replicated sharing
        ``(a, b)`` (a product by a public constant or matrix). The semi-honest protocol needs
        only ``fn(a)``; a party that checks truncation needs the whole pair."""
        return self.trunc(fn(a), f)

    def finish(self, t: Ring, frac: int) -> tuple[tuple[Ring, Ring], int]:
        """Turn a local product with ``frac`` fractional bits into a sharing at <= f bits."""
        f = self.fp.frac_bits
        if frac > f:
            return self.trunc(t, frac - f), f
        return self.reshare(t), frac

    # --- boolean sharing (XOR over 64-bit words) -------------------------------------------

    def and_(self, xa: Ring, xb: Ring, ya: Ring, yb: Ring) -> tuple[Ring, Ring]:
        """XOR-shared ``x & y`` (1 round); ``x`` may broadcast against ``y``."""
        op = self.new_op()
        # x_i&y_i ^ x_i&y_{i+1} ^ x_{i+1}&y_i, with one AND saved, computed in place
        t = ya ^ yb
        t &= xa
        u = ya & xb
        t ^= u
        t ^= self.xor_zero_share(op, 0, t.shape)
        self.send((self.i - 1) % 3, t)
        return t, self.recv((self.i + 1) % 3, t.shape)

    def msb(self, a: Ring, b: Ring) -> tuple[Ring, Ring]:
        """Arithmetic sharing of the sign bit of the shared value (1 if negative).

        The carry into bit 63 of ``(x'_0 + x'_1) + x'_2`` is computed on bit planes (plane j
        holds bit j of 64 elements per word), by a binary tree over the 64 planes: each level
        halves the number of planes, so the words ANDed and sent shrink by half per round
        (about 6 n words in all for n elements, against 14 n for a word-wise prefix network).
        """
        out_shape = a.shape
        a, b = a.reshape(-1), b.reshape(-1)
        n = a.size
        w = max(1, -(-n // 64))
        planes = (64, w)
        zero = np.zeros(planes, dtype=np.uint64)
        # Step 1: role 0 knows x'_0 + x'_1 and XOR-shares its planes; roles 1 and 2 know x'_2.
        op = self.new_op()
        r = self.role(op)
        if r == 0:
            a0 = self.own.words(op, 0, 64 * w).reshape(planes)
            a1 = bit_planes(a + b, w) ^ a0
            self.send(self.who(1, op), a1)
            A, B = (a0, a1), (zero, zero)
        elif r == 1:
            A, B = (self.recv(self.who(0, op), planes), zero), (zero, bit_planes(b, w))
        else:
            A, B = (zero, self.next.words(op, 0, 64 * w).reshape(planes)), (bit_planes(a, w), zero)
        top = (A[0][63] ^ B[0][63], A[1][63] ^ B[1][63])  # propagate bit of position 63
        # Planes of bits 0..62 move up one place over an empty plane 0: the group generate
        # of all 64 planes is then the carry into bit 63.
        As = (_lift(A[0]), _lift(A[1]))
        Bs = (_lift(B[0]), _lift(B[1]))
        g = self.and_(As[0], As[1], Bs[0], Bs[1])
        p = (As[0] ^ Bs[0], As[1] ^ Bs[1])
        # Step 2: combine adjacent planes (low, high): G = G_hi ^ P_hi & G_lo, P = P_hi & P_lo.
        # G_hi and P_hi & G_lo never both hold, so XOR is OR here.
        while g[0].shape[0] > 1:
            g_lo, g_hi = (g[0][0::2], g[1][0::2]), (g[0][1::2], g[1][1::2])
            p_lo, p_hi = (p[0][0::2], p[1][0::2]), (p[0][1::2], p[1][1::2])
            if g[0].shape[0] == 2:  # the root needs no propagate
                t = self.and_(p_hi[0], p_hi[1], g_lo[0], g_lo[1])
                g = (g_hi[0] ^ t[0], g_hi[1] ^ t[1])
                break
            t = self.and_(
                p_hi[0], p_hi[1], np.stack([g_lo[0], p_lo[0]]), np.stack([g_lo[1], p_lo[1]])
            )
            g = (g_hi[0] ^ t[0][0], g_hi[1] ^ t[1][0])
            p = (t[0][1], t[1][1])
        m_plane = (np.ascontiguousarray(top[0] ^ g[0][0]), np.ascontiguousarray(top[1] ^ g[1][0]))
        m = [
            np.unpackbits(x.view(np.uint8), bitorder="little")[:n].astype(np.uint64)
            for x in m_plane
        ]
        ya, yb = self.bit_to_arith(m[0], m[1])
        return ya.reshape(out_shape), yb.reshape(out_shape)

    def bit_to_arith(self, ma: Ring, mb: Ring) -> tuple[Ring, Ring]:
        """Boolean-shared bits (words 0/1) -> arithmetic sharing of the same bits (2 rounds)."""
        op = self.new_op()
        shape = ma.shape
        n = ma.size
        r = self.role(op)
        if r == 0:
            c = ma ^ mb
            c0 = self.own.words(op, 0, n).reshape(shape)
            self.send(self.who(1, op), c - c0)
            y1 = self.recv(self.who(1, op), shape)
            y0 = self.recv(self.who(2, op), shape)
            return y0, y1
        if r == 1:
            m2 = mb
            w = self.next.words(op, 1, n).reshape(shape)
            y2 = self.next.words(op, 2, n).reshape(shape)
            c1 = self.recv(self.who(0, op), shape)
            u1 = c1 * (_ONE - (m2 << _ONE))
            self.send(self.who(0, op), u1 + w)
            return u1 + w, y2
        m2 = ma
        c0 = self.next.words(op, 0, n).reshape(shape)
        w = self.own.words(op, 1, n).reshape(shape)
        y2 = self.own.words(op, 2, n).reshape(shape)
        u2 = c0 * (_ONE - (m2 << _ONE)) + m2
        y0 = u2 - w - y2
        self.send(self.who(0, op), y0)
        return y2, y0

    # --- opening -----------------------------------------------------------------------------

    def open(self, a: Ring, b: Ring) -> Ring:
        """Reveal to all three servers (1 round)."""
        self.new_op()
        self.send((self.i + 1) % 3, a)
        return a + b + self.recv((self.i - 1) % 3, a.shape)

    def open_to(self, j: int, a: Ring, b: Ring) -> Ring | None:
        """Reveal to server ``j`` only; the others get nothing (and return None)."""
        self.new_op()
        if self.i == (j - 1) % 3:
            self.send(j, a)
            return None
        if self.i == j:
            return a + b + self.recv((j - 1) % 3, a.shape)
        return None


_M1 = np.uint64(0x00AA00AA00AA00AA)
_M2 = np.uint64(0x0000CCCC0000CCCC)
_M3 = np.uint64(0x00000000F0F0F0F0)


def bit_planes(v: Ring, w: int) -> Ring:
    """Transpose n words into 64 bit planes of ``w`` words: bit i of word k of plane j is bit j
    of element 64 k + i. A linear map over XOR, so servers apply it to shares locally.

    Bytes are regrouped so that one word holds byte b of eight elements, an 8x8 bit-matrix
    transpose inside each word (three mask-and-shift steps) turns that into eight bit rows,
    and a final byte regrouping lays the rows out as planes.
    """
    n = v.size
    total = 64 * w
    if total != n:
        v = np.concatenate([v, np.zeros(total - n, dtype=np.uint64)])
    groups = total // 8
    regrouped = np.ascontiguousarray(v.view(np.uint8).reshape(groups, 8, 8).transpose(0, 2, 1))
    y = regrouped.view(np.uint64).reshape(groups, 8)
    for shift, mask in ((7, _M1), (14, _M2), (28, _M3)):
        s = np.uint64(shift)
        t = (y ^ (y >> s)) & mask
        y ^= t
        y ^= t << s
    return np.ascontiguousarray(y.view(np.uint8).reshape(groups, 64).T).view(np.uint64)


def _lift(x: Ring) -> Ring:
    out = np.empty_like(x)
    out[0] = 0
    out[1:] = x[:-1]
    return out


# --- the NumPy-like shared array ----------------------------------------------------------

Public = int | float | np.ndarray | Sequence[Any]


class SharedArray:
    """A secret-shared array with NumPy semantics, held by one server.

    ``frac`` is the number of fractional bits of the encoding: 0 for integers and bits (the
    result of a comparison), ``fp.frac_bits`` for fixed-point reals. Mixed arithmetic lifts
    integers to fixed point; products of two fixed-point values are truncated back.
    """

    __array_priority__ = 1000  # make ``ndarray op SharedArray`` defer to us
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, party: Party, a: Ring, b: Ring, frac: int) -> None:
        if a.shape != b.shape:
            raise MpcError("the two shares of an array must have one shape")
        self.party = party
        # Indexing one element gives NumPy scalars, whose wrap-around arithmetic warns of
        # overflow; 0-d arrays wrap silently, as every share must.
        self.a = a if isinstance(a, np.ndarray) else np.asarray(a, dtype=np.uint64)
        self.b = b if isinstance(b, np.ndarray) else np.asarray(b, dtype=np.uint64)
        self.frac = frac

    # construction
    @classmethod
    def from_public(cls, party: Party, values: Public, frac: int | None = None) -> SharedArray:
        enc, fr = _encode_public(values, party.fp.frac_bits if frac is None else frac, frac is None)
        a, b = party.public(enc)
        return cls(party, a, b, fr)

    # shape
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.a.shape)

    @property
    def ndim(self) -> int:
        return self.a.ndim

    @property
    def size(self) -> int:
        return int(self.a.size)

    def __len__(self) -> int:
        return len(self.a)

    def _new(self, a: Ring, b: Ring, frac: int | None = None) -> SharedArray:
        return SharedArray(self.party, a, b, self.frac if frac is None else frac)

    def __getitem__(self, key: Any) -> SharedArray:
        return self._new(self.a[key], self.b[key])

    def reshape(self, *shape: Any) -> SharedArray:
        return self._new(self.a.reshape(*shape), self.b.reshape(*shape))

    @property
    def T(self) -> SharedArray:  # noqa: N802 - NumPy's name
        return self._new(self.a.T, self.b.T)

    def transpose(self, *axes: int) -> SharedArray:
        return self._new(self.a.transpose(*axes), self.b.transpose(*axes))

    def flatten(self) -> SharedArray:
        return self._new(self.a.flatten(), self.b.flatten())

    def broadcast_to(self, shape: tuple[int, ...]) -> SharedArray:
        return self._new(
            np.broadcast_to(self.a, shape).copy(), np.broadcast_to(self.b, shape).copy()
        )

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> SharedArray:
        a = np.sum(self.a, axis=axis, keepdims=keepdims, dtype=np.uint64)
        b = np.sum(self.b, axis=axis, keepdims=keepdims, dtype=np.uint64)
        return self._new(np.asarray(a), np.asarray(b))

    def mean(self, axis: int | None = None) -> SharedArray:
        n = self.size if axis is None else self.shape[axis]
        return self.sum(axis=axis).times_constant(1.0 / n)

    def times_constant(self, c: float) -> SharedArray:
        """``self * c`` for a public real ``c`` with ``c`` encoded to about ``frac_bits``
        significant bits, not ``frac_bits`` fractional ones.

        A small constant (1/n in a mean, 1/c in a division) at 16 fractional bits is off by
        up to 2^-17 absolute, 50 % relative for 1/10^5 (a mean of 10^5 ones came out 1.526).
        Encoding it with ``k = frac_bits + ceil(-log2 |c|)`` fractional bits and truncating
        by ``k`` keeps its relative error below 2^-(frac_bits+1); the product being
        truncated is about x * 2^(2 frac_bits), as for any product, so the range is the same.
        """
        x = self.as_fixed()
        f = x.party.fp.frac_bits
        c = float(c)
        if not math.isfinite(c):
            raise MpcError("cannot multiply by NaN or infinity")
        if c == 0.0 or abs(c) >= 1.0:
            return x * c
        k = min(f + max(0, math.ceil(-math.log2(abs(c)))), 62)
        enc = ring.encode_int(np.array(round(c * 2.0**k), dtype=np.int64))
        a, b = x.party.trunc_linear(lambda s: s * enc, x.a, x.b, k)
        return x._new(a, b, f)

    # lifting between integer and fixed-point encodings
    def as_fixed(self) -> SharedArray:
        f = self.party.fp.frac_bits
        if self.frac == f:
            return self
        if self.frac > f:
            raise MpcError("array carries more fractional bits than the engine")
        s = np.uint64(f - self.frac)
        return self._new(self.a << s, self.b << s, f)

    def _align(self, other: SharedArray) -> tuple[SharedArray, SharedArray]:
        if self.frac == other.frac:
            return self, other
        return self.as_fixed(), other.as_fixed()

    # linear operations
    def __add__(self, other: Any) -> SharedArray:
        if isinstance(other, SharedArray):
            x, y = self._align(other)
            return x._new(x.a + y.a, x.b + y.b)
        x, enc = self._public_operand(other)
        pa, pb = x.party.public(np.broadcast_to(enc, np.broadcast_shapes(enc.shape, x.shape)))
        return x._new(x.a + pa, x.b + pb)

    __radd__ = __add__

    def __neg__(self) -> SharedArray:
        return self._new(-self.a, -self.b)

    def __sub__(self, other: Any) -> SharedArray:
        return self + (-other)

    def __rsub__(self, other: Any) -> SharedArray:
        return (-self) + other

    def _public_operand(self, other: Any) -> tuple[SharedArray, Ring]:
        """Encode a public operand at this array's precision (lifting self if it is real)."""
        arr = np.asarray(other)
        x = self
        if arr.dtype.kind == "f" and x.frac == 0:
            x = x.as_fixed()
        enc, _ = _encode_public(arr, x.frac, False)
        return x, enc

    # products
    def __mul__(self, other: Any) -> SharedArray:
        p = self.party
        if isinstance(other, SharedArray):
            done = p.mul_shared(self, other)
            if done is not None:
                return done
            t = other.a + other.b
            t = np.asarray(self.a * t)  # broadcasting may change the shape: no in-place here
            t += self.b * other.a
            (a, b), fr = p.finish(t, self.frac + other.frac)
            return self._new(a, b, fr)
        arr = np.asarray(other)
        if arr.dtype.kind in "iub":
            c = ring.encode_int(arr)
            return self._new(self.a * c, self.b * c)
        c = ring.encode_fixed(arr, p.fp.frac_bits)
        if self.frac == 0:
            return self._new(self.a * c, self.b * c, p.fp.frac_bits)
        a, b = p.trunc_linear(lambda s: s * c, self.a, self.b, p.fp.frac_bits)
        return self._new(a, b)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> SharedArray:
        if isinstance(other, SharedArray):
            raise MpcError(
                "divide by a shared array with divide(x, y, lo, hi), stating the range of y"
            )
        d = np.asarray(other, dtype=np.float64)
        if d.ndim == 0:
            return self.times_constant(1.0 / float(d))
        return self * (1.0 / d)

    def __matmul__(self, other: Any) -> SharedArray:
        p = self.party
        if isinstance(other, SharedArray):
            done = p.matmul_shared(self, other)
            if done is not None:
                return done
            # x_i @ (y_i + y_{i+1}) + x_{i+1} @ y_i as one product with a doubled inner axis
            k_axis = 0 if other.ndim == 1 else -2
            t = ring.matmul(
                np.concatenate([self.a, self.b], axis=-1),
                np.concatenate([other.a + other.b, other.a], axis=k_axis),
            )
            (a, b), fr = p.finish(t, self.frac + other.frac)
            return self._new(a, b, fr)
        arr = np.asarray(other)
        if arr.dtype.kind in "iub":
            c = ring.encode_int(arr)
            return self._new(ring.matmul(self.a, c), ring.matmul(self.b, c))
        c = ring.encode_fixed(arr, p.fp.frac_bits)
        if self.frac == 0:
            return self._new(ring.matmul(self.a, c), ring.matmul(self.b, c), p.fp.frac_bits)
        a, b = p.trunc_linear(lambda s: ring.matmul(s, c), self.a, self.b, p.fp.frac_bits)
        return self._new(a, b)

    def __rmatmul__(self, other: Any) -> SharedArray:
        p = self.party
        arr = np.asarray(other)
        if arr.dtype.kind in "iub":
            c = ring.encode_int(arr)
            return self._new(ring.matmul(c, self.a), ring.matmul(c, self.b))
        c = ring.encode_fixed(arr, p.fp.frac_bits)
        if self.frac == 0:
            return self._new(ring.matmul(c, self.a), ring.matmul(c, self.b), p.fp.frac_bits)
        a, b = p.trunc_linear(lambda s: ring.matmul(c, s), self.a, self.b, p.fp.frac_bits)
        return self._new(a, b)

    def dot(self, other: Any) -> SharedArray:
        return self @ other

    # comparisons (results are shared bits, 0 or 1, with frac 0)
    def ltz(self) -> SharedArray:
        a, b = self.party.msb(self.a, self.b)
        return self._new(a, b, 0)

    def __lt__(self, other: Any) -> SharedArray:
        return (self - other).ltz()

    def __gt__(self, other: Any) -> SharedArray:
        return (-(self - other)).ltz()

    def __le__(self, other: Any) -> SharedArray:
        return 1 - (self > other)

    def __ge__(self, other: Any) -> SharedArray:
        return 1 - (self < other)

    def __eq__(self, other: Any) -> SharedArray:  # type: ignore[override]
        d = self - other
        n = d.size
        flat = d.reshape(n)
        both = concatenate([flat, -flat]).ltz()  # one comparison call for d < 0 and d > 0
        return (1 - both[:n] - both[n:]).reshape(d.shape)

    def __ne__(self, other: Any) -> SharedArray:  # type: ignore[override]
        return 1 - (self == other)

    # opening
    def reveal(self, to: int | None = None) -> npt.NDArray[Any] | None:
        """Open to every server (``to=None``) or to server ``to`` only (others get None)."""
        if to is None:
            raw: Ring | None = self.party.open(self.a, self.b)
        else:
            raw = self.party.open_to(to, self.a, self.b)
        if raw is None:
            return None
        return decode(raw, self.frac)

    def __repr__(self) -> str:
        return f"SharedArray(shape={self.shape}, frac={self.frac}, party={self.party.i})"


def decode(raw: Ring, frac: int) -> npt.NDArray[Any]:
    if frac == 0:
        return ring.decode_int(raw)
    return ring.decode_fixed(raw, frac)


def _encode_public(values: Any, frac: int, infer: bool) -> tuple[Ring, int]:
    arr = np.asarray(values)
    if arr.dtype.kind in "iub" and (infer or frac == 0):
        return ring.encode_int(arr), 0
    if arr.dtype.kind in "iub":
        return ring.encode_int(arr) << np.uint64(frac), frac
    if arr.dtype.kind == "f":
        return ring.encode_fixed(arr, frac), frac
    raise MpcError(f"cannot use a value of dtype {arr.dtype} in MPC")


# --- functions with NumPy names --------------------------------------------------------------


def concatenate(arrays: Sequence[SharedArray], axis: int = 0) -> SharedArray:
    if not arrays:
        raise MpcError("nothing to concatenate")
    fr = max(x.frac for x in arrays)
    xs = [x.as_fixed() if x.frac != fr else x for x in arrays]
    a = np.concatenate([x.a for x in xs], axis=axis)
    b = np.concatenate([x.b for x in xs], axis=axis)
    return SharedArray(xs[0].party, a, b, fr)


def stack(arrays: Sequence[SharedArray], axis: int = 0) -> SharedArray:
    return concatenate([np_expand(x, axis) for x in arrays], axis=axis)


def np_expand(x: SharedArray, axis: int) -> SharedArray:
    return x._new(np.expand_dims(x.a, axis), np.expand_dims(x.b, axis))


def where(cond: SharedArray, x: Any, y: Any) -> SharedArray:
    """``cond ? x : y`` for a shared bit array ``cond`` (1 multiplication)."""
    if cond.frac != 0:
        raise MpcError("the condition of where() must be a shared bit array")
    if not isinstance(x, SharedArray) and not isinstance(y, SharedArray):
        return cond * (np.asarray(x) - np.asarray(y)) + y
    diff = x - y
    return y + cond * diff


select = where


def relu(x: SharedArray) -> SharedArray:
    return (1 - x.ltz()) * x


def maximum(x: SharedArray, y: Any) -> SharedArray:
    return where(x > y, x, y)


# Coefficients of sigmoid(6 t) - 1/2 ~ t * q(t^2) on t in [-1, 1] (least squares, degree 11,
# error below 0.0025); the clamping below handles |x| > 6 (where sigmoid is within 0.0025 of
# 0 or 1). Fitted once with NumPy, kept as constants so that
# every server evaluates the same polynomial.
_SIG_RANGE = 6.0


def _fit_sigmoid(deg: int = 11) -> npt.NDArray[np.float64]:
    t = np.linspace(-1.0, 1.0, 4001)
    target = 1.0 / (1.0 + np.exp(-_SIG_RANGE * t)) - 0.5
    powers = np.stack([t ** (2 * j + 1) for j in range(deg // 2 + 1)], axis=1)
    coef, *_ = np.linalg.lstsq(powers, target, rcond=None)
    return np.asarray(coef, dtype=np.float64)


_SIG_COEF = _fit_sigmoid()


def sigmoid(x: SharedArray) -> SharedArray:
    """Logistic function: an odd polynomial in x/6 inside [-6, 6], 0 or 1 outside.

    The range tests come first and the polynomial sees ``x`` clamped to 0 outside [-6, 6]
    (one bit-times-real product, no truncation), so every product it truncates has |t| <= 1
    and stays far inside truncation's range (|z| < 2^62) whatever ``x`` is. Absolute error
    below 0.003 (see the tests); one comparison call, one clamp, one select and eight
    multiplications.
    """
    x = x.as_fixed()
    n = x.size
    flat = x.reshape(n)
    outs = concatenate([flat - _SIG_RANGE, -flat - _SIG_RANGE]).ltz()  # 1 where inside
    below_hi, above_lo = outs[:n], outs[n:]  # x < 6, x > -6
    inside = below_hi * above_lo  # integer bits: product of bits is their AND
    t = (inside * flat) * (1.0 / _SIG_RANGE)  # clamped: |t| < 1
    t2 = t * t
    coefs = [float(c) for c in _SIG_COEF[::-1]]
    acc = t2 * coefs[0] + coefs[1]
    for c in coefs[2:]:
        acc = acc * t2 + c
    poly = acc * t + 0.5
    # inside -> poly; x >= 6 -> 1; x <= -6 -> 0
    hi = 1 - below_hi
    res = where(inside, poly, hi * 1.0)
    return res.reshape(x.shape)


# --- exp, log, sqrt, reciprocal and division ------------------------------------------------
#
# All of them first find, for each element, the power of two it lies under: one batched
# comparison call gives the bits b_k = [x >= 2^k] over the stated range, and any function of
# the bucket k (2^-(k+1), 2^((k+1)/2), (k+1) ln 2, ...) is then a public linear combination
# of those bits, computed locally. Dividing by the bucket's power of two brings x into
# [1/2, 1), where a short polynomial or Newton iteration is accurate; the bucket's factor is
# multiplied back in at the end. Scale factors are encoded with extra fractional bits (and
# the product truncated by as many), so small factors lose no precision, and every product
# that is truncated stays below 2^62 (truncation's exact range).


def _fit(fn: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]], deg: int) -> list[float]:
    """Least-squares polynomial on u in [-1, 1] (highest power first), fitted once at import."""
    u = np.linspace(-1.0, 1.0, 4001)
    coef = np.polynomial.polynomial.polyfit(u, fn(u), deg)
    return [float(c) for c in coef[::-1]]


_SQRT_COEF = _fit(lambda u: np.sqrt((u + 3.0) / 4.0), 6)  # sqrt(x'), x' = (u + 3) / 4 in [1/2, 1]
_LOG_COEF = _fit(lambda u: np.log((u + 3.0) / 4.0), 9)  # ln(x')
_EXP2_COEF = _fit(lambda u: 2.0 ** ((u + 1.0) / 2.0), 7)  # 2^v, v = (u + 1) / 2 in [0, 1]


def _poly(u: SharedArray, coefs: list[float]) -> SharedArray:
    acc = u * coefs[0] + coefs[1]
    for c in coefs[2:]:
        acc = acc * u + c
    return acc


def _pow2_bits(x: SharedArray, ks: Sequence[int]) -> SharedArray:
    """Shared bits [x >= 2^k] (frac 0), one row per k, in one comparison call."""
    n = x.size
    flat = x.reshape(n)
    below = concatenate([flat - 2.0**k for k in ks]).ltz()
    return (1 - below).reshape(len(ks), n)


def _combine(bits: SharedArray, base: float, steps: Sequence[float], frac: int) -> SharedArray:
    """``base + sum_k bits[k] * steps[k]`` with public reals encoded at ``frac`` fractional
    bits: local, since the bits are shared integers and the weights public."""
    p = bits.party
    enc = [int(round(s * 2.0**frac)) for s in steps]
    if any(abs(e) >= 2**62 for e in enc) or abs(base) * 2.0**frac >= 2.0**62:
        raise MpcError("range too wide for the fixed-point encoding")
    a = np.zeros(bits.shape[1:], dtype=np.uint64)
    b = np.zeros(bits.shape[1:], dtype=np.uint64)
    for k, e in enumerate(enc):
        if e:
            w = np.uint64(e & ((1 << 64) - 1))
            a += bits.a[k] * w
            b += bits.b[k] * w
    pa, pb = p.public(
        np.full(a.shape, int(round(base * 2.0**frac)), dtype=np.int64).view(np.uint64)
    )
    return SharedArray(p, a + pa, b + pb, frac)


def _scaled(x: SharedArray, c: float, extra: int = 12) -> SharedArray:
    """``x * c`` for a public real c, c encoded with ``extra`` more fractional bits."""
    f = x.party.fp.frac_bits
    k = f + extra
    enc = ring.encode_int(np.array(round(c * 2.0**k), dtype=np.int64))
    a, b = x.party.trunc_linear(lambda s: s * enc, x.a, x.b, k)
    return x._new(a, b, f)


@dataclass(frozen=True)
class _Buckets:
    """Where each element lies: bucket k means 2^k <= x < 2^(k+1), for k in [kmin, kmax]."""

    kmin: int
    kmax: int
    bits: SharedArray  # row k - kmin - 1 is [x >= 2^k], for k in (kmin, kmax]

    def combo(self, values: Sequence[float], frac: int) -> SharedArray:
        """The shared value ``values[k - kmin]`` of each element's bucket k."""
        steps = [values[j] - values[j - 1] for j in range(1, len(values))]
        return _combine(self.bits, values[0], steps, frac)

    def ks(self) -> range:
        return range(self.kmin, self.kmax + 1)


def _buckets(x: SharedArray, lo: float, hi: float) -> _Buckets:
    f = x.party.fp.frac_bits
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise MpcError("the range needs 0 < lo < hi")
    if lo < 2.0**-f or hi >= 2.0 ** (61 - 2 * f):
        raise MpcError(f"the range must lie in [2^-{f}, 2^{61 - 2 * f}) at {f} fractional bits")
    kmin, kmax = math.floor(math.log2(lo)), math.floor(math.log2(hi))
    ks = list(range(kmin + 1, kmax + 1))
    if ks:
        bits = _pow2_bits(x, ks)
    else:
        z = np.zeros((0, x.size), dtype=np.uint64)
        bits = SharedArray(x.party, z, z.copy(), 0)
    return _Buckets(kmin, kmax, bits)


def _normalized(x: SharedArray, bk: _Buckets) -> SharedArray:
    """x / 2^(k+1), in [1/2, 1) inside the range (a bit outside it for x outside it)."""
    f = x.party.fp.frac_bits
    frac = f + max(0, bk.kmax + 1)
    s = bk.combo([2.0 ** -(k + 1) for k in bk.ks()], frac)
    return x.reshape(x.size) * s


def _times_factor(
    y: SharedArray,
    bk: _Buckets,
    factors: Sequence[float],
    bound: float,
    fshape: tuple[int, ...] | None = None,
) -> SharedArray:
    """``y * factors[k]`` for each element's bucket k, with ``|y| <= bound``.

    The factors at least 1 are multiplied at the engine's precision (no truncation needed for
    integers), the smaller ones with enough extra fractional bits that the smallest keeps
    full precision; splitting keeps every truncated product below 2^62.
    """
    f = y.party.fp.frac_bits
    big = [v if v >= 1.0 else 0.0 for v in factors]
    small = [v if v < 1.0 else 0.0 for v in factors]
    out: SharedArray | None = None
    if any(big):
        whole = all(float(v).is_integer() for v in big)
        part = y * bk.combo(big, 0 if whole else f).reshape(fshape or (-1,))
        out = part
    if any(small):
        least = min(v for v in small if v > 0)
        extra = min(
            max(0, math.ceil(-math.log2(least))), 61 - 2 * f - max(0, math.ceil(math.log2(bound)))
        )
        if least * 2.0 ** (f + max(0, extra)) < 1.0:
            raise MpcError("the range is too wide for this operation at this precision")
        part = y * bk.combo(small, f + max(0, extra)).reshape(fshape or (-1,))
        out = part if out is None else out + part
    if out is None:
        raise MpcError("no factor to apply")
    return out


def reciprocal(x: SharedArray, lo: float, hi: float) -> SharedArray:
    """1/x for x known to lie in [lo, hi], 2^-f <= lo < hi < 2^(61 - 2f) (2^29 at f = 16).

    x is brought into [1/2, 1) by its power of two, three Newton steps from 2.9142 - 2x'
    (relative error 0.086, squared by each step to below 3e-9) give 1/x', and the power of
    two is multiplied back. Accuracy inside the range: absolute error at most
    2^-(f-2) + 2^-(f-3) / x (4 ulp of the encoding plus 8 ulp relative to 1/x; the tests
    check the whole of [1, 1000], where the old Newton-from-a-constant returned 0 above 997).
    Values outside [lo, hi] give a wrong result. Cost: one comparison call of
    log2(hi/lo) comparisons per element and nine multiplications.
    """
    x = x.as_fixed()
    shape = x.shape
    bk = _buckets(x, lo, hi)
    xn = _normalized(x, bk)
    y = 2.9142 - 2 * xn
    for _ in range(3):
        y = y * (2.0 - xn * y)
    return _times_factor(y, bk, [2.0 ** -(k + 1) for k in bk.ks()], 2.0).reshape(shape)


def divide(x: Any, y: SharedArray, lo: float, hi: float) -> SharedArray:
    """x / y for a shared divisor y known to lie in [lo, hi] (as for :func:`reciprocal`);
    x (shared or public) broadcasts against y.

    Computed as (x / y') * 2^-(k+1) with y' = y / 2^(k+1) in [1/2, 1), so the quotient is
    rounded once at the end rather than x times a rounded 1/y: absolute error at most
    2^-(f-2) + |x / y| 2^-(f-3). Needs |x| < 2^20 and hi < 2^25 at f = 16 (the truncated
    product of x / y' with the factor 2^-(k+1), carried at f + 9 fractional bits, stays below
    2^62 and the factor stays exact); a wider range is refused.
    """
    y = y.as_fixed()
    yshape = y.shape
    bk = _buckets(y, lo, hi)
    yn = _normalized(y, bk)
    r = 2.9142 - 2 * yn
    for _ in range(3):
        r = r * (2.0 - yn * r)
    r = r.reshape(yshape)
    # x broadcasts against y (a matrix divided by a column of counts): each y is
    # normalised once, and its factor broadcasts as r does.
    q = x.as_fixed() * r if isinstance(x, SharedArray) else r * np.asarray(x, dtype=np.float64)
    return _times_factor(q, bk, [2.0 ** -(k + 1) for k in bk.ks()], 2.0**20, yshape)


def sqrt(x: SharedArray, lo: float = 2.0**-16, hi: float = 2.0**29 - 1) -> SharedArray:
    """Square root of x in [lo, hi] (default: 2^-16 to 2^29, any value at f = 16).

    sqrt(x) = sqrt(x') * 2^((k+1)/2) with x' = x / 2^(k+1) in [1/2, 1) and a degree-6
    polynomial for sqrt(x') (error below 1e-7). Absolute error at most 2^-(f-2) +
    sqrt(x) 2^-(f-3) inside the range (for x as encoded); x <= 0 gives an unspecified
    result. Cost: one comparison call (log2(hi/lo) comparisons per element: 44 for the
    default range) and about ten multiplications.
    """
    x = x.as_fixed()
    shape = x.shape
    bk = _buckets(x, max(lo, 2.0**-x.party.fp.frac_bits), hi)
    u = _normalized(x, bk) * 4.0 - 3.0
    r = _poly(u, _SQRT_COEF)
    return _times_factor(r, bk, [2.0 ** ((k + 1) / 2) for k in bk.ks()], 1.0).reshape(shape)


def log(x: SharedArray, lo: float = 2.0**-16, hi: float = 2.0**29 - 1) -> SharedArray:
    """Natural logarithm of x in [lo, hi] (default: 2^-16 to 2^29).

    ln x = ln x' + (k+1) ln 2, x' = x / 2^(k+1) in [1/2, 1), ln x' by a degree-9 polynomial
    (error below 1e-6). Absolute error at most 2^-(f-4) (2.4e-4 at f = 16) inside the range,
    for x as encoded (x itself is known only to 2^-(f+1), which moves ln x by up to
    2^-(f+1) / x more); x <= 0 gives an unspecified result.
    """
    x = x.as_fixed()
    shape = x.shape
    f = x.party.fp.frac_bits
    bk = _buckets(x, max(lo, 2.0**-f), hi)
    u = _normalized(x, bk) * 4.0 - 3.0
    r = _poly(u, _LOG_COEF)
    return (r + bk.combo([(k + 1) * math.log(2.0) for k in bk.ks()], f)).reshape(shape)


def exp(x: SharedArray) -> SharedArray:
    """e^x for |x| < 2^21: accurate for x < (52 - 2f) ln 2 (13.86 at f = 16), saturated at
    2^(52-2f) above it, and 0 for x below -(f+1) ln 2 (where e^x < 2^-(f+1)).

    With t = x log2 e, one comparison call gives the bits [t >= j] for every integer j of
    the range: floor(t) is their sum (plus an offset) and 2^floor(t) a public combination of
    them, u = t - floor(t) is in [0, 1) and 2^u a degree-7 polynomial. Relative error at
    most 2^-(f-4) plus 2^-(f-1) absolute inside the range.
    """
    x = x.as_fixed()
    shape = x.shape
    f = x.party.fp.frac_bits
    kneg, kpos = f + 1, max(1, 52 - 2 * f)
    n = x.size
    t = _scaled(x.reshape(n), 1.0 / math.log(2.0), extra=8)
    js = list(range(-kneg + 1, kpos + 1))
    below = concatenate([t - float(j) for j in js]).ltz()
    bits = (1 - below).reshape(len(js), n)
    inner, top = bits[:-1], bits[-1]
    u = t + float(kneg) - inner.sum(axis=0)  # t - floor(t), in [0, 1) inside the range
    u = u + top * ((1.0 - 2.0**-f) - u)  # saturate above the range
    p = _poly(u * 2.0 - 1.0, _EXP2_COEF)  # 2^u in [1, 2)
    whole = [2.0 ** (j - 1) if j >= 1 else 0.0 for j in js[:-1]]
    part = [2.0 ** (j - 1) if j < 1 else 0.0 for j in js[:-1]]
    out = p * _combine(inner, 0.0, whole, 0)
    out = out + p * _combine(inner, 0.0, part, f + kneg)
    return out.reshape(shape)


def mulv(c: SharedArray, m: Any) -> SharedArray:
    """PrivPy's ``mulv``: row i of ``m`` times entry i of the vector ``c``."""
    if isinstance(m, (list, tuple)):  # a list of rows, as a loop builds it
        m = stack(list(m))
    lead = c.shape
    return (
        c.reshape(*lead, *([1] * (np.ndim(m.a if isinstance(m, SharedArray) else m) - c.ndim))) * m
    )


def append(x: SharedArray, y: Any) -> SharedArray:
    """PrivPy's ``append``: the flat concatenation of two shared values (a vector and a
    scalar give a vector one longer)."""
    if not isinstance(y, SharedArray):
        y = SharedArray.from_public(x.party, np.asarray(y, dtype=np.float64))
    return concatenate([x.reshape(-1), y.reshape(-1)])


def dot(x: SharedArray, y: Any) -> SharedArray:
    return x @ y


def zeros(party: Party, shape: tuple[int, ...] | int, fixed: bool = True) -> SharedArray:
    shp = (shape,) if isinstance(shape, int) else tuple(shape)
    z = np.zeros(shp, dtype=np.uint64)
    return SharedArray(party, z, z.copy(), party.fp.frac_bits if fixed else 0)


Program = Callable[..., Any]
