// Accord's long-lived snarkjs worker: proves and verifies without paying Node start-up per call.
//
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout, matched by
// "id". Requests:
//   {"id": 1, "op": "prove",  "wasm": path, "zkey": path, "input": {...}}
//       -> {"id": 1, "ok": true, "proof": {...}, "publicSignals": [...], "ms": n}
//   {"id": 2, "op": "verify", "vk_id": str, "vk": {...}, "publicSignals": [...], "proof": {...}}
//       -> {"id": 2, "ok": true, "valid": bool, "ms": n}
//       "vk" may be left out once the worker has seen "vk_id" (it keeps the prepared key);
//       an unknown vk_id without "vk" gets {"ok": false, "unknown_vk": true}; replies after
//       the key is prepared carry "vk_ready": true.
//   {"id": 3, "op": "ping"} -> {"id": 3, "ok": true}
// Errors come back as {"id": n, "ok": false, "error": "..."}; the worker keeps serving.
// Proving keys and circuits are read once and kept in memory (keyed by path + mtime).
// snarkjs leaves worker threads alive, so the process ends with process.exit() when stdin closes.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");

function findSnarkjs() {
  const roots = [process.env.ACCORD_ROOT, process.cwd(), __dirname].filter(Boolean);
  for (const start of roots) {
    let d = path.resolve(start);
    for (;;) {
      const cand = path.join(d, "node_modules", "snarkjs");
      if (fs.existsSync(cand)) return require(cand);
      const up = path.dirname(d);
      if (up === d) break;
      d = up;
    }
  }
  return require("snarkjs");
}
const snarkjs = findSnarkjs();

let curvePromise = null;
function bn128() {
  if (!curvePromise) curvePromise = snarkjs.curves.getCurveFromName("bn128");
  return curvePromise;
}

const files = new Map();
function cached(p) {
  const st = fs.statSync(p);
  const key = p + ":" + st.mtimeMs + ":" + st.size;
  let v = files.get(key);
  if (!v) {
    v = { type: "mem", data: new Uint8Array(fs.readFileSync(p)) };
    files.set(key, v);
  }
  return v;
}

// ---- Groth16 verification on prepared keys -------------------------------------------------
//
// snarkjs.groth16.verify parses the key on every call and sends each Miller loop and the
// public-input multi-exponentiation to worker threads; for one proof the thread hops and the
// re-parsing cost more than the arithmetic. Here everything runs synchronously in this
// thread's WebAssembly instance, and all that depends on the key alone is done once per key:
//
// * gamma and delta are "prepared" for the Miller loop (their line coefficients), and the
//   Miller loop of (alpha, beta) is kept, so a proof costs three Miller loops (one of them
//   preparing B) and one final exponentiation;
// * vk_x = IC[0] + sum s_i IC[i] uses fixed-base tables: with P_ij = 2^(8j) IC[i+1], the sum
//   is sum_ij byte_j(s_i) P_ij, a multi-exponentiation with 8-bit scalars -- one bucket
//   pass (a single Pippenger window) over 32 points per input whose scalar bytes are exactly
//   the inputs' 32-byte little-endian encodings laid end to end.
//
// The checks are those of the Python verifier: A and C on G1 (cofactor 1), B on the twist and
// in the order-r subgroup, no point at infinity, public inputs below r. Only a completed
// check answers {valid: false}; anything that cannot be decided is an error reply.

const prepared = new Map(); // vk_id -> prepared key (keys are few: one per circuit)

function big(x) {
  return Array.isArray(x) ? x.map(big) : BigInt(x);
}

