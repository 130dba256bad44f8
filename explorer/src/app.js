// The explorer page: a hash router over a few views, all read from this node's API, with the
// live view fed by /v1/stream. Every node-supplied string is put in the page as text (the DOM
// builder below never parses HTML), and every list is one bounded page.

import { decode, encode, eqBytes, fromHex, toHex } from "./canon.js";
import { trustRoot, verifyState, verifyTx } from "./verify.js";

const $ = (sel) => document.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElementNS(
    ["svg", "polyline", "line", "text", "rect"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag,
  );
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const link = (href, text) => h("a", { href }, text);
const short = (x) => (typeof x === "string" && x.length > 20 ? `${x.slice(0, 10)}…${x.slice(-6)}` : String(x));
const hashLink = (kind, x) => link(`#/${kind}/${x}`, short(x));

class ApiError extends Error {}

async function api(path, init) {
  const r = await fetch(path, init);
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`${path}: not JSON (${r.status})`);
  }
  if (!r.ok) throw new ApiError(body?.error?.message || `${path}: HTTP ${r.status}`);
  return body;
}

function table(headers, rows, attrs) {
  return h(
    "table",
    attrs || {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function card(title, value, id) {
  return h("div", { class: "card" }, h("div", { class: "card-title" }, title), h("div", { class: "card-value", id }, value));
}

// JSON view of a decoded canonical value (BigInt, Uint8Array, Map) for display.
function show(v) {
  if (v instanceof Uint8Array) return `0x${toHex(v)}`;
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return `[${v.map(show).join(", ")}]`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${k}: ${show(x)}`).join(", ")}}`;
  if (v && typeof v === "object") {
    if ("$bytes" in v) return `0x${v.$bytes}`;
    return `{${Object.entries(v).map(([k, x]) => `${k}: ${show(x)}`).join(", ")}}`;
  }
  return JSON.stringify(v);
}

// --- charts (SVG polylines: no library needed for two series) ---------------------------

function chart(title, values, unit) {
  const w = 460;
  const ht = 120;
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${ht - (v / max) * (ht - 10)}`).join(" ");
  const last = values.length ? values[values.length - 1] : 0;
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, `${title}: ${last.toFixed(1)} ${unit} (max ${max.toFixed(1)})`),
    h("svg", { viewBox: `0 0 ${w} ${ht}`, width: w, height: ht, role: "img" },
      h("rect", { x: 0, y: 0, width: w, height: ht, class: "chart-bg" }),
      h("polyline", { points: pts, class: "chart-line" })),
  );
}

// --- trust root -------------------------------------------------------------------------

let trust = null;

async function getTrust() {
  if (trust) return trust;
  const [g, vs] = await Promise.all([api("/v1/genesis"), api("/v1/validators")]);
  const root = trustRoot(vs, g.genesis.chain_id);
  // Pinned on first use: a node that later serves other validator keys is caught here.
  const pinKey = `accord-trust:${g.genesis.chain_id}`;
  const keys = vs.validators.map((v) => v.bls_public_key).join(",");
  const pinned = localStorage.getItem(pinKey);
  if (pinned === null) localStorage.setItem(pinKey, keys);
  else if (pinned !== keys) throw new Error("the validator keys differ from the ones pinned on this browser's first visit");
  trust = { root, genesisHash: g.hash, chainId: g.genesis.chain_id, genesis: g.genesis };
  return trust;
}

// --- views ------------------------------------------------------------------------------

const views = {};
let liveSocket = null;
let liveTimer = null;

views.live = async (main) => {
  const st = await api("/v1/status");
  main.append(
    h("h2", {}, "Live chain"),
    h("div", { class: "cards" },
      card("Height", st.height, "height"),
      card("Round", st.round ?? "-", "round"),
      card("Peers", Array.isArray(st.peers) ? st.peers.length : "-", "peers"),
      card("Mempool", st.mempool ?? "-", "mempool"),
      card("Healthy", st.healthy ? "yes" : `no: ${st.fault}`, "healthy")),
    h("div", { id: "charts", class: "charts" }),
    h("h3", {}, "Validators"),
    h("div", { id: "validators" }),
    h("h3", {}, "Latest blocks"),
    h("div", { id: "latest" }),
  );
  const refresh = async () => {
    const [c, bl, s2] = await Promise.all([api("/v1/explorer/chain?limit=100"), api("/v1/blocks?limit=10"), api("/v1/status")]);
    $("#height").textContent = String(c.head_height);
    $("#round").textContent = String(s2.round ?? "-");
    $("#mempool").textContent = String(s2.mempool ?? "-");
    const tps = c.window.map((p) => (p.interval_ms > 0 ? (1000 * p.tx_count) / p.interval_ms : 0));
    const lat = c.window.map((p) => p.interval_ms / 1000);
    $("#charts").replaceChildren(chart("Transactions per second", tps, "tx/s"), chart("Block interval", lat, "s"));
    const head = c.head_height;
    $("#validators").replaceChildren(table(
      ["#", "name", "last vote (height)", "last proposed", `votes in last ${c.window.length} blocks`, "status"],
      c.validators.map((v) => [v.index, v.name, v.last_signed ?? "-", v.last_proposed ?? "-", v.signed,
        v.last_signed !== null && head - v.last_signed <= 3 ? "voting" : "not seen recently"]),
    ));
    $("#latest").replaceChildren(blockTable(bl.blocks));
  };
  await refresh();
  let pending = false;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  liveSocket = new WebSocket(`${proto}://${location.host}/v1/stream?events=false`);
  liveSocket.onmessage = (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    if (msg.type === "block") {
      $("#height").textContent = String(msg.height);
      if (!pending) {
        pending = true; // at most one refresh a second however fast blocks come
        liveTimer = setTimeout(() => { pending = false; refresh().catch(() => {}); }, 1000);
      }
    }
  };
};

function blockTable(blocks) {
  return table(
    ["height", "hash", "time", "txs", "proposer", "signers"],
    blocks.map((b) => [link(`#/block/${b.height}`, b.height), short(b.hash), new Date(b.time_ms).toISOString().slice(11, 19),
      b.tx_count, b.proposer, b.signers.length]),
    { class: "blocks" },
  );
}

views.blocks = async (main, args, query) => {
  const before = query.get("before");
  const page = await api(`/v1/blocks?limit=25${before ? `&before=${encodeURIComponent(before)}` : ""}`);
  main.append(
    h("h2", {}, "Blocks"),
    blockTable(page.blocks),
    h("p", {}, page.next_before !== null ? link(`#/blocks?before=${page.next_before}`, "older blocks →") : "genesis reached"),
  );
};

const MAX_ROWS = 200;

views.block = async (main, [height]) => {
  const b = await api(`/v1/blocks/${encodeURIComponent(height)}?receipts=true`);
  const hd = b.header;
  main.append(
    h("h2", {}, `Block ${b.height}`),
    kv([["hash", b.hash], ["parent", b.height > 0 ? link(`#/block/${b.height - 1}`, hd.parent_hash) : hd.parent_hash],
      ["round", hd.round], ["proposer", hd.proposer], ["time", new Date(hd.time_ms).toISOString()],
      ["tx root", hd.tx_root], ["state root", hd.state_root], ["transactions", hd.tx_count],
      ["certificate signers", b.certificate ? b.certificate.signer_indices.join(", ") : "none (genesis)"]]),
    h("h3", {}, "Transactions"),
    table(["#", "hash", "contract.method", "sender", "ok", "gas", "events"],
      b.txs.slice(0, MAX_ROWS).map((t, i) => {
        const r = b.receipts?.[i];
        return [i, hashLink("tx", t.hash), `${t.contract}.${t.method}`, hashLink("account", t.sender), r ? (r.ok ? "ok" : r.error_code) : "?",
          r ? r.gas_used : "?", r ? r.events.map((e) => e.name).join(", ") : ""];
      })),
    b.txs.length > MAX_ROWS ? h("p", {}, `first ${MAX_ROWS} of ${b.txs.length} transactions shown`) : null,
  );
};

views.tx = async (main, [hash]) => {
  const st = await api(`/v1/txs/${encodeURIComponent(hash)}?tx=true`);
  main.append(h("h2", {}, "Transaction"), h("p", { class: "mono" }, hash));
  if (st.status !== "committed") {
    main.append(h("p", { id: "tx-status" }, `status: ${st.status}`));
    return;
  }
  const box = h("div", { id: "verify", class: "verify pending" }, "verifying in this browser…");
  main.append(box);
  const hr = await api(`/v1/headers/${st.height}`);
  let result;
  try {
    const t = await getTrust();
    result = verifyTx(t.root, hash.toLowerCase(), st, hr);
  } catch (e) {
    result = { ok: false, checks: [{ check: "trust_root", ok: false, message: e.message }], n: 0, signers: null };
  }
  const failed = result.checks.find((c) => !c.ok);
  box.className = `verify ${result.ok ? "ok" : "bad"}`;
  box.replaceChildren(
    h("strong", { id: "verify-status" }, result.ok
      ? `✔ verified against ${result.signers.length} of ${result.n} validator signatures`
      : `✘ check failed: ${failed.check}: ${failed.message}`),
    h("ul", { class: "checks" }, result.checks.map((c) => h("li", { class: c.ok ? "ok" : "bad", "data-check": c.check }, `${c.ok ? "✔" : "✘"} ${c.check}${c.message ? `: ${c.message}` : ""}`))),
  );
  // The details come from the verified canonical bytes when the checks passed.
  const tx = result.ok ? result.tx : null;
  const rc = result.ok ? result.receipt : null;
  main.append(
    kv([["block", link(`#/block/${st.height}`, `${st.height} (index ${st.index})`)],
      ["contract.method", tx ? `${tx.contract}.${tx.method}` : `${st.tx.contract}.${st.tx.method}`],
      ["sender", hashLink("account", st.tx.sender)], ["nonce", st.tx.nonce],
      ["arguments", tx ? show(tx.args) : show(st.tx.args)],
      ["outcome", (rc ? rc.ok : st.receipt.ok) ? "ok" : `${st.receipt.error_code}: ${st.receipt.error}`],
      ["gas used", rc ? rc.gas_used.toString() : st.receipt.gas_used], ["gas limit", st.tx.gas_limit],
      ["result", rc ? show(rc.result) : show(st.receipt.result)]]),
    h("h3", {}, "Events"),
    table(["contract", "name", "data"], (rc ? rc.events.map((e) => [e[0], e[1], show(e[2])]) : st.receipt.events.map((e) => [e.contract, e.name, show(e.data)]))),
  );
};

// Transaction lists page by the index's (height, index) cursor, carried in the page's hash.
function txPage(query) {
  const before = query.get("before");
  return `limit=50${before ? `&before=${encodeURIComponent(before)}` : ""}`;
}

views.account = async (main, [addr], query) => {
  const [acc, txs, t] = await Promise.all([api(`/v1/accounts/${encodeURIComponent(addr)}`), api(`/v1/accounts/${encodeURIComponent(addr)}/txs?${txPage(query)}`), getTrust().catch(() => null)]);
  const balances = [];
  for (const c of t ? t.genesis.contracts : []) {
    try {
      const r = await api(`/v1/query/${encodeURIComponent(c.name)}/balance_of`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ args: { account: { $bytes: addr } } }),
      });
      if (typeof r.result === "number") balances.push([c.name, r.result]);
    } catch {
      // not a token contract
    }
  }
  main.append(
    h("h2", {}, "Account"), h("p", { class: "mono" }, acc.address),
    kv([["nonce (committed)", acc.nonce], ["next nonce", acc.next_nonce]]),
    h("h3", {}, "Token balances"), table(["token", "balance"], balances, { id: "balances" }),
    h("h3", {}, "Recent transactions"), txTable(txs, `#/account/${addr}`),
  );
};

