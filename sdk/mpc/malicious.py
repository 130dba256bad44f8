"""Security with abort against one malicious server (for programs that opt in).

The protocols of :mod:`accord.mpc.engine` are secure against a *semi-honest* server: one that
follows them and only looks at what it sees. A server that lies (sends a wrong reshare word,
a wrong share of an opened value, a flipped bit in the comparison network, a wrong output
share) makes the result wrong without anyone noticing. :class:`MaliciousParty` runs the same
programs so that any such lie makes every honest server abort before an output leaves it,
while a lone server still learns nothing (the checks open only uniformly masked values and
hashes of values the receiver already holds). The approach is that of Furukawa, Lindell, Nof
and Weinstein (EUROCRYPT 2017) and ABY3 (Mohassel and Rindal, CCS 2018), written here for
this engine:

* **Every value is held by two servers.** In 2-out-of-3 replicated sharing each component
  x_j is held by P_j and P_{j-1}, so an honest pair together holds every component of every
  value, and a check between the two honest servers needs no trust in the third.
* **Openings are checked** (:meth:`MaliciousParty._open_checked`): a server gets its missing
  component from one peer and a hash of it from the other, who holds it too; one of the two
  is honest, so a wrong word never goes unnoticed.
* **Zero tests** (:meth:`MaliciousParty._zero_check`): to learn that a shared d is 0 without
  opening it, P_i sends ``H(-(d_i + d_{i+1}))`` to P_{i+1}, who holds d_{i+2}, and
  ``H(d_{i+1})`` to P_{i-1}; both members of the honest pair compare. If d = 0 each hash
  is of a word its receiver already holds, so nothing is revealed.
* **Every multiplication is checked with a triple.** Products of arithmetic shares and the
  word-wise ANDs of the comparison network are computed with the semi-honest protocols and
  recorded. Before anything is opened or released (:meth:`MaliciousParty.verify`), the
  servers make random triples (a, b, c = a b) with the same semi-honest protocol, pick a
  random permutation with a coin they toss together, open ``C`` triples to check them, check
  each of the rest against ``B - 1`` others of its bucket (open a - a', b - b', zero-test
  the difference of the products), and check each recorded product z = x y with one good
  triple: open rho = x - a and sigma = y - b (uniform masks) and zero-test
  ``z - (rho sigma + rho b + sigma a + c)``. A wrong product fails the zero test for sure; a
  wrong triple survives only if a whole bucket is wrong in the same way, which happens with
  probability about 1 / C(N B, B) (their analysis); ``B`` is chosen so that this, times the
  64 bit lanes of a word, is at most 2^-40.
* **Conversions without trusted messages.** The comparison turns the arithmetic sharing into
  boolean sharings of its three components (each component is known to two servers, so this
  needs no message: no server can input a wrong value), adds them with a checked carry-save
  layer and the checked carry network, and turns the sign bit back into an arithmetic share
  with two checked products (``m0 xor m1 xor m2`` in arithmetic form).
* **Checked release** (:meth:`MaliciousParty.release`): outputs are re-shared with fresh
  masks as in the semi-honest server, and the new sharing is zero-tested against the old
  one. A receiver that gets all three share pairs already checks that they agree
  (:func:`accord.mpc.local.combine`), so a wrong output share is caught there.

* **Checked truncation** (:meth:`MaliciousParty.trunc_pair`): the semi-honest truncation
  computes ``y``, and checked comparisons then require ``-2^k <= z - 2^k y < 2^k`` and
  ``|y| <= 2^(62-k)``, which leave only the two values an honest truncation gives; the
  check's bits are zero-tested with the products.
* **Checked matrix products** (:meth:`MaliciousParty.matmul_shared`): every term is a checked
  element product, summed locally.

Not covered (the engine refuses rather than compute unchecked): inputs a server shares itself
(``input_from``), unchecked reshares and the truncation of a bare 3-out-of-3 sharing.
Fairness is not given: a malicious server can always make a computation abort (and may see
its own output first).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from typing import Any

import numpy as np

from accord.base.errors import MpcError
from accord.mpc.engine import Party, SharedArray, _lift, bit_planes
from accord.mpc.prf import Prf
from accord.mpc.ring import Ring

log = logging.getLogger("accord.mpc.malicious")

STAT_BITS = 40  # a wrong triple passes the bucket check with probability <= 2^-40
MIN_TRIPLES = 64  # fewer kept triples than this make the bucket bound weak: generate more
MALICIOUS_PROGRAMS = frozenset({"anti_stacking"})  # programs checked by default
MAX_CHECKED_TERMS = 1 << 20  # element products one checked matrix product may expand to

_U64 = np.uint64
_ONE = np.uint64(1)
_TWO = np.uint64(2)


class MpcAbort(MpcError):
    """A check of the malicious-security mode failed: a server deviated (or a share arrived
    corrupted). The computation ends on this server without releasing any output."""

    code = "mpc_abort"


def bucket_plan(n: int, lanes: int, stat_bits: int = STAT_BITS) -> tuple[int, int, int]:
    """``(kept, bucket, opened)`` triples for ``n`` products with ``lanes`` independent bit
    lanes per word: the smallest bucket size B with C(kept B, B) >= 2^stat_bits * lanes."""
    kept = max(n, MIN_TRIPLES)
    need = stat_bits + math.log2(lanes)
    b = 2
    while True:
        total = kept * b
        log2_binom = (
            math.lgamma(total + 1) - math.lgamma(b + 1) - math.lgamma(total - b + 1)
        ) / math.log(2)
        if log2_binom >= need:
            return kept, b, b
        b += 1


def _digest(op: int, tag: bytes, words: Ring) -> Ring:
    h = hashlib.sha256(b"accord/mpc/check/" + tag + op.to_bytes(8, "big"))
    h.update(np.ascontiguousarray(words, dtype=np.uint64).tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint64).copy()


def _flat(x: Ring, shape: tuple[int, ...]) -> Ring:
    return np.ascontiguousarray(np.broadcast_to(x, shape), dtype=np.uint64).reshape(-1).copy()


class MaliciousParty(Party):
    """A :class:`~accord.mpc.engine.Party` whose every product is checked before release.

    Runs the programs of the semi-honest engine unchanged (SPMD: the three servers record the
    same products in the same order, so :meth:`verify` stays in step). ``verify`` runs before
    every opening and in :meth:`release`; any failed check raises :class:`MpcAbort`.
    """

    def __init__(self, *args: Any, stat_bits: int = STAT_BITS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stat_bits = stat_bits
        self._ands: list[tuple[Ring, Ring, Ring, Ring, Ring, Ring]] = []
        self._muls: list[tuple[Ring, Ring, Ring, Ring, Ring, Ring]] = []
        self._ranges: list[tuple[Ring, Ring]] = []  # must be zero: checked truncations
        self.checked_ands = 0  # words (64 lanes each) of AND checked so far
        self.checked_muls = 0  # ring products checked so far
        self.checked_truncs = 0  # truncated elements whose range check passed so far

    # --- what the semi-honest engine does that this mode cannot check --------------------------

    def trunc(self, t: Ring, f: int) -> tuple[Ring, Ring]:
        raise MpcError(
            "truncation of a 3-out-of-3 sharing is not covered by the malicious-security "
            "checks (only products of replicated sharings are: trunc_linear, mul_shared)"
        )

    def finish(self, t: Ring, frac: int) -> tuple[tuple[Ring, Ring], int]:
        raise MpcError(
            "a product computed outside the checked hooks is not covered by the "
            "malicious-security checks"
        )

    def reshare(self, t: Ring) -> tuple[Ring, Ring]:
        raise MpcError("an unchecked reshare is not allowed in malicious-security mode")

    def input_from(
        self, owner: int, value: Ring | None, shape: tuple[int, ...]
    ) -> tuple[Ring, Ring]:
        raise MpcError("a server's own input cannot be checked in malicious-security mode")

    def _fail(self, what: str) -> None:
        log.warning(
            "server %d: malicious-security check failed (%s) in session %s",
            self.i,
            what,
            self.session[:32],
        )
        raise MpcAbort(f"server {self.i}: check failed: {what}; computation aborted")

    # --- recorded products ----------------------------------------------------------------------

    def and_(self, xa: Ring, xb: Ring, ya: Ring, yb: Ring) -> tuple[Ring, Ring]:
        za, zb = Party.and_(self, xa, xb, ya, yb)
        shape = za.shape
        self._ands.append(
            (
                _flat(xa, shape),
                _flat(xb, shape),
                _flat(ya, shape),
                _flat(yb, shape),
                _flat(za, shape),
                _flat(zb, shape),
            )
        )
        return za, zb

    def _mul(self, xa: Ring, xb: Ring, ya: Ring, yb: Ring) -> tuple[Ring, Ring]:
        t = ya + yb
        t = xa * t
        t += xb * ya
        za, zb = self._reshare(t)
        shape = za.shape
        self._muls.append(
            (
                _flat(xa, shape),
                _flat(xb, shape),
                _flat(ya, shape),
                _flat(yb, shape),
                _flat(za, shape),
                _flat(zb, shape),
            )
        )
        return za, zb

    def _reshare(self, t: Ring) -> tuple[Ring, Ring]:
        """The semi-honest reshare of a product, to be checked by :meth:`verify`."""
        return Party.reshare(self, t)

    def mul_shared(self, x: SharedArray, y: SharedArray) -> SharedArray | None:
        frac = x.frac + y.frac
        a, b = self._mul(x.a, x.b, y.a, y.b)
        f = self.fp.frac_bits
        if frac > f:
            a, b = self.trunc_pair(a, b, frac - f)
            frac = f
        return SharedArray(self, a, b, frac)

    def matmul_shared(self, x: SharedArray, y: SharedArray) -> SharedArray | None:
        """``x @ y`` as checked element products summed locally.

        Every term ``x[i, l] * y[l, j]`` is one product of :meth:`_mul` (one reshare round
        for all of them, each checked with its own triple), so a wrong matrix product is
        caught with certainty, like a wrong element product. It costs n k m words and
        triples where the semi-honest product sends n m words; ``MAX_CHECKED_TERMS`` bounds
        the memory one product may take.
        """
        if x.ndim < 1 or y.ndim not in (1, 2):
            raise MpcError("checked matrix products take (..., n, k) or (k,) times (k, m) or (k,)")
        xa = x.a if x.ndim > 1 else x.a[None, :]
        xb = x.b if x.ndim > 1 else x.b[None, :]
        ya = y.a if y.ndim > 1 else y.a[:, None]
        yb = y.b if y.ndim > 1 else y.b[:, None]
        k, m = ya.shape
        if xa.shape[-1] != k:
            raise MpcError(f"matrix product of shapes {x.shape} and {y.shape}")
        lead = xa.shape[:-1]
        rows = math.prod(lead)
        if rows * k * m > MAX_CHECKED_TERMS:
            raise MpcError(
                f"a checked matrix product has at most {MAX_CHECKED_TERMS} terms "
                f"(n k m = {rows * k * m}): split it"
            )
        za, zb = self._mul(
            xa.reshape(rows, k, 1), xb.reshape(rows, k, 1), ya.reshape(1, k, m), yb.reshape(1, k, m)
        )
        out = lead + (m,)
        if y.ndim == 1:
            out = lead if x.ndim > 1 else ()
        elif x.ndim == 1:
            out = (m,)
        a: Ring = np.asarray(np.sum(za, axis=1, dtype=np.uint64)).reshape(out)
        b: Ring = np.asarray(np.sum(zb, axis=1, dtype=np.uint64)).reshape(out)
        frac = x.frac + y.frac
        f = self.fp.frac_bits
        if frac > f:
            a, b = self.trunc_pair(a, b, frac - f)
            frac = f
        return SharedArray(self, np.asarray(a), np.asarray(b), frac)

    # --- checked truncation ----------------------------------------------------------------

    def trunc_linear(self, fn: Any, a: Ring, b: Ring, f: int) -> tuple[Ring, Ring]:
        return self.trunc_pair(np.asarray(fn(a)), np.asarray(fn(b)), f)

    def _trunc_unchecked(self, t: Ring, k: int) -> tuple[Ring, Ring]:
        """The semi-honest truncation, whose result :meth:`trunc_pair` then checks."""
        return Party.trunc(self, t, k)

    def trunc_pair(self, za: Ring, zb: Ring, k: int) -> tuple[Ring, Ring]:
        """``z >> k`` of a replicated sharing ``(za, zb)``, with a check that binds it.

        The semi-honest protocol computes ``y``; a lying server can make it anything. The
        check needs no trust in it: with ``d = z - 2^k y`` (local), it asks, with checked
        comparisons, that ``-2^k <= d < 2^k`` and ``-2^(62-k) <= y <= 2^(62-k)``. Both
        hold for an honest ``y`` (``floor(z / 2^k)`` or one more) whenever ``|z| < 2^62``
        (truncation's range). Conversely the second bounds ``2^k y`` so that ``d`` cannot
        wrap around the ring, and then the first leaves only those two values: a lie that
        changes ``y`` otherwise fails the check, and so does a product outside the range
        (which the semi-honest engine would truncate to garbage). The four bits are summed
        with their expected values so that the sum is 0, and :meth:`verify` zero-tests it
        with the products (before any opening or release). Cost: the semi-honest
        truncation's 3 rounds plus one checked comparison call of 4 comparisons per element.
        """
        shape = za.shape
        za, zb = za.reshape(-1), zb.reshape(-1)
        n = za.size
        ya, yb = self._trunc_unchecked(za.copy(), k)
        ya, yb = ya.reshape(-1), yb.reshape(-1)
        ks = _U64(k)
        da, db = za - (ya << ks), zb - (yb << ks)
        bound = 1 << (62 - k)

        def plus(xa: Ring, xb: Ring, c: int) -> tuple[Ring, Ring]:
            pa, pb = self.public(np.full(n, c % (1 << 64), dtype=np.uint64))
            return xa + pa, xb + pb

        parts = [
            plus(da, db, 1 << k),  # d >= -2^k: sign 0
            plus(da, db, -(1 << k)),  # d < 2^k: sign 1
            plus(ya, yb, bound),  # y >= -2^(62-k): sign 0
            plus(ya, yb, -bound - 1),  # y <= 2^(62-k): sign 1
        ]
        ma, mb = self.msb(
            np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        )
        ma, mb = ma.reshape(4, n), mb.reshape(4, n)
        # bits 0 and 2 must be 0, bits 1 and 3 must be 1: their sum with 2 subtracted is 0
        sa = ma[0] - ma[1] + ma[2] - ma[3]
        sb = mb[0] - mb[1] + mb[2] - mb[3]
        sa, sb = plus(sa, sb, 2)
        self._ranges.append((sa, sb))
        return ya.reshape(shape), yb.reshape(shape)

    # --- comparison: checked A2B, carry network, B2A -----------------------------------------

    def msb(self, a: Ring, b: Ring) -> tuple[Ring, Ring]:
        """Sign bits, with every message checked later (see the module docstring).

        Component j of the arithmetic sharing is known to P_j and P_{j-1}, so its boolean
        sharing (the word in component j, zeros elsewhere) needs no message; a carry-save
        layer (one AND) turns three summands into two, and the carry network of the
        semi-honest engine finds the carry into bit 63.
        """
        out_shape = a.shape
        a, b = a.reshape(-1), b.reshape(-1)
        n = a.size
        w = max(1, -(-n // 64))
        zero = np.zeros((64, w), dtype=np.uint64)
        pa, pb = bit_planes(a, w), bit_planes(b, w)
        comps = []
        for j in range(3):
            comps.append((pa if j == self.i else zero, pb if j == (self.i + 1) % 3 else zero))
        u, v, x = comps
        s = (u[0] ^ v[0] ^ x[0], u[1] ^ v[1] ^ x[1])
        ux, vx = (u[0] ^ x[0], u[1] ^ x[1]), (v[0] ^ x[0], v[1] ^ x[1])
        m = self.and_(ux[0], ux[1], vx[0], vx[1])
        carry = (m[0] ^ x[0], m[1] ^ x[1])  # majority(u, v, x)
        A = s
        B = (_lift(carry[0]), _lift(carry[1]))  # the carries weigh one bit more
        top = (A[0][63] ^ B[0][63], A[1][63] ^ B[1][63])
        As = (_lift(A[0]), _lift(A[1]))
        Bs = (_lift(B[0]), _lift(B[1]))
        g = self.and_(As[0], As[1], Bs[0], Bs[1])
        p = (As[0] ^ Bs[0], As[1] ^ Bs[1])
        while g[0].shape[0] > 1:
            g_lo, g_hi = (g[0][0::2], g[1][0::2]), (g[0][1::2], g[1][1::2])
            p_lo, p_hi = (p[0][0::2], p[1][0::2]), (p[0][1::2], p[1][1::2])
            if g[0].shape[0] == 2:
                t = self.and_(p_hi[0], p_hi[1], g_lo[0], g_lo[1])
                g = (g_hi[0] ^ t[0], g_hi[1] ^ t[1])
                break
            t = self.and_(
                p_hi[0], p_hi[1], np.stack([g_lo[0], p_lo[0]]), np.stack([g_lo[1], p_lo[1]])
            )
            g = (g_hi[0] ^ t[0][0], g_hi[1] ^ t[1][0])
            p = (t[0][1], t[1][1])
        plane = (np.ascontiguousarray(top[0] ^ g[0][0]), np.ascontiguousarray(top[1] ^ g[1][0]))
        bits = [
            np.unpackbits(q.view(np.uint8), bitorder="little")[:n].astype(np.uint64) for q in plane
        ]
        ya, yb = self.bit_to_arith(bits[0], bits[1])
        return ya.reshape(out_shape), yb.reshape(out_shape)

    def bit_to_arith(self, ma: Ring, mb: Ring) -> tuple[Ring, Ring]:
        """m = m_0 xor m_1 xor m_2 in arithmetic form; each m_j (known to two servers) is
        shared without a message, the XORs are ``u + v - 2 u v`` with checked products."""
        zero = np.zeros_like(ma)
        comps = [
            (ma if j == self.i else zero, mb if j == (self.i + 1) % 3 else zero) for j in range(3)
        ]

        def xor(u: tuple[Ring, Ring], v: tuple[Ring, Ring]) -> tuple[Ring, Ring]:
            pa, pb = self._mul(u[0], u[1], v[0], v[1])
            return u[0] + v[0] - _TWO * pa, u[1] + v[1] - _TWO * pb

        return xor(xor(comps[0], comps[1]), comps[2])

    # --- checked openings and zero tests -------------------------------------------------------

    def _open_checked(
        self, arith: tuple[Ring, Ring], boolean: tuple[Ring, Ring]
    ) -> tuple[Ring, Ring]:
        """Open flat arithmetic and boolean sharings together (1 round), checking each
        received component against its hash from the other server that holds it."""
        op = self.new_op()
        na = arith[0].size
        a = np.concatenate([arith[0], boolean[0]])
        b = np.concatenate([arith[1], boolean[1]])
        self.send((self.i + 1) % 3, a)
        self.send((self.i - 1) % 3, _digest(op, b"open", b))
        got = self.recv((self.i - 1) % 3, a.shape)
        h = self.recv((self.i + 1) % 3, (4,))
        if not hmac.compare_digest(h.tobytes(), _digest(op, b"open", got).tobytes()):
            self._fail("an opened share differs between the two servers that hold it")
        ar = arith[0] + arith[1] + got[:na]
        bo = boolean[0] ^ boolean[1] ^ got[na:]
        return ar, bo

    def _zero_check(self, arith: tuple[Ring, Ring], boolean: tuple[Ring, Ring], what: str) -> None:
        """Check that every word of two flat sharings is 0 (arithmetic: sum, boolean: XOR),
        opening nothing (1 round)."""
        op = self.new_op()
        rest = np.concatenate([-(arith[0] + arith[1]), boolean[0] ^ boolean[1]])  # d_{i+2} if 0
        mine = np.concatenate([arith[1], boolean[1]])  # d_{i+1}
        h_rest, h_mine = _digest(op, b"zero", rest), _digest(op, b"zero", mine)
        self.send((self.i + 1) % 3, h_rest)
        self.send((self.i - 1) % 3, h_mine)
        from_prev = self.recv((self.i - 1) % 3, (4,))  # H(-(d_{i-1} + d_i)): should be H(d_{i+1})
        from_next = self.recv((self.i + 1) % 3, (4,))  # H(d_{i+2})
        ok = hmac.compare_digest(from_prev.tobytes(), h_mine.tobytes())
        ok &= hmac.compare_digest(from_next.tobytes(), h_rest.tobytes())
        if not ok:
            self._fail(what)

    def _random(self, n: int) -> tuple[Ring, Ring]:
        """A fresh random replicated sharing: component j from k_j, which P_j and P_{j-1} hold."""
        op = self.new_op()
        return self.own.words(op, 0, n).copy(), self.next.words(op, 0, n).copy()

    # --- the check -------------------------------------------------------------------------------

    def verify(self) -> None:
        """Check every product recorded since the last call (see the module docstring)."""
        ands, muls, ranges = self._ands, self._muls, self._ranges
        self._ands, self._muls, self._ranges = [], [], []
        if not ands and not muls:
            return
        empty = np.zeros(0, np.uint64)
        X = [np.concatenate([r[k] for r in ands]) if ands else empty for k in range(6)]
        Y = [np.concatenate([r[k] for r in muls]) if muls else empty for k in range(6)]
        nb, na = X[0].size, Y[0].size
        kb, bb, cb = bucket_plan(nb, 64, self.stat_bits)
        ka, ba, ca = bucket_plan(na, 1, self.stat_bits)
        tb, ta = kb * bb + cb, ka * ba + ca
        # triples with the semi-honest protocols (they may be wrong: that is what we check)
        ra, rb = self._random(ta), self._random(ta)
        rc = Party.reshare(self, ra[0] * (rb[0] + rb[1]) + ra[1] * rb[0])
        qa, qb = self._random(tb), self._random(tb)
        qc = Party.and_(self, qa[0], qa[1], qb[0], qb[1])
        # a coin no server can predict (each lacks one key) or bias (checked opening), tossed
        # only after the triples are fixed; it permutes the triples
        coin, _ = self._open_checked(self._random(2), (empty, empty))
        prf = Prf(coin.tobytes())
        perm_a = np.argsort(prf.words(1, 0, ta))
        perm_b = np.argsort(prf.words(2, 0, tb))

        def arrange(arr: Ring, perm: Any, kept: int, size: int, c: int) -> tuple[Ring, Ring, Ring]:
            """(opened, kept of each bucket, the others of each bucket as kept x (size-1))."""
            q = arr[perm]
            rest = q[c:].reshape(kept, size)
            return q[:c], rest[:, 0], rest[:, 1:]

        A = [[arrange(t[s], perm_a, ka, ba, ca) for s in (0, 1)] for t in (ra, rb, rc)]
        Q = [[arrange(t[s], perm_b, kb, bb, cb) for s in (0, 1)] for t in (qa, qb, qc)]
        # A[t][s] = (opened, kept, sacrificed) of share s of triple part t (0: a, 1: b, 2: c)

        def cols(
            parts: list[list[tuple[Ring, Ring, Ring]]], pend: list[Ring], n: int, sub: Any
        ) -> list[tuple[Ring, Ring]]:
            out = [(parts[t][0][0], parts[t][1][0]) for t in range(3)]  # opened a, b, c
            for t in (0, 1):  # kept - sacrificed: a - a', b - b'
                out.append(
                    tuple(sub(parts[t][s][1][:, None], parts[t][s][2]).reshape(-1) for s in (0, 1))
                )
            for t, k in ((0, 0), (1, 2)):  # x - a, y - b for the recorded products
                out.append(tuple(sub(pend[k + s], parts[t][s][1][:n]) for s in (0, 1)))
            return out

        arith_cols = cols(A, Y, na, np.subtract)
        bool_cols = cols(Q, X, nb, np.bitwise_xor)
        av, bv = self._open_checked(
            (
                np.concatenate([c[0] for c in arith_cols]),
                np.concatenate([c[1] for c in arith_cols]),
            ),
            (np.concatenate([c[0] for c in bool_cols]), np.concatenate([c[1] for c in bool_cols])),
        )
        o_a, o_b, o_c, rho_s, sig_s, rho_v, sig_v = np.split(
            av, np.cumsum([c[0].size for c in arith_cols])[:-1]
        )
        q_a, q_b, q_c, brho_s, bsig_s, brho_v, bsig_v = np.split(
            bv, np.cumsum([c[0].size for c in bool_cols])[:-1]
        )
        if not (np.array_equal(o_c, o_a * o_b) and np.array_equal(q_c, q_a & q_b)):
            self._fail("an opened multiplication triple is wrong")
        rho_s, sig_s = rho_s.reshape(ka, ba - 1), sig_s.reshape(ka, ba - 1)
        brho_s, bsig_s = brho_s.reshape(kb, bb - 1), bsig_s.reshape(kb, bb - 1)

        # each bucket: c - (rho sigma + rho b' + sigma a' + c') with a = rho + a', b = sigma + b'
        p = self.public(rho_s * sig_s)
        d_sac = [
            (
                A[2][s][1][:, None] - A[2][s][2] - rho_s * A[1][s][2] - sig_s * A[0][s][2] - p[s]
            ).reshape(-1)
            for s in (0, 1)
        ]
        p = self.public(brho_s & bsig_s)
        e_sac = [
            (
                Q[2][s][1][:, None]
                ^ Q[2][s][2]
                ^ (brho_s & Q[1][s][2])
                ^ (bsig_s & Q[0][s][2])
                ^ p[s]
            ).reshape(-1)
            for s in (0, 1)
        ]
        # each recorded product: z - (rho sigma + rho b + sigma a + c) with x = rho + a, y = sigma + b
        p = self.public(rho_v * sig_v)
        d_use = [
            Y[4 + s] - A[2][s][1][:na] - rho_v * A[1][s][1][:na] - sig_v * A[0][s][1][:na] - p[s]
            for s in (0, 1)
        ]
        p = self.public(brho_v & bsig_v)
        e_use = [
            X[4 + s]
            ^ Q[2][s][1][:nb]
            ^ (brho_v & Q[1][s][1][:nb])
            ^ (bsig_v & Q[0][s][1][:nb])
            ^ p[s]
            for s in (0, 1)
        ]
        self._zero_check(
            (np.concatenate([d_sac[0], d_use[0]]), np.concatenate([d_sac[1], d_use[1]])),
            (np.concatenate([e_sac[0], e_use[0]]), np.concatenate([e_sac[1], e_use[1]])),
            "a product or a comparison step is wrong",
        )
        if ranges:
            empty_b = np.zeros(0, np.uint64)
            self._zero_check(
                (np.concatenate([r[0] for r in ranges]), np.concatenate([r[1] for r in ranges])),
                (empty_b, empty_b),
                "a truncated value is not the truncation of its product",
            )
            self.checked_truncs += sum(r[0].size for r in ranges)
        self.checked_ands += nb
        self.checked_muls += na

    # --- opening and release ---------------------------------------------------------------------

    def open(self, a: Ring, b: Ring) -> Ring:
        """Reveal to all three servers, after checking every product so far."""
        self.verify()
        shape = a.shape
        ar, _ = self._open_checked(
            (a.reshape(-1), b.reshape(-1)), (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        )
        return ar.reshape(shape)

    def open_to(self, j: int, a: Ring, b: Ring) -> Ring | None:
        """Reveal to server ``j`` only (its predecessor sends the word, its successor a hash)."""
        self.verify()
        op = self.new_op()
        if self.i == (j - 1) % 3:
            self.send(j, a)
            return None
        if self.i == (j + 1) % 3:
            self.send(j, _digest(op, b"open", b))
            return None
        got = self.recv((j - 1) % 3, a.shape)
        h = self.recv((j + 1) % 3, (4,))
        if not hmac.compare_digest(h.tobytes(), _digest(op, b"open", got).tobytes()):
            self._fail("an opened share differs between the two servers that hold it")
        return a + b + got

    def release(self, result: dict[str, Any]) -> dict[str, Any]:
        """Check everything, then re-share every output with fresh masks (checked too): what
        the servers may hand to receivers. Raises :class:`MpcAbort` on any failed check."""
        self.verify()
        names = sorted(k for k, v in result.items() if isinstance(v, SharedArray))
        if not names:
            return result
        for k in names:
            if result[k].party is not self:
                raise MpcError(f"output {k!r} belongs to another computation")
        old_a = np.concatenate([np.asarray(result[k].a, dtype=np.uint64).ravel() for k in names])
        old_b = np.concatenate([np.asarray(result[k].b, dtype=np.uint64).ravel() for k in names])
        new_a, new_b = Party.reshare(self, old_a.copy())
        empty = np.zeros(0, np.uint64)
        self._zero_check(
            (new_a - old_a, new_b - old_b),
            (empty, empty),
            "the re-shared outputs differ from the computed ones",
        )
        out = dict(result)
        off = 0
        for k in names:
            v = result[k]
            n = v.size
            out[k] = SharedArray(
                self,
                new_a[off : off + n].reshape(v.shape),
                new_b[off : off + n].reshape(v.shape),
                v.frac,
            )
            off += n
        return out
