// The ledger's canonical encoding (MessagePack, shortest forms, map keys sorted by UTF-8
// bytes), as accord.encoding defines it. Decoding is strict in the same way: the bytes must be
// exactly the re-encoding of the value they decode to, so a hash over them covers one value.
// Integers decode to BigInt (the ledger's integers reach 2**64 - 1).

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

export class CanonError extends Error {}

const MAX_DEPTH = 100;

export function decode(bytes) {
  const r = { b: bytes, i: 0 };
  const v = read(r, 0);
  if (r.i !== bytes.length) throw new CanonError(`${bytes.length - r.i} trailing bytes`);
  const again = encode(v);
  if (!eqBytes(again, bytes)) throw new CanonError("bytes are not the canonical encoding");
  return v;
}

function need(r, n) {
  if (r.i + n > r.b.length) throw new CanonError("the bytes end inside a value");
}

function uint(r, n) {
  need(r, n);
  let x = 0n;
  for (let k = 0; k < n; k++) x = (x << 8n) | BigInt(r.b[r.i + k]);
  r.i += n;
  return x;
}

function sint(r, n) {
  const u = uint(r, n);
  const bits = BigInt(8 * n);
  return u >= 1n << (bits - 1n) ? u - (1n << bits) : u;
}

function take(r, n) {
  need(r, n);
  const out = r.b.slice(r.i, r.i + n);
  r.i += n;
  return out;
}

function str(r, n) {
  try {
    return td.decode(take(r, n));
  } catch (e) {
    if (e instanceof CanonError) throw e;
    throw new CanonError("a string is not valid UTF-8");
  }
}

function list(r, n, depth) {
  if (depth >= MAX_DEPTH) throw new CanonError("value nests too deeply");
  if (n > r.b.length - r.i) throw new CanonError("a list is longer than its bytes");
  const out = [];
  for (let k = 0; k < n; k++) out.push(read(r, depth + 1));
  return out;
}

function map(r, n, depth) {
  if (depth >= MAX_DEPTH) throw new CanonError("value nests too deeply");
  if (n > r.b.length - r.i) throw new CanonError("a map is longer than its bytes");
  const out = new Map();
  for (let k = 0; k < n; k++) {
    const key = read(r, depth + 1);
    if (typeof key !== "string") throw new CanonError("map keys must be strings");
    if (out.has(key)) throw new CanonError("a map key is repeated");
    out.set(key, read(r, depth + 1));
  }
  return out;
}

function read(r, depth) {
  need(r, 1);
  const t = r.b[r.i++];
  if (t <= 0x7f) return BigInt(t);
  if (t >= 0xe0) return BigInt(t - 0x100);
  if (t >= 0xa0 && t <= 0xbf) return str(r, t & 0x1f);
  if (t >= 0x90 && t <= 0x9f) return list(r, t & 0x0f, depth);
  if (t >= 0x80 && t <= 0x8f) return map(r, t & 0x0f, depth);
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return take(r, Number(uint(r, 1)));
    case 0xc5: return take(r, Number(uint(r, 2)));
    case 0xc6: return take(r, Number(uint(r, 4)));
    case 0xcc: return uint(r, 1);
    case 0xcd: return uint(r, 2);
    case 0xce: return uint(r, 4);
    case 0xcf: return uint(r, 8);
    case 0xd0: return sint(r, 1);
    case 0xd1: return sint(r, 2);
    case 0xd2: return sint(r, 4);
    case 0xd3: return sint(r, 8);
    case 0xd9: return str(r, Number(uint(r, 1)));
    case 0xda: return str(r, Number(uint(r, 2)));
    case 0xdb: return str(r, Number(uint(r, 4)));
    case 0xdc: return list(r, Number(uint(r, 2)), depth);
    case 0xdd: return list(r, Number(uint(r, 4)), depth);
    case 0xde: return map(r, Number(uint(r, 2)), depth);
    case 0xdf: return map(r, Number(uint(r, 4)), depth);
    default: throw new CanonError(`type byte 0x${t.toString(16)} is not in the canonical format`);
  }
}