function txTable(list, here) {
  const older = list.next_before ? link(`${here}?before=${encodeURIComponent(list.next_before)}`, "older transactions →") : null;
  return h("div", {},
    table(["height", "hash", "contract.method", "sender", "ok", "gas"],
      list.txs.map((t) => [link(`#/block/${t.height}`, t.height), hashLink("tx", t.tx_hash), `${t.contract}.${t.method}`, hashLink("account", t.sender), t.ok ? "ok" : "failed", t.gas_used]),
      { class: "txs" }),
    older ? h("p", { id: "older-txs" }, older) : null,
    h("p", { class: "note" }, `index covers blocks ${list.indexed_from}–${list.indexed_to}`));
}

views.contract = async (main, [name], query) => {
  const txs = await api(`/v1/contracts/${encodeURIComponent(name)}/txs?${txPage(query)}`);
  main.append(h("h2", {}, `Contract ${name}`), h("h3", {}, "Recent transactions"), txTable(txs, `#/contract/${encodeURIComponent(name)}`));
};

views.shielded = async (main) => {
  const p = await api("/v1/explorer/shielded?limit=20");
  main.append(h("h2", {}, "Shielded pool"));
  if (!p.present) {
    main.append(h("p", {}, "this chain has no shielded pool"));
    return;
  }
  const out = h("span", { id: "nullifier-result" });
  const input = h("input", { id: "nullifier", placeholder: "nullifier (64 hex digits)", size: 70 });
  main.append(
    h("div", { class: "cards" }, card("Notes", p.note_count, "notes"), card("Nullifiers spent (indexed)", p.nullifiers_seen, "nullifiers")),
    kv([["tree root", p.root]]),
    h("p", {}, input, h("button", { onclick: async () => {
      try {
        const r = await api("/v1/query/shielded_pool/is_spent", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ args: { nullifier: { $bytes: input.value.trim() } } }) });
        out.textContent = r.result ? "spent" : "not spent";
      } catch (e) {
        out.textContent = e.message;
      }
    } }, "is it spent?"), " ", out),
    h("h3", {}, "Recent pool transactions (public data only)"),
    table(["height", "tx", "nullifiers", "commitments", "deposit", "withdrawal"],
      p.recent.map((x) => [x.height, hashLink("tx", x.tx_hash), x.nullifiers.map(short).join(" "), x.commitments.map(short).join(" "), x.deposit, x.withdrawal])),
  );
};

