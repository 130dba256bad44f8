// Accord's long-lived snarkjs worker: proves and verifies without paying Node start-up per call.
//
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout, matched by
// "id". Requests:
//   {"id": 1, "op": "prove",  "wasm": path, "zkey": path, "input": {...}}
//       -> {"id": 1, "ok": true, "proof": {...}, "publicSignals": [...], "ms": n}
//   {"id": 2, "op": "verify", "vk": {...}, "publicSignals": [...], "proof": {...}}
//       -> {"id": 2, "ok": true, "valid": bool, "ms": n}
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
    // snarkjs checks that the points are on their curves and the public inputs below r; we
    // add the G2 subgroup check for B (G2 has a cofactor), as the Python verifier does.
    // Only a completed check may answer "B not in G2": an exception here (malformed B, or a
    // fault inside the worker) is an error reply, never a verdict about the proof, so that
    // the caller can tell a refused proof from a worker that could not decide.
    const curve = await bn128();
    let b;
    try {
      b = curve.G2.fromObject(req.proof.pi_b.map((c) => c.map((v) => BigInt(v))));
    } catch (e) {
      return { ok: false, error: "pi_b: cannot parse: " + String((e && e.message) || e) };
    }
    const inSubgroup = curve.G2.isValid(b) && curve.G2.isZero(curve.G2.timesScalar(b, curve.r));
    if (!inSubgroup) return { ok: true, valid: false, reason: "B not in G2", ms: ms() };
    const valid = await snarkjs.groth16.verify(req.vk, req.publicSignals, req.proof);
    return { ok: true, valid: valid === true, ms: ms() };
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