function prepareVk(curve, vk) {
  const { G1, G2 } = curve;
  const n = Number(vk.nPublic);
  if (!Array.isArray(vk.IC) || vk.IC.length !== n + 1) throw new Error("vk: IC must have nPublic + 1 points");
  const IC = vk.IC.map((p) => G1.fromObject(big(p)));
  const n8 = G1.F.n8;
  const tables = new Uint8Array(n * 32 * 2 * n8); // affine P_ij, input-major
  for (let i = 0; i < n; i++) {
    let p = IC[i + 1];
    for (let j = 0; j < 32; j++) {
      tables.set(G1.toAffine(p), (i * 32 + j) * 2 * n8);
      for (let k = 0; k < 8; k++) p = G1.double(p);
    }
  }
  const alpha = G1.fromObject(big(vk.vk_alpha_1));
  const beta = G2.fromObject(big(vk.vk_beta_2));
  return {
    n,
    IC0: IC[0],
    tables,
    preGamma: curve.prepareG2(G2.toJacobian(G2.fromObject(big(vk.vk_gamma_2)))),
    preDelta: curve.prepareG2(G2.toJacobian(G2.fromObject(big(vk.vk_delta_2)))),
    mlAlphaBeta: curve.millerLoop(curve.prepareG1(G1.toJacobian(alpha)), curve.prepareG2(G2.toJacobian(beta))),
  };
}

// ---- G2 subgroup membership by the untwist-Frobenius-twist endomorphism -----------------
//
// B must lie in the order-r subgroup of the twist. Multiplying by r (254 bits) was a sixth of a
// verification. BN254's psi(x, y) = (conj(x) eps0, conj(y) eps1), eps0 = xi^((q-1)/3),
// eps1 = xi^((q-1)/2), xi = 9 + u, acts on G2 as multiplication by q, and by the theorem of
// Dai, Lin, Zhao and Zhou (ePrint 2022/348; BN254's seed x meets its conditions x != 4 mod 13,
// x != 92 mod 97) a point P of the twist is in G2 exactly when
//     [x+1]P + psi([x]P) + psi^2([x]P) == psi^3([2x]P),
// one 63-bit multiplication. It is an exact test, not a probabilistic one, so both verifiers
// still decide the same set of proofs; tests compare it with [r]P == 0 on points inside and
// outside G2 (tests/test_zk_subgroup.py). psi is applied to Jacobian coordinates: conj is a
// field automorphism, so (conj(X) eps0, conj(Y) eps1, conj(Z)) is psi of (X/Z^2, Y/Z^3).

const BN_SEED = 4965661367192848881n;
let psiConsts = null;

function psiJacobian(curve, P) {
  const F2 = curve.G2.F;
  const F1 = F2.F;
  const m = 2 * F1.n8;
  if (!psiConsts) {
    const xi = F2.fromObject([9n, 1n]);
    psiConsts = { eps0: F2.exp(xi, (curve.q - 1n) / 3n), eps1: F2.exp(xi, (curve.q - 1n) / 2n) };
  }
  const conj = (a) => {
    const out = new Uint8Array(m);
    out.set(a.subarray(0, F1.n8), 0);
    out.set(F1.neg(a.slice(F1.n8, m)), F1.n8);
    return out;
  };
  const out = new Uint8Array(3 * m);
  out.set(F2.mul(conj(P.subarray(0, m)), psiConsts.eps0), 0);
  out.set(F2.mul(conj(P.subarray(m, 2 * m)), psiConsts.eps1), m);
  out.set(conj(P.subarray(2 * m, 3 * m)), 2 * m);
  return out;
}

function inG2(curve, point) {
  const { G2 } = curve;
  const P = G2.toJacobian(point);
  const xP = G2.timesScalar(P, BN_SEED);
  const p1 = psiJacobian(curve, xP);
  const p2 = psiJacobian(curve, p1);
  const lhs = G2.add(G2.add(G2.add(P, xP), p1), p2);
  const rhs = psiJacobian(curve, psiJacobian(curve, psiJacobian(curve, G2.double(xP))));
  return G2.eq(lhs, rhs);
}

function publicMsm(curve, vk, signals) {
  const { G1, tm } = curve;
  const scalars = new Uint8Array(vk.n * 32);
  for (let i = 0; i < vk.n; i++) {
    let s = BigInt(signals[i]);
    for (let j = 0; j < 32; j++, s >>= 8n) scalars[i * 32 + j] = Number(s & 0xffn);
  }
  tm.startSyncOp();
  try {
    const pBases = tm.allocBuff(vk.tables);
    const pScalars = tm.allocBuff(scalars);
    const pRes = tm.alloc(G1.F.n8 * 3);
    tm.instance.exports.g1m_multiexpAffine_chunk(pBases, pScalars, 1, vk.n * 32, 0, 8, pRes);
    return G1.add(tm.getBuff(pRes, G1.F.n8 * 3), vk.IC0);
  } finally {
    tm.endSyncOp();
  }
}