views.oracle = async (main) => {
  const o = await api("/v1/explorer/oracle?limit=50");
  main.append(h("h2", {}, "MPC oracle requests"),
    table(["id", "program", "contract", "filed at", "deadline", "status", "answered at", "error"],
      o.requests.map((r) => [short(r.id), r.program, r.contract, r.height, r.deadline, r.status, r.answered_at ?? "-", r.error])),
    h("p", { class: "note" }, `index covers blocks ${o.indexed_from}–${o.indexed_to}`));
};

views.health = async (main) => {
  const [st, text] = await Promise.all([api("/v1/status"), fetch("/metrics").then((r) => r.text())]);
  const rows = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    rows.push([line.slice(0, cut), line.slice(cut + 1)]);
    if (rows.length >= 400) break;
  }
  const filter = h("input", { id: "metric-filter", placeholder: "filter metrics" });
  const body = h("div", {});
  const render = () => body.replaceChildren(table(["metric", "value"], rows.filter((r) => r[0].includes(filter.value))));
  filter.addEventListener("input", render);
  render();
  main.append(h("h2", {}, "Node health"),
    h("div", { class: "cards" }, card("Healthy", st.healthy ? "yes" : "no", "health-ok"), card("Height", st.height), card("Mempool", st.mempool ?? "-"),
      card("Peers", Array.isArray(st.peers) ? st.peers.length : "-")),
    st.fault ? h("p", { class: "bad" }, `fault: ${st.fault}`) : null,
    h("h3", {}, "Metrics"), filter, body);
};

