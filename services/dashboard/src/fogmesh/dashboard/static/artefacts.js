// The artefacts view: the tenant's uploads in the store (artefacts/list), a push from the
// browser with the same JSON commands as `fogmesh push` (artefacts/push: chunks with their
// sha256, resumed at the store's offset), and what each site's cache holds: an operator asks
// each cache (fm/v1/ops/cache-{site}/status), a tenant the store, which asks the site's cache
// for that tenant's refs only (artefacts/cache-status). docs/dashboard.md, docs/artefacts.md.
(() => {
"use strict";

const { ROOT, RequestFailed } = window.fogmesh;
const sha256 = window.sha256; // js-sha256 (vendor/sha256.min.js): incremental, and needs no secure origin
const $ = (sel) => document.querySelector(sel);
const READ = 1 << 20; // bytes hashed per read of the file
const CORRUPT_TRIES = 5; // as fogmesh push: a chunk refused as corrupt is sent again
const CACHE_TIMEOUT_MS = 15000;

const view = { list: null, caches: new Map(), pushing: false }; // site -> {status} | {error}

function dash() {
  return window.dashboard; // page.js: state, el, banner, failure
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do { v /= 1024; u++; } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "-";
}

function short(ref) {
  return ref.slice(0, "sha256:".length + 12);
}

// ---- the store ----------------------------------------------------------------------------

async function refreshList() {
  const { state, failure } = dash();
  try {
    view.list = await state.bus.request(state.tenant, "artefacts", "list", {});
  } catch (err) {
    failure("listing artefacts", err);
    return;
  }
  renderList();
}

function renderList() {
  const { el } = dash();
  const list = view.list;
  if (!list) return;
  $("#artefacts-quota").textContent = `${bytes(list.used_bytes)} of ${bytes(list.quota_bytes)} used`;
  const rows = [
    ...list.uploads.map((u) =>
      el("tr", { "data-ref": u.ref, "data-state": "partial" },
        el("td", { title: u.ref }, short(u.ref)), el("td", {}, "-"), el("td", {}, "-"),
        el("td", {}, bytes(u.size)),
        el("td", { class: "phase-pending" }, `partial: ${bytes(u.next_offset)} of ${bytes(u.size)} (offset ${u.next_offset})`),
        el("td", {}, when(u.updated)), el("td", {}))),
    ...list.artefacts.map((a) =>
      el("tr", { "data-ref": a.ref, "data-state": "complete" },
        el("td", { title: a.ref }, el("code", {}, short(a.ref))), el("td", {}, a.name || "-"),
        el("td", {}, a.kind), el("td", {}, bytes(a.size)),
        el("td", { class: "phase-running" }, "complete"), el("td", {}, when(a.created)),
        el("td", {},
          el("button", { class: "copy", onclick: () => copyRef(a.ref) }, "copy ref"),
          el("button", { class: "delete", onclick: () => deleteRef(a.ref) }, "delete")))),
  ];
  $("#artefacts-table tbody").replaceChildren(...rows);
}

function copyRef(ref) {
  const { banner } = dash();
  if (navigator.clipboard) navigator.clipboard.writeText(ref).catch(() => {});
  banner(`ref: ${ref}`, true);
}

async function deleteRef(ref) {
  const { state, failure, banner } = dash();
  try {
    view.list = await state.bus.request(state.tenant, "artefacts", "delete", { ref });
  } catch (err) {
    failure(`deleting ${short(ref)}`, err);
    return;
  }
  banner(`deleted ${ref} from the store (caches keep it until evicted)`, true);
  renderList();
}

// ---- a push ---------------------------------------------------------------------------------

async function fileSha256(file, progress) {
  const hash = sha256.create();
  for (let at = 0; at < file.size; at += READ) {
    hash.update(new Uint8Array(await file.slice(at, at + READ).arrayBuffer()));
    progress(Math.min(at + READ, file.size));
  }
  return hash.hex();
}

function toBase64(data) {
  let text = "";
  for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
  return btoa(text);
}

function showProgress(done, total, label) {
  const bar = $("#artefact-progress");
  bar.max = Math.max(total, 1);
  bar.value = done;
  bar.dataset.done = String(done);
  $("#artefact-rate").textContent = label;
}

async function push() {
  const { state, banner } = dash();
  const file = $("#artefact-file").files[0];
  if (!file) return banner("choose a file to push first");
  if (view.pushing) return banner("a push is running; wait for it to end");
  view.pushing = true;
  $("#artefact-push").disabled = true;
  $("#artefact-result").textContent = "";
  const kind = $("#artefact-kind").value;
  let total = "";
  const send = (offset, data, sha256) =>
    state.bus.request(state.tenant, "artefacts", "push", {
      name: file.name.slice(0, 256), kind, size: file.size, sha256_total: total,
      offset, data_b64: data ? toBase64(data) : "", sha256: sha256 || null,
    });
  try {
    total = await fileSha256(file, (n) => showProgress(n, file.size, `checking ${bytes(n)} of ${bytes(file.size)}`));
    let status = await send(0); // where does an upload of these bytes stand?
    const started = performance.now();
    const from = status.next_offset; // a resumed push counts only what it sends
    $("#artefact-progress").dataset.from = String(from);
    while (!status.complete) {
      const offset = status.next_offset;
      const secs = (performance.now() - started) / 1000;
      const rate = secs > 0 ? (offset - from) / secs : 0;
      showProgress(offset, file.size, `${bytes(offset)} of ${bytes(file.size)}, ${bytes(Math.round(rate))}/s`);
      const data = new Uint8Array(await file.slice(offset, offset + status.chunk_bytes).arrayBuffer());
      status = await sendChunk(send, offset, data);
    }
    const secs = Math.max((performance.now() - started) / 1000, 0.001);
    showProgress(file.size, file.size, `${bytes(file.size)} in ${secs.toFixed(1)} s, ${bytes(Math.round((file.size - from) / secs))}/s`);
    $("#artefact-result").textContent = `pushed ${file.name}: ${status.ref}`;
    $("#artefact-result").dataset.ref = status.ref;
    banner("");
  } catch (err) {
    const why = err instanceof RequestFailed ? `${err.code}: ${err.message}` : String(err);
    $("#artefact-result").textContent = `not pushed (push again to resume): ${why}`;
  } finally {
    view.pushing = false;
    $("#artefact-push").disabled = false;
    refreshList();
  }
}

async function sendChunk(send, offset, data) {
  const digest = sha256(data);
  for (let i = 1; ; i++) {
    try {
      return await send(offset, data, digest);
    } catch (err) {
      // refused as corrupt: send it again, as fogmesh push does
      if (!(err instanceof RequestFailed) || err.code !== "conflict" || i >= CORRUPT_TRIES) throw err;
    }
  }
}

// ---- the site caches ------------------------------------------------------------------------

function sites() {
  const { state } = dash();
  const found = new Set();
  for (const n of state.nodes.values()) {
    const site = (n.facts && n.facts.site) || (n.labels && n.labels.site);
    if (site) found.add(site);
  }
  return [...found].sort();
}

async function askCache(site) {
  const { state } = dash();
  if (state.fleet) {
    // an operator asks the site's cache itself, for every tenant
    return state.bus.requestOn(`${ROOT}/ops/cache-${site}/status`, {}, {
      replyTo: state.bus.replyTopic(state.username),
      timeoutMs: CACHE_TIMEOUT_MS,
      what: `the cache of ${site}`,
    });
  }
  return state.bus.request(state.tenant, "artefacts", "cache-status", { site }, { timeoutMs: CACHE_TIMEOUT_MS });
}

async function refreshCaches() {
  const asked = sites();
  await Promise.all(asked.map(async (site) => {
    try {
      view.caches.set(site, { status: await askCache(site) });
    } catch (err) {
      view.caches.set(site, { error: err instanceof RequestFailed ? `${err.code}: ${err.message}` : String(err) });
    }
  }));
  for (const site of [...view.caches.keys()]) if (!asked.includes(site)) view.caches.delete(site);
  renderCaches();
}

function renderCaches() {
  const { el, state } = dash();
  const rows = [];
  const summary = [];
  for (const [site, got] of [...view.caches.entries()].sort()) {
    if (got.error) {
      summary.push(el("li", { "data-site": site, class: "error" }, `${site}: no answer (${got.error})`));
      continue;
    }
    const s = got.status;
    const whose = state.fleet ? "" : " (your refs)";
    summary.push(el("li", { "data-site": site }, `${site}: ${bytes(s.used_bytes)}${whose} of ${bytes(s.max_bytes)}, ${s.artefacts.length} cached, ${s.pulls.length} pulling`));
    for (const p of s.pulls) {
      rows.push(el("tr", { "data-site": site, "data-ref": p.ref, "data-state": "pulling" },
        el("td", {}, site), el("td", { title: p.ref }, el("code", {}, short(p.ref))), el("td", {}, "-"),
        el("td", {}, bytes(p.size)),
        el("td", { class: "phase-pending" }, el("progress", { max: String(Math.max(p.size, 1)), value: String(p.offset) }), ` pulling: ${bytes(p.offset)} of ${bytes(p.size)}`),
        el("td", {}, p.tenants.join(", ")), el("td", {}, "-")));
    }
    for (const a of s.artefacts) {
      rows.push(el("tr", { "data-site": site, "data-ref": a.ref, "data-state": "cached" },
        el("td", {}, site), el("td", { title: a.ref }, el("code", {}, short(a.ref))), el("td", {}, a.name || "-"),
        el("td", {}, bytes(a.size)), el("td", { class: "phase-running" }, "cached"),
        el("td", {}, a.tenants.join(", ")), el("td", {}, when(a.last_used))));
    }
  }
  $("#caches-summary").replaceChildren(...summary);
  $("#caches-table tbody").replaceChildren(...rows);
}

function refresh() {
  refreshList();
  refreshCaches();
}

function wire() {
  $("#artefact-push").addEventListener("click", push);
  $("#artefacts-refresh").addEventListener("click", refresh);
}

window.artefactsView = { refresh, refreshCaches, wire };
})();