function be(x, n) {
  const out = new Uint8Array(n);
  let v = BigInt.asUintN(8 * n, x);
  for (let k = n - 1; k >= 0; k--) {
    out[k] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function head(small, codes, len) {
  // small: [base, limit] of the fix form or null; codes: [[limit, code, size], ...]
  if (small && len < small[1]) return Uint8Array.of(small[0] | len);
  for (const [limit, code, size] of codes) {
    if (len < limit) return concat([Uint8Array.of(code), be(BigInt(len), size)]);
  }
  throw new CanonError("too long to encode");
}

export function encode(v) {
  const parts = [];
  put(v, parts);
  return concat(parts);
}

function put(v, out) {
  if (v === null || v === undefined) return out.push(Uint8Array.of(0xc0));
  if (v === false) return out.push(Uint8Array.of(0xc2));
  if (v === true) return out.push(Uint8Array.of(0xc3));
  if (typeof v === "number") v = BigInt(v);
  if (typeof v === "bigint") {
    if (v >= 0n) {
      if (v < 128n) return out.push(Uint8Array.of(Number(v)));
      if (v < 1n << 8n) return out.push(Uint8Array.of(0xcc), be(v, 1));
      if (v < 1n << 16n) return out.push(Uint8Array.of(0xcd), be(v, 2));
      if (v < 1n << 32n) return out.push(Uint8Array.of(0xce), be(v, 4));
      if (v < 1n << 64n) return out.push(Uint8Array.of(0xcf), be(v, 8));
      throw new CanonError("integer out of range");
    }
    if (v >= -32n) return out.push(Uint8Array.of(Number(v + 256n)));
    if (v >= -128n) return out.push(Uint8Array.of(0xd0), be(v, 1));
    if (v >= -32768n) return out.push(Uint8Array.of(0xd1), be(v, 2));
    if (v >= -(1n << 31n)) return out.push(Uint8Array.of(0xd2), be(v, 4));
    if (v >= -(1n << 63n)) return out.push(Uint8Array.of(0xd3), be(v, 8));
    throw new CanonError("integer out of range");
  }
  if (typeof v === "string") {
    const b = te.encode(v);
    out.push(head([0xa0, 32], [[256, 0xd9, 1], [65536, 0xda, 2], [2 ** 32, 0xdb, 4]], b.length), b);
    return;
  }
  if (v instanceof Uint8Array) {
    out.push(head(null, [[256, 0xc4, 1], [65536, 0xc5, 2], [2 ** 32, 0xc6, 4]], v.length), v);
    return;
  }
  if (Array.isArray(v)) {
    out.push(head([0x90, 16], [[65536, 0xdc, 2], [2 ** 32, 0xdd, 4]], v.length));
    for (const x of v) put(x, out);
    return;
  }
  const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
  entries.sort((a, b) => cmpBytes(te.encode(a[0]), te.encode(b[0])));
  out.push(head([0x80, 16], [[65536, 0xde, 2], [2 ** 32, 0xdf, 4]], entries.length));
  for (const [k, x] of entries) {
    put(k, out);
    put(x, out);
  }
}

export function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

function cmpBytes(a, b) {
  for (let k = 0; k < Math.min(a.length, b.length); k++) if (a[k] !== b[k]) return a[k] - b[k];
  return a.length - b.length;
}

export function eqBytes(a, b) {
  return a.length === b.length && cmpBytes(a, b) === 0;
}

export function fromHex(h) {
  if (typeof h !== "string" || h.length % 2 || !/^[0-9a-fA-F]*$/.test(h)) {
    throw new CanonError("not hex");
  }
  const out = new Uint8Array(h.length / 2);
  for (let k = 0; k < out.length; k++) out[k] = parseInt(h.substr(2 * k, 2), 16);
  return out;
}

export function toHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