// --- governance -------------------------------------------------------------------------

// Re-runs ``fn`` after committed blocks, at most once a second however fast they come (a
// proposal's status changes with the height alone: expiry, activation). Closed by route().
function followBlocks(fn) {
  let pending = false;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  liveSocket = new WebSocket(`${proto}://${location.host}/v1/stream?events=false`);
  liveSocket.onmessage = (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    if (msg.type === "block" && !pending) {
      pending = true;
      liveTimer = setTimeout(() => { pending = false; fn().catch(() => {}); }, 1000);
    }
  };
}

const statusBadge = (st) => h("span", { class: `status status-${st}`, "data-status": st }, st.replace("_", " "));

function actionSummary(action) {
  const rest = Object.entries(action || {}).filter(([k]) => k !== "kind").map(([k, v]) => `${k}=${show(v)}`).join(" ");
  return rest.length > 80 ? `${rest.slice(0, 80)}…` : rest;
}

function memberName(inForce, account) {
  const v = inForce ? inForce.validators.find((x) => x.account === account) : null;
  return v ? `${v.name} (${short(account)})` : short(account);
}

function inForceSection(f) {
  return h("div", { id: "in-force" },
    h("h3", {}, `In force at the head (height ${f.height})`),
    h("div", { class: "cards" }, card("Validators", f.validators.length, "gov-validators"), card("Members", f.members.length, "gov-members"),
      card("Threshold", `${f.threshold} of ${f.members.length}`, "gov-threshold"), card("Contracts", f.contracts.filter((c) => c.status === "active").length)),
    h("div", { class: "columns" },
      h("div", {}, h("h4", {}, "Validators"), table(["#", "name", "BLS key", "member account"],
        f.validators.map((v, i) => [i, v.name, short(v.bls_public_key), v.account ? hashLink("account", v.account) : "none"]), { id: "gov-validator-table" })),
      h("div", {}, h("h4", {}, "Consensus parameters"), kv(Object.entries(f.consensus).map(([k, v]) => [k, String(v)])))),
    h("h4", {}, "Contracts"),
    table(["name", "code hash", "status"], f.contracts.map((c) => [link(`#/contract/${encodeURIComponent(c.name)}`, c.name), h("span", { class: "mono" }, c.code_hash), c.status]), { id: "gov-contracts" }),
    Object.keys(f.circuits).length ? h("div", {}, h("h4", {}, "Circuits"), table(["name", "verification key hash", "transcript hash"],
      Object.entries(f.circuits).map(([n, c]) => [n, short(show(c.vk_hash)), c.transcript_hash ? short(show(c.transcript_hash)) : "-"]))) : null,
    kv([["regulator key", f.regulator ? show(f.regulator) : "none"],
      ["MPC servers", Array.isArray(f.mpc_servers) && f.mpc_servers.length ? f.mpc_servers.map((x) => `${x.host}:${x.port}`).join(", ") : "none"]]),
  );
}

