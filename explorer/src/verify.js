// The browser's light-client checks of one committed transaction, the same checks as
// accord.light.verify (certificate, tx_hash, tx_signature, receipt, tx_inclusion), computed
// here from the canonical bytes the node serves: nothing the node computed is believed.
// Trust root: the genesis validators' BLS keys, each with its proof of possession checked
// here (that is what makes adding keys of one message's signers safe against rogue keys).

import { bls12_381 } from "@noble/curves/bls12-381.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { CanonError, concat, decode, encode, eqBytes, fromHex, toHex } from "./canon.js";

const HEADER_DOMAIN = "accord/header/v2";
const VOTE_DOMAIN = "accord/vote/v1";
const TX_DOMAIN = "accord/tx/v1";
const PHASE_C = 2n;
const MAX_COUNT = 60000;
const SIG_DST = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
const POP_DST = "BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);
const ROOT = Uint8Array.of(4);

const bls = bls12_381.longSignatures; // min-pk: keys in G1 (48 bytes), signatures in G2 (96)
const G1 = bls12_381.G1.Point;

export class CheckFailed extends Error {
  constructor(check, message) {
    super(message);
    this.check = check;
  }
}

function fail(check, message) {
  throw new CheckFailed(check, message);
}

function bytesOf(check, hex, what) {
  try {
    return fromHex(hex);
  } catch {
    fail(check, `${what} is not hex`);
  }
}

function decodeAs(check, hex, what) {
  try {
    return decode(bytesOf(check, hex, what));
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    fail(check, `${what} is not a canonical encoding (${e instanceof CanonError ? e.message : e})`);
  }
}

/** Validators from /v1/validators, each key's proof of possession checked; quorum computed
 * here as n - f with f the largest number such that 3f < n (every validator weighs one). */
export function trustRoot(validatorsResp, chainId) {
  const keys = [];
  for (const v of validatorsResp.validators) {
    const pk = bytesOf("trust_root", v.bls_public_key, "a validator key");
    let ok = false;
    try {
      const point = G1.fromBytes(pk);
      ok = bls.verify(bls.Signature.fromBytes(fromHex(v.pop)), bls.hash(pk, POP_DST), point);
      keys.push(point);
    } catch {
      ok = false;
    }
    if (!ok) fail("trust_root", `validator ${v.index}'s proof of possession does not verify`);
  }
  const n = keys.length;
  if (n === 0) fail("trust_root", "no validators");
  const f = Math.floor((n - 1) / 3);
  return { chainId, keys, n, quorum: n - f };
}

/** A header from its canonical bytes; the JSON fields must say the same. */
export function checkHeader(root, headerJson, height) {
  const raw = bytesOf("header", headerJson.raw, "the header");
  const f = decodeAs("header", headerJson.raw, "the header");
  if (!Array.isArray(f) || f.length !== 12 || f[0] !== HEADER_DOMAIN) fail("header", "not a header");
  const h = {
    chain_id: f[1], height: f[2], round: f[3], parent_hash: f[4], tx_root: f[5],
    state_root: f[6], tx_count: f[7], proposer: f[8], time_ms: f[9], sortition: f[10],
    body_hash: f[11], hash: sha256(raw),
  };
  if (h.chain_id !== root.chainId) fail("header", `the header is for chain ${h.chain_id}`);
  if (h.height !== BigInt(height)) fail("header", `asked for height ${height}, got ${h.height}`);
  for (const k of ["hash", "parent_hash", "tx_root", "state_root", "sortition", "body_hash"]) {
    if (headerJson[k] !== toHex(h[k])) fail("header", `the header's ${k} is not what its bytes say`);
  }
  for (const k of ["height", "round", "tx_count", "proposer", "time_ms"]) {
    if (BigInt(headerJson[k]) !== h[k]) fail("header", `the header's ${k} is not what its bytes say`);
  }
  return h;
}

/** The certificate: for exactly this header, phase C, a quorum of distinct genesis validators,
 * and an aggregate BLS signature (signer i counted count_i times) that verifies. */