// One text per number, as the Python verifier reads them: ASCII digits, no leading zero.
const DECIMAL = /^(0|[1-9][0-9]{0,79})$/;

function verifyPrepared(curve, vk, signals, proof) {
  const { G1, G2, Gt } = curve;
  if (!Array.isArray(signals) || signals.length !== vk.n) {
    return { ok: false, error: `expected ${vk.n} public inputs, got ${Array.isArray(signals) ? signals.length : "none"}` };
  }
  for (const s of signals) {
    if (!DECIMAL.test(String(s)) || BigInt(s) >= curve.r) return { ok: false, error: "public input not in [0, r)" };
  }
  // Coordinates as the Python verifier reads them: canonical decimal strings below q, nothing else
  // (the field would quietly reduce x + q to x, giving one proof several encodings).
  const coords = [proof && proof.pi_a, proof && proof.pi_b, proof && proof.pi_c].flat(2);
  if (coords.length !== 12 || !coords.every((v) => DECIMAL.test(String(v)) && BigInt(v) < curve.q)) {
    return { ok: false, error: "proof: coordinates must be decimal integers below q" };
  }
  let A, B, C;
  try {
    A = G1.fromObject(big(proof.pi_a));
    B = G2.fromObject(big(proof.pi_b));
    C = G1.fromObject(big(proof.pi_c));
  } catch (e) {
    return { ok: false, error: "proof: cannot parse: " + String((e && e.message) || e) };
  }
  if (G1.isZero(A) || G2.isZero(B) || G1.isZero(C)) return { ok: false, error: "proof: point at infinity" };
  if (!G1.isValid(A) || !G1.isValid(C) || !G2.isValid(B)) return { ok: false, error: "proof: point not on its curve" };
  if (!inG2(curve, B)) return { ok: true, valid: false, reason: "B not in G2" };
  const vkX = publicMsm(curve, vk, signals);
  // e(-A, B) e(vk_x, gamma) e(C, delta) e(alpha, beta) == 1
  let f = curve.millerLoop(curve.prepareG1(G1.toJacobian(G1.neg(A))), curve.prepareG2(G2.toJacobian(B)));
  f = Gt.mul(f, curve.millerLoop(curve.prepareG1(G1.toJacobian(vkX)), vk.preGamma));
  f = Gt.mul(f, curve.millerLoop(curve.prepareG1(G1.toJacobian(C)), vk.preDelta));
  f = Gt.mul(f, vk.mlAlphaBeta);
  return { ok: true, valid: Gt.eq(curve.finalExponentiation(f), Gt.one) };
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function handle(req) {
  const t0 = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  if (req.op === "prove") {
    const { proof, publicSignals } = await snarkjs.groth16.fullProve(
      req.input, cached(req.wasm), cached(req.zkey));
    return { ok: true, proof, publicSignals, ms: ms() };
  }
  if (req.op === "verify") {
    const curve = await bn128();
    let vk = prepared.get(req.vk_id);
    if (!vk) {
      if (!req.vk) return { ok: false, error: "unknown vk_id", unknown_vk: true };
      vk = prepareVk(curve, req.vk);
      prepared.set(req.vk_id, vk);
    }
    return { ...verifyPrepared(curve, vk, req.publicSignals, req.proof), vk_ready: true, ms: ms() };
  }
  if (req.op === "ping") return { ok: true };
  return { ok: false, error: "unknown op " + String(req.op) };
}

// Requests are served one at a time, in order: proving is CPU-bound, and replies stay simple.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  chain = chain.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      reply({ id: null, ok: false, error: "malformed request: " + e.message });
      return;
    }
    try {
      reply({ id: req.id, ...(await handle(req)) });
    } catch (e) {
      reply({ id: req.id, ok: false, error: String((e && e.message) || e) });
    }
  });
});
rl.on("close", () => { chain.then(() => process.exit(0)); });