views.governance = async (main, args, query) => {
  const before = query.get("before");
  const url = `/v1/explorer/governance?limit=20${before ? `&before=${encodeURIComponent(before)}` : ""}`;
  const body = h("div", { id: "gov" });
  main.append(h("h2", {}, "Governance"), body);
  const render = async () => {
    const g = await api(url);
    if (!g.present) {
      body.replaceChildren(h("p", {}, "this chain has no governance contract"));
      return;
    }
    const f = g.in_force;
    body.replaceChildren(
      h("h3", {}, `Proposals (${g.total})`),
      table(["#", "id", "action", "proposer", "approvals", "status", "activation", "expires"],
        g.proposals.map((p) => [p.number, link(`#/proposal/${p.id}`, short(p.id)), h("span", {}, h("strong", {}, p.kind), " ", actionSummary(p.action)),
          memberName(f, p.proposer), `${p.counted} / ${p.threshold}`, statusBadge(p.status),
          p.effective !== null ? `at ${p.effective}` : p.activation !== null ? `asked ${p.activation}` : "pass + delay", p.expires]),
        { id: "proposals" }),
      h("p", {}, g.next_before !== null ? link(`#/governance?before=${g.next_before}`, "older proposals →") : g.total ? "first proposal reached" : "no proposal yet"),
      inForceSection(f),
    );
  };
  await render();
  followBlocks(render);
};