export function checkCertificate(root, header, certJson) {
  if (!certJson) fail("certificate", `header ${header.height} comes without a certificate`);
  const c = decodeAs("certificate", certJson.raw, "the certificate");
  if (!Array.isArray(c) || c.length !== 6) fail("certificate", "not a certificate");
  const [height, round, phase, blockHash, signers, signature] = c;
  if (height !== header.height || !(blockHash instanceof Uint8Array) || !eqBytes(blockHash, header.hash)) {
    fail("certificate", `the certificate is not for header ${header.height}`);
  }
  if (phase !== PHASE_C) fail("certificate", `certificate has phase ${phase}`);
  if (!(signers instanceof Uint8Array) || !(signature instanceof Uint8Array)) fail("certificate", "malformed");
  const n = root.n;
  const counts = new Array(n).fill(0);
  if (signers.length === 2 * n) {
    for (let i = 0; i < n; i++) {
      counts[i] = signers[2 * i] | (signers[2 * i + 1] << 8);
      if (counts[i] > MAX_COUNT) fail("certificate", "certificate counts out of range");
    }
  } else if (signers.length === Math.floor((n + 7) / 8)) {
    for (let i = 0; i < 8 * signers.length; i++) {
      if ((signers[i >> 3] >> (i & 7)) & 1) {
        if (i >= n) fail("certificate", "certificate names a validator that does not exist");
        counts[i] = 1;
      }
    }
  } else {
    fail("certificate", "certificate signer bitmap has the wrong size");
  }
  const indices = counts.flatMap((k, i) => (k > 0 ? [i] : []));
  if (indices.length < root.quorum) {
    fail("certificate", `certificate has ${indices.length} signers, quorum is ${root.quorum}`);
  }
  const msg = encode([VOTE_DOMAIN, root.chainId, height, round, phase, blockHash]);
  let ok = false;
  try {
    let agg = G1.ZERO;
    for (const i of indices) agg = agg.add(root.keys[i].multiply(BigInt(counts[i])));
    ok = bls.verify(bls.Signature.fromBytes(signature), bls.hash(msg, SIG_DST), agg);
  } catch {
    ok = false;
  }
  if (!ok) fail("certificate", "certificate signature does not verify");
  return { signers: indices, n };
}

function merkleCheck(root, leaf, index, count, siblings) {
  if (!(index >= 0n && index < count)) fail("tx_inclusion", `leaf index ${index} outside ${count} leaves`);
  let h = sha256(concat([LEAF, leaf]));
  let used = 0;
  let i = index;
  let n = count;
  while (n > 1n) {
    if (!(i === n - 1n && n % 2n === 1n)) {
      if (used >= siblings.length) fail("tx_inclusion", "Merkle proof is too short");
      const s = bytesOf("tx_inclusion", siblings[used], "a proof sibling");
      if (s.length !== 32) fail("tx_inclusion", "Merkle proof sibling must be 32 bytes");
      used += 1;
      h = i & 1n ? sha256(concat([NODE, s, h])) : sha256(concat([NODE, h, s]));
    }
    i /= 2n;
    n = (n + 1n) / 2n;
  }
  if (used !== siblings.length) fail("tx_inclusion", "Merkle proof is too long");
  const top = sha256(concat([ROOT, encodeU64(count), h]));
  if (!eqBytes(top, root)) fail("tx_inclusion", "Merkle proof does not lead to the header's tx root");
}