// Tagged JSON (what the API serves) back to a canonical value, to compare with proved bytes.
function fromTagged(j) {
  if (Array.isArray(j)) return j.map(fromTagged);
  if (j && typeof j === "object") {
    if ("$bytes" in j) return fromHex(j.$bytes);
    const inner = "$map" in j ? j.$map : j;
    return new Map(Object.entries(inner).map(([k, v]) => [k, fromTagged(v)]));
  }
  return typeof j === "number" ? BigInt(j) : j;
}

const RAW_STATUS = { open: ["open", "expired"], passed: ["passed", "in_force"], failed: ["failed"] };

// What the node said about a proposal, against its record proved at height ``height``:
// every field it showed must be the record's, and a status the height decides must hold.
function checkRecord(want, p, rec, height) {
  const num = (x) => (x === null || x === undefined ? null : BigInt(x));
  const bad = (field) => { throw new Error(`the node's ${field} is not what the proven record says`); };
  if (!(rec instanceof Map)) bad("proposal");
  if (p.id !== want || toHex(rec.get("id")) !== want) bad("id");
  if (toHex(rec.get("proposer")) !== p.proposer) bad("proposer");
  const approvals = rec.get("approvals").map(toHex);
  if (approvals.length !== p.approvals.length || approvals.some((a, i) => a !== p.approvals[i].member)) bad("approvals");
  for (const k of ["created", "expires", "activation", "passed_at", "effective"]) if (num(p[k]) !== rec.get(k)) bad(k);
  if (!eqBytes(encode(fromTagged(p.action)), encode(rec.get("action")))) bad("action");
  if (!(RAW_STATUS[rec.get("status")] || []).includes(p.status)) bad("status");
  if (p.status === "in_force" && !(rec.get("effective") <= height)) bad("status");
  if (p.status === "expired" && !(rec.get("expires") < height)) bad("status");
  if ((rec.get("reason") || "") !== p.reason) bad("reason");
}

// The proposal as the node shows it, checked against its record proved under a certified
// header. The two reads are apart: a block committed in between (an approval, say) makes them
// differ honestly, so a mismatch is believed only when both were read at the same height.
async function verifiedProposal(id) {
  const t = await getTrust();
  // The key is computed here from the id asked for: never the node's say-so.
  const want = id.toLowerCase().replace(/^0x/, "");
  const key = Uint8Array.of(0x70, ...fromHex(want)); // the contract's b"p" + id
  for (let attempt = 0; ; attempt++) {
    const doc = await api(`/v1/explorer/governance/${encodeURIComponent(id)}`);
    const p = doc.proposal;
    let result;
    try {
      const sr = await api(`/v1/state/governance/${toHex(key)}`);
      const hr = await api(`/v1/headers/${encodeURIComponent(sr.height)}`);
      result = verifyState(t.root, "governance", key, sr, hr);
      if (result.ok && sr.height !== doc.head_height && attempt < 3) {
        try {
          checkRecord(want, p, result.value, result.height);
        } catch {
          continue; // a block came between the reads: read both again
        }
      }
    } catch (e) {
      result = { ok: false, checks: [{ check: "response", ok: false, message: e.message }], n: t.root.n, signers: null };
    }
    if (result.ok) {
      try {
        if (result.value === null) throw new Error("the state proves no such proposal");
        checkRecord(want, p, result.value, result.height);
        result.checks.push({ check: "record", ok: true, message: "" });
      } catch (e) {
        result.ok = false;
        result.checks.push({ check: "record", ok: false, message: e.message });
      }
    }
    return { doc, result };
  }
}