function encodeU64(x) {
  const out = new Uint8Array(8);
  for (let k = 7; k >= 0; k--) {
    out[k] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** Every check of one committed transaction. ``st``: /v1/txs/{hash}?tx=true; ``hr``:
 * /v1/headers/{height}. Returns {ok, checks: [{check, ok, message}], signers, n, tx, receipt}. */
export function verifyTx(root, txHashHex, st, hr) {
  const checks = [];
  const out = { ok: false, checks, signers: null, n: root.n, tx: null, receipt: null };
  const step = (name, fn) => {
    try {
      const r = fn();
      checks.push({ check: name, ok: true, message: "" });
      return r;
    } catch (e) {
      const check = e instanceof CheckFailed ? e.check : name;
      checks.push({ check, ok: false, message: e.message || String(e) });
      throw e;
    }
  };
  try {
    if (st.status !== "committed" || !st.tx || !st.receipt || !st.proof) {
      step("response", () => fail("response", "a committed transaction must come with tx, receipt and proof"));
    }
    const header = step("header", () => checkHeader(root, hr.header, st.height));
    const cert = step("certificate", () => checkCertificate(root, header, hr.certificate));
    out.signers = cert.signers;
    const txRaw = bytesOf("tx_hash", st.tx.raw, "the transaction");
    const tx = step("tx_hash", () => {
      const want = bytesOf("tx_hash", txHashHex, "the tx hash");
      if (!eqBytes(sha256(txRaw), want)) fail("tx_hash", "the transaction served hashes to another hash");
      const f = decodeAs("tx_hash", st.tx.raw, "the transaction");
      if (!Array.isArray(f) || f.length !== 8) fail("tx_hash", "not a transaction");
      const [chain_id, contract, method, args, public_key, nonce, gas_limit, signature] = f;
      return { chain_id, contract, method, args, public_key, nonce, gas_limit, signature, hash: want };
    });
    step("tx_signature", () => {
      if (tx.chain_id !== root.chainId) fail("tx_signature", `the transaction is for chain ${tx.chain_id}`);
      const signed = encode([TX_DOMAIN, tx.chain_id, tx.contract, tx.method, tx.args, tx.public_key, tx.nonce, tx.gas_limit]);
      let ok = false;
      try {
        ok = ed25519.verify(tx.signature, signed, tx.public_key);
      } catch {
        ok = false;
      }
      if (!ok) fail("tx_signature", "the transaction's Ed25519 signature does not verify");
    });
    const receipt = step("receipt", () => {
      const f = decodeAs("receipt", st.receipt.raw, "the receipt");
      if (!Array.isArray(f) || f.length < 7) fail("receipt", "not a receipt");
      if (!(f[0] instanceof Uint8Array) || !eqBytes(f[0], tx.hash)) fail("receipt", "the receipt names another transaction");
      const [, ok, gas_used, result, error_code, error, events] = f;
      if (st.receipt.ok !== ok || BigInt(st.receipt.gas_used) !== gas_used) {
        fail("receipt", "the receipt's JSON fields are not what its bytes say");
      }
      return { ok, gas_used, result, error_code, error, events, hash: sha256(bytesOf("receipt", st.receipt.raw, "the receipt")) };
    });
    step("tx_inclusion", () => {
      const p = st.proof;
      if (st.block_hash !== toHex(header.hash) || BigInt(st.height) !== header.height || st.index !== p.index) {
        fail("tx_inclusion", "the block hash or index the node names disagrees with the certified header");
      }
      const leaf = sha256(encode([tx.hash, receipt.hash]));
      if (p.leaf !== toHex(leaf) || p.tx_root !== toHex(header.tx_root) || BigInt(p.count) !== header.tx_count) {
        fail("tx_inclusion", "the proof's leaf, root or count is not what the tx, receipt and header give");
      }
      merkleCheck(header.tx_root, leaf, BigInt(p.index), header.tx_count, p.siblings);
    });
    out.tx = tx;
    out.receipt = receipt;
    out.ok = true;
  } catch {
    out.ok = false;
  }
  return out;
}

// --- contract state (accord.base.merkle.verify_state_proof, accord.light.verify.check_state) ---

const STATE_LEAF = Uint8Array.of(2);
const STATE_NODE = Uint8Array.of(3);
const MAX_DEPTH = 64;
const te = new TextEncoder();

/** The runtime's storage key of a contract's bytes key: b"c/" + name + b"/" + b"b" + key. */
export function stateKey(contract, key) {
  return concat([te.encode(`c/${contract}/b`), key]);
}

function nibble(path, d) {
  const b = path[d >> 1];
  return d & 1 ? b & 15 : b >> 4;
}

function commonNibbles(a, b) {
  let n = 0;
  while (n < 64 && nibble(a, n) === nibble(b, n)) n += 1;
  return n;
}

function popcount(x) {
  let c = 0;
  for (let v = x; v; v &= v - 1) c += 1;
  return c;
}

/** That ``key`` maps to ``value`` (null: is absent) under ``root``, from the canonical proof
 * [levels, other]; refuses every proof a canonical tree could not produce, as the ledger does. */
export function stateProofCheck(root, key, value, proofRaw) {
  const C = "state_proof";
  const p = decodeAs(C, proofRaw, "the state proof");
  if (!Array.isArray(p) || p.length !== 2 || !Array.isArray(p[0]) || p[0].length > MAX_DEPTH) fail(C, "not a state proof");
  const [levels, other] = p;
  const path = sha256(key);
  let h;
  let emptySpot = false;
  if (value !== null) {
    if (other !== null) fail(C, "a membership proof names no other leaf");
    h = sha256(concat([STATE_LEAF, path, sha256(value)]));
  } else if (other === null) {
    h = new Uint8Array(32);
    emptySpot = true;
  } else {
    if (!Array.isArray(other) || other.length !== 2 || !other.every((x) => x instanceof Uint8Array && x.length === 32)) {
      fail(C, "malformed leaf in state proof");
    }
    if (eqBytes(other[0], path)) fail(C, "the leaf in a non-membership proof is the key's own");
    if (commonNibbles(other[0], path) < levels.length) fail(C, "the leaf in a non-membership proof is not on the key's path");
    h = sha256(concat([STATE_LEAF, other[0], other[1]]));
  }
  const bottom = levels.length - 1;
  for (let d = bottom; d >= 0; d--) {
    const level = levels[d];
    if (!Array.isArray(level) || level.length !== 2 || typeof level[0] !== "bigint" || !Array.isArray(level[1])) fail(C, "malformed state proof level");
    const [bm, sibs] = level;
    if (bm < 0n || bm >= 65536n) fail(C, "state proof bitmap out of range");
    if (!sibs.every((x) => x instanceof Uint8Array && x.length === 32)) fail(C, "state proof sibling must be 32 bytes");
    const bitmap = Number(bm);
    const bit = 1 << nibble(path, d);
    const count = popcount(bitmap);
    const bmBytes = Uint8Array.of(bitmap >> 8, bitmap & 255);
    if (d === bottom && emptySpot) {
      if (bitmap & bit) fail(C, "state proof claims an empty spot its bitmap fills");
      if (count === 0) fail(C, "state proof has a node without children");
      if (sibs.length !== count) fail(C, "state proof siblings disagree with the bitmap");
      h = sha256(concat([STATE_NODE, bmBytes, ...sibs]));
      continue;
    }
    if (!(bitmap & bit)) fail(C, "state proof bitmap lacks the path's child");
    if (sibs.length !== count - 1) fail(C, "state proof siblings disagree with the bitmap");
    if (count === 1 && d === bottom) fail(C, "state proof has a node whose only child is a leaf");
    const before = popcount(bitmap & (bit - 1));
    h = sha256(concat([STATE_NODE, bmBytes, ...sibs.slice(0, before), h, ...sibs.slice(before)]));
  }
  if (!eqBytes(h, root)) fail(C, "state proof does not lead to the header's state root");
}

/** A contract state value the node served (``sr``: /v1/state/{contract}/{key hex}) checked
 * against a certified header (``hr``: /v1/headers/{sr.height}): header, certificate, that the
 * proof is for exactly this key, and the proof to the header's state root. Returns {ok,
 * checks, signers, n, height, value} with ``value`` decoded from the proved bytes. */
export function verifyState(root, contract, key, sr, hr) {
  const checks = [];
  const out = { ok: false, checks, signers: null, n: root.n, height: null, value: null };
  const step = (name, fn) => {
    try {
      const r = fn();
      checks.push({ check: name, ok: true, message: "" });
      return r;
    } catch (e) {
      checks.push({ check: e instanceof CheckFailed ? e.check : name, ok: false, message: e.message || String(e) });
      throw e;
    }
  };
  try {
    const header = step("header", () => {
      const h = checkHeader(root, sr.header, sr.height);
      if (hr.header.raw !== sr.header.raw) fail("header", "the state's header is not the one served with the certificate");
      return h;
    });
    out.signers = step("certificate", () => checkCertificate(root, header, hr.certificate)).signers;
    const skey = stateKey(contract, key);
    const value = step("state_key", () => {
      if (sr.contract !== contract || sr.state_key !== toHex(skey)) fail("state_key", `the proof is for state key ${sr.state_key}, not ${toHex(skey)}`);
      return sr.value === null ? null : bytesOf("state_key", sr.value, "the value");
    });
    step("state_proof", () => stateProofCheck(header.state_root, skey, value, sr.proof_raw));
    out.value = value === null ? null : step("state_value", () => decodeAs("state_value", sr.value, "the value"));
    out.height = header.height;
    out.ok = true;
  } catch {
    out.ok = false;
  }
  return out;
}