views.proposal = async (main, [id]) => {
  const body = h("div", { id: "proposal" });
  main.append(h("h2", {}, "Proposal"), h("p", { class: "mono" }, id), body);
  const render = async () => {
    let doc;
    let result;
    try {
      ({ doc, result } = await verifiedProposal(id));
    } catch (e) {
      if (e instanceof ApiError) throw e;
      doc = await api(`/v1/explorer/governance/${encodeURIComponent(id)}`);
      result = { ok: false, checks: [{ check: "trust_root", ok: false, message: e.message }], n: 0, signers: null };
    }
    const p = doc.proposal;
    const failed = result.checks.find((c) => !c.ok);
    const proposer = p.approvals[0]?.validator ? `${p.approvals[0].validator} (${short(p.proposer)})` : short(p.proposer);
    body.replaceChildren(
      h("div", { id: "verify", class: `verify ${result.ok ? "ok" : "bad"}` },
        h("strong", { id: "verify-status" }, result.ok
          ? `✔ record verified against ${result.signers.length} of ${result.n} validator signatures (state at height ${result.height})`
          : `✘ check failed: ${failed.check}: ${failed.message}`),
        h("ul", { class: "checks" }, result.checks.map((c) => h("li", { class: c.ok ? "ok" : "bad", "data-check": c.check }, `${c.ok ? "✔" : "✘"} ${c.check}${c.message ? `: ${c.message}` : ""}`)))),
      kv([["action", h("span", {}, h("strong", {}, p.kind), " ", actionSummary(p.action))], ["status", statusBadge(p.status)],
        ["approvals", h("span", { id: "approval-count" }, `${p.counted} of ${p.threshold} needed (members in force at ${doc.head_height})`)], ["proposer", proposer],
        ["made at", link(`#/block/${p.created}`, p.created)], ["expires", `after block ${p.expires}`],
        ["activation asked", p.activation ?? "the passing height + the genesis delay"],
        ["passed at", p.passed_at !== null ? link(`#/block/${p.passed_at}`, p.passed_at) : "-"],
        ["in force from", p.effective ?? "-"], ["reason", p.reason || "-"], ["full action", show(p.action)]]),
      h("h3", {}, "Approvals"),
      table(["#", "member", "validator", "counts at the head"],
        p.approvals.map((a, i) => [i === 0 ? "proposer" : i, hashLink("account", a.member), a.validator ?? "no longer a validator", a.counted ? "yes" : "no"]),
        { id: "approvals" }),
    );
  };
  await render();
  followBlocks(render);
};

// --- search and routing -----------------------------------------------------------------

async function search(q) {
  const r = await api(`/v1/search?q=${encodeURIComponent(q)}`);
  const to = { block: "block", tx: "tx", pending_tx: "tx", account: "account", contract: "contract" }[r.kind];
  if (to) location.hash = `#/${to}/${r.target}`;
  else $("#search-result").textContent = `nothing found for “${q}”`;
}

async function route() {
  if (liveSocket) {
    liveSocket.close();
    liveSocket = null;
  }
  clearTimeout(liveTimer);
  const [path, qs] = (location.hash.slice(1) || "/").split("?");
  const [name, ...args] = path.split("/").filter(Boolean);
  const view = views[name || "live"];
  const main = $("#main");
  main.replaceChildren();
  $("#search-result").textContent = "";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${name || ""}`);
  if (!view) {
    main.append(h("p", {}, "no such page"));
    return;
  }
  try {
    await view(main, args.map(decodeURIComponent), new URLSearchParams(qs || ""));
  } catch (e) {
    main.append(h("p", { class: "error", id: "error" }, e.message || String(e)));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  $("#search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("#search").value.trim();
    if (q) search(q).catch((e) => { $("#search-result").textContent = e.message; });
  });
  getTrust().then((t) => { $("#chain").textContent = `${t.chainId} · genesis ${short(t.genesisHash)} · ${t.root.n} validators, quorum ${t.root.quorum}`; })
    .catch((e) => { $("#chain").textContent = `trust root: ${e.message}`; });
  route();
});

// exposed for debugging in the console only
window.accordExplorer = { decode, fromHex, toHex };
