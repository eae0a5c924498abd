// The dashboard's views. Everything goes through the bus (bus.js): the same topics, requests
// and replies as the CLI; what a login sees is what the broker's ACLs let its account read.
"use strict";

const { Bus, RequestFailed, ROOT } = window.fogmesh;
const { drawLine, sparkline, numericFields } = window.charts;

const $ = (sel) => document.querySelector(sel);
const HISTORY = 60; // samples kept per node and per output field
const MAX_EVENTS = 500;
const MAX_LOG_LINES = 2000;

const state = {
  bus: null,
  tenant: "",
  username: "",
  fleet: false, // the account may read the nodes' own channels (an operator)
  nodes: new Map(),
  usage: new Map(), // node -> {cpu: [], mem: []}
  apps: [],
  workloads: [],
  events: [],
  outputs: new Map(), // stream topic -> [json]
  selected: null, // workload whose panel is open
  follow: null, // {name, request} of a running log follow
  streamPicked: false, // the person chose a stream: keep it
  fieldPicked: false, // and a field
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function banner(text, ok = false) {
  const b = $("#banner");
  b.textContent = text;
  b.className = ok ? "ok" : "";
  b.hidden = !text;
}

// A refused action shows the reply's code and message; a silent service, the timeout.
function failure(what, err) {
  if (err instanceof RequestFailed) {
    const code = err.code === "timeout" ? "timeout" : `refused (${err.code})`;
    banner(`${what}: ${code}: ${err.message}`);
  } else {
    banner(`${what}: ${err}`);
  }
}

async function ask(what, resource, action, body, opts) {
  try {
    return await state.bus.request(state.tenant, resource, action, body, opts);
  } catch (err) {
    failure(what, err);
    throw err;
  }
}

// ---- log in ----------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const username = String(form.get("username")).trim();
  const tenant = String(form.get("tenant") || "").trim() || username;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = String(form.get("url") || "").trim() || `${scheme}://${location.host}/mqtt`;
  $("#login-error").textContent = "connecting...";
  const bus = new Bus();
  try {
    await bus.connect(url, username, String(form.get("password")));
  } catch (err) {
    $("#login-error").textContent = err.message;
    return;
  }
  Object.assign(state, { bus, tenant, username });
  bus.onStatus = (s) => {
    if (s === "connected") banner("");
    else banner(`connection to the broker lost (${s}); retrying`);
  };
  $("#login-error").textContent = "";
  $("#login-view").hidden = true;
  $("#tabs").hidden = false;
  $("#logout").hidden = false;
  show("nodes");
  await subscribeAll();
  refreshAll();
}

async function subscribeAll() {
  const { bus, tenant } = state;
  await bus.subscribe(bus.replyTopic(tenant));
  await bus.subscribe(bus.replyTopic(tenant) + "-s");
  // An operator reads every node's channels; a tenant's ACL refuses them (SUBACK 0x80).
  state.fleet = await bus.subscribe(`${ROOT}/nodes/+/heartbeat`, onHeartbeat);
  if (state.fleet) {
    await bus.subscribe(`${ROOT}/nodes/+/state`, () => later(refreshNodes));
    await bus.subscribe(`${ROOT}/nodes/+/actual`, () => later(refreshWorkloads));
    await bus.subscribe(`${ROOT}/events/fleet/+`, onEvent);
  }
  if (state.fleet && state.username !== tenant) {
    await bus.subscribe(bus.replyTopic(state.username)); // its own requests (a site cache's status)
  }
  await bus.subscribe(`${ROOT}/events/tenants/${tenant}/+`, onEvent);
  await bus.subscribe(`${ROOT}/data/${tenant}/#`, onData);
  $("#who").textContent = `${state.username} as tenant ${tenant}${state.fleet ? " (fleet view)" : ""}`;
  $("#nodes-mode").textContent = state.fleet
    ? "live from each node's heartbeat"
    : "as the registry reports them, refreshed on your events";
}

function refreshAll() {
  refreshNodes();
  refreshApps();
  refreshWorkloads();
  loadEvents();
}

const timers = new Map();
function later(fn, ms = 300) {
  // many pushes in a burst (a deploy's events) make one request
  clearTimeout(timers.get(fn));
  timers.set(fn, setTimeout(fn, ms));
}

function logout() {
  if (state.bus) state.bus.end();
  location.reload();
}

// ---- nodes -------------------------------------------------------------------------------

async function refreshNodes() {
  let reply;
  try {
    reply = await ask("listing nodes", "nodes", "list", { limit: 500 });
  } catch (_err) {
    return;
  }
  state.nodes = new Map(reply.nodes.map((n) => [n.node, n]));
  renderNodes();
  if (!state.fleet) {
    // a tenant reads no heartbeats: each node's recent usage comes from the registry's history
    await Promise.all(reply.nodes.map((n) => loadHistory(n.node)));
    renderNodes();
  }
}

async function loadHistory(node) {
  try {
    const reply = await state.bus.request(state.tenant, "nodes", "get", { node, history: HISTORY });
    state.usage.delete(node);
    for (const sample of reply.node.history || []) pushUsage(node, sample.usage);
  } catch (_err) {
    // the list is shown all the same; the chart stays as it was
  }
}

function pushUsage(node, usage) {
  const u = state.usage.get(node) || { cpu: [], mem: [] };
  u.cpu.push(usage.cpu_percent);
  u.mem.push(usage.memory_total_bytes ? (100 * usage.memory_used_bytes) / usage.memory_total_bytes : 0);
  u.cpu = u.cpu.slice(-HISTORY);
  u.mem = u.mem.slice(-HISTORY);
  state.usage.set(node, u);
}

function onHeartbeat(_topic, hb) {
  if (!hb || typeof hb.node !== "string" || !hb.usage) return;
  pushUsage(hb.node, hb.usage);
  const known = state.nodes.get(hb.node);
  if (known) {
    known.usage = hb.usage;
    known.state = "online";
    renderNodes();
  } else {
    later(refreshNodes);
  }
}

function renderNodes() {
  const body = $("#nodes-table tbody");
  body.replaceChildren();
  for (const n of [...state.nodes.values()].sort((a, b) => a.node.localeCompare(b.node))) {
    const u = state.usage.get(n.node) || { cpu: [], mem: [] };
    const here = state.workloads.filter((w) => w.node === n.node).map((w) => w.name);
    const cpu = n.usage ? `${n.usage.cpu_percent.toFixed(0)}%` : "-";
    const mem = n.usage ? `${(u.mem[u.mem.length - 1] || 0).toFixed(0)}%` : "-";
    body.append(
      el("tr", { "data-node": n.node },
        el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); showNode(n.node); } }, n.node)),
        el("td", { class: `state-${n.state}` }, n.state),
        el("td", {}, (n.facts && n.facts.site) || "-"),
        el("td", {}, (n.facts && n.facts.arch) || "-"),
        el("td", {}, Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-"),
        el("td", {}, sparkline(u.cpu, { min: 0, max: 100 }), cpu),
        el("td", {}, sparkline(u.mem, { min: 0, max: 100, color: "#27a" }), mem),
        el("td", {}, here.join(", ") || "-"),
      ),
    );
  }
}

async function showNode(node) {
  let reply;
  try {
    reply = await ask(`node ${node}`, "nodes", "get", { node, history: 60 });
  } catch (_err) {
    return;
  }
  const info = reply.node || reply;
  const box = $("#node-detail");
  box.hidden = false;
  box.querySelector("h3").textContent = `${node}: ${info.state}`;
  box.querySelector("pre").textContent = JSON.stringify(
    { facts: info.facts, labels: info.labels, location: info.location, usage: info.usage, last_seen: info.last_seen },
    null,
    2,
  );
}

// ---- apps --------------------------------------------------------------------------------

async function refreshApps() {
  let reply;
  try {
    reply = await ask("listing apps", "apps", "list", {});
  } catch (_err) {
    return;
  }
  state.apps = reply.apps;
  const body = $("#apps-table tbody");
  body.replaceChildren();
  for (const a of reply.apps) {
    const scaleInput = el("input", { type: "number", min: "0", value: "1", class: "replicas", size: "3" });
    const component = el("input", { class: "component", placeholder: "component", size: "10" });
    body.append(
      el("tr", { "data-app": a.name },
        el("td", {}, a.name),
        el("td", {}, a.version),
        el("td", {}, a.workloads),
        el("td", {}, a.pending),
        el("td", {},
          component, scaleInput,
          el("button", { class: "scale", onclick: () => scaleApp(a.name, component.value, Number(scaleInput.value)) }, "scale"),
          el("button", { class: "delete", onclick: () => deleteApp(a.name) }, "delete"),
        ),
      ),
    );
  }
  renderStreams();
}

function parseManifest(text) {
  // JSON is YAML too; js-yaml reports the line of a syntax error
  try {
    return { manifest: jsyaml.load(text) };
  } catch (err) {
    const line = err.mark ? err.mark.line : undefined;
    return { error: { loc: line !== undefined ? `line ${line + 1}` : "manifest", msg: err.reason || err.message, line } };
  }
}

// The line of the manifest a dotted field path points at ("components.0.replicas").
function lineOf(lines, loc) {
  let from = 0;
  let found = -1;
  for (const part of loc.split(".")) {
    if (/^\d+$/.test(part)) {
      let seen = -1;
      for (let i = from; i < lines.length; i++) {
        if (/^\s*-\s/.test(lines[i]) && ++seen === Number(part)) { from = i; found = i; break; }
      }
      continue;
    }
    const re = new RegExp(`^\\s*(-\\s+)?["']?${part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*:`);
    for (let i = from; i < lines.length; i++) {
      if (re.test(lines[i])) { from = i; found = i; break; }
    }
  }
  return found;
}

function showFieldErrors(text, errors) {
  const lines = text.split("\n");
  const bad = new Map();
  for (const e of errors) {
    const line = e.line !== undefined ? e.line : lineOf(lines, e.loc);
    if (line >= 0) bad.set(line, [...(bad.get(line) || []), e]);
  }
  $("#manifest-lines").replaceChildren(
    ...lines.map((l, i) => {
      const why = bad.get(i);
      const li = el("li", why ? { class: "bad", "data-loc": why.map((e) => e.loc).join(" ") } : {}, l || " ");
      if (why) li.append(el("span", { class: "why" }, why.map((e) => `${e.loc}: ${e.msg}`).join("; ")));
      return li;
    }),
  );
  $("#field-errors").replaceChildren(
    ...errors.map((e) => el("li", { "data-loc": e.loc }, `${e.loc}: ${e.msg}`)),
  );
}

async function deployApp(action) {
  const text = $("#manifest").value;
  $("#deploy-result").textContent = "";
  showFieldErrors(text, []);
  const parsed = parseManifest(text);
  if (parsed.error) {
    showFieldErrors(text, [parsed.error]);
    return;
  }
  try {
    const reply = await state.bus.request(state.tenant, "apps", action, { manifest: parsed.manifest }, { timeoutMs: 30000 });
    const placed = reply.app.placements.map((p) => `${p.workload} on ${p.node || "pending"}`).join(", ");
    $("#deploy-result").textContent = `${action === "deploy" ? "deployed" : "updated"} ${reply.app.name}: ${placed}`;
    banner("");
    later(refreshApps);
    later(refreshWorkloads);
  } catch (err) {
    const fields = (err.fields || []).map((f) => ({ loc: f.loc.replace(/^manifest\.?/, "") || "manifest", msg: f.msg }));
    showFieldErrors(text, fields);
    $("#deploy-result").textContent = `not ${action === "deploy" ? "deployed" : "updated"}: ${err.code}: ${err.message}`;
    if (!fields.length) failure(action, err);
  }
}

async function scaleApp(app, component, replicas) {
  try {
    await ask(`scaling ${app}`, "apps", "scale", { app, component, replicas }, { timeoutMs: 30000 });
    banner(`scaled ${app}/${component} to ${replicas}`, true);
  } catch (_err) {
    return;
  }
  later(refreshApps);
}

async function deleteApp(app) {
  try {
    const reply = await ask(`deleting ${app}`, "apps", "delete", { app });
    banner(`deleted ${app}: ${reply.removed.length} workloads removed`, true);
  } catch (_err) {
    return;
  }
  later(refreshApps);
  later(refreshWorkloads);
}

// ---- workloads ---------------------------------------------------------------------------

async function refreshWorkloads() {
  let reply;
  try {
    reply = await ask("listing workloads", "workloads", "list", { limit: 500 });
  } catch (_err) {
    return;
  }
  state.workloads = reply.workloads;
  renderWorkloads();
}

function renderWorkloads() {
  const body = $("#workloads-table tbody");
  body.replaceChildren();
  for (const w of state.workloads) {
    const act = (verb) => el("button", { class: verb, onclick: () => command(verb, w.name) }, verb);
    body.append(
      el("tr", { "data-workload": w.name, "data-phase": w.phase },
        el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); openWorkload(w.name); } }, w.name)),
        el("td", {}, w.app),
        el("td", {}, w.component),
        el("td", {}, w.node),
        el("td", { class: `phase-${w.phase}` }, w.phase),
        el("td", {}, w.restarts),
        el("td", {}, (w.reason || "-").slice(0, 60)),
        el("td", {}, act("stop"), act("start"), act("restart"), el("button", { class: "logs", onclick: () => openWorkload(w.name) }, "logs")),
      ),
    );
  }
  renderNodes();
}

async function command(verb, workload) {
  try {
    const reply = await ask(`${verb} ${workload}`, "workloads", verb, { workload }, { timeoutMs: 20000 });
    banner(`${verb} ${workload}: ${reply.message || "done"}`, true);
  } catch (_err) {
    return;
  }
  later(refreshWorkloads);
}

async function openWorkload(name) {
  await endFollow();
  state.selected = name;
  const panel = $("#workload-panel");
  panel.hidden = false;
  panel.querySelector("h3").textContent = `${name}: logs`;
  $("#logs").textContent = "";
  if ($("#follow").checked) return startFollow(name);
  try {
    const reply = await ask(`logs of ${name}`, "workloads", "logs", { workload: name, tail: 200 }, { timeoutMs: 20000 });
    $("#logs").textContent = reply.lines.join("\n");
  } catch (_err) {
    // the banner says why
  }
}

function appendLogs(lines) {
  const pre = $("#logs");
  const all = (pre.textContent ? pre.textContent.split("\n") : []).concat(lines).slice(-MAX_LOG_LINES);
  pre.textContent = all.join("\n");
  pre.scrollTop = pre.scrollHeight;
}

async function startFollow(name) {
  const seen = new Set();
  const followFor = 600;
  const replyTo = state.bus.replyTopic(state.tenant) + "-s";
  const request = state.bus.request(state.tenant, "workloads", "logs",
    { workload: name, tail: 200, follow_s: followFor },
    {
      replyTo,
      timeoutMs: (followFor + 30) * 1000,
      onReply: (reply) => {
        if (!seen.has(reply.seq)) {
          seen.add(reply.seq);
          appendLogs(reply.lines);
        }
        return reply.final;
      },
    });
  state.follow = { name, request };
  try {
    await request;
  } catch (err) {
    if (state.follow && state.follow.request === request) failure(`following ${name}`, err);
  }
}

async function endFollow() {
  const follow = state.follow;
  state.follow = null;
  if (!follow) return;
  // the agent ends the stream when asked by the command's own correlation id
  const pending = [...state.bus.pending.entries()].find(([, p]) => p.onReply);
  if (pending) {
    state.bus.request(state.tenant, "workloads", "logs", { workload: follow.name, end_follow: pending[0] }).catch(() => {});
  }
}

function toBase64(buffer) {
  let text = "";
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

async function upload() {
  const file = $("#upload-file").files[0];
  if (!state.selected || !file) return banner("choose a workload and a file first");
  const content_b64 = toBase64(await file.arrayBuffer());
  try {
    const reply = await ask(`upload to ${state.selected}`, "workloads", "upload",
      { workload: state.selected, path: $("#upload-path").value, content_b64 }, { timeoutMs: 60000 });
    banner(`uploaded ${reply.size} bytes to ${reply.workload}:${reply.path}`, true);
  } catch (_err) {
    // the banner says why
  }
}

async function download() {
  if (!state.selected) return banner("choose a workload first");
  const path = $("#download-path").value;
  try {
    const reply = await ask(`download from ${state.selected}`, "workloads", "download",
      { workload: state.selected, path }, { timeoutMs: 60000 });
    const bytes = Uint8Array.from(atob(reply.content_b64), (c) => c.charCodeAt(0));
    const link = el("a", { href: URL.createObjectURL(new Blob([bytes])), download: path.split("/").pop() || "download" });
    link.click();
    banner(`downloaded ${reply.size} bytes from ${reply.workload}:${reply.path}`, true);
  } catch (_err) {
    // the banner says why
  }
}

// ---- events ------------------------------------------------------------------------------

async function loadEvents() {
  let reply;
  try {
    reply = await ask("listing events", "events", "list", { limit: 500, since: Date.now() / 1000 - 3600 });
  } catch (_err) {
    return;
  }
  state.events = reply.events.sort((a, b) => a.ts - b.ts).slice(-MAX_EVENTS);
  renderEvents();
}

function onEvent(_topic, ev) {
  if (!ev || typeof ev.kind !== "string") return;
  state.events.push(ev);
  state.events = state.events.slice(-MAX_EVENTS);
  renderEvents();
  if (ev.kind === "workload-state" && ev.workload && ev.data && typeof ev.data.to === "string") {
    // the agent's own word, at once: the registry may not have stored it when we ask it
    const known = state.workloads.find((w) => w.name === ev.workload);
    if (known) {
      known.phase = ev.data.to;
      renderWorkloads();
    }
  }
  if (ev.kind === "workload-state" && !$("#artefacts-view").hidden) {
    later(window.artefactsView.refreshCaches, 1000); // a workload starting may have made its site cache a ref
  }
  if (/^(workload|app|node|migration)/.test(ev.kind)) {
    later(refreshWorkloads);
    later(refreshWorkloadsAgain, 3000); // and once more when the registry surely has it
    later(refreshApps);
    if (!state.fleet) later(refreshNodes);
  }
}

function refreshWorkloadsAgain() {
  return refreshWorkloads();
}

function renderEvents() {
  const needle = $("#events-filter").value.trim().toLowerCase();
  const rows = state.events
    .filter((e) => !needle || [e.kind, e.node, e.app, e.workload, e.message].join(" ").toLowerCase().includes(needle))
    .slice(-200)
    .reverse();
  $("#events-table tbody").replaceChildren(
    ...rows.map((e) => {
      const freeze = e.data && e.data.freeze_s !== undefined ? ` (frozen ${Number(e.data.freeze_s).toFixed(2)} s)` : "";
      return el("tr", { "data-kind": e.kind },
        el("td", {}, new Date(e.ts * 1000).toLocaleTimeString()),
        el("td", {}, e.kind), el("td", {}, e.node || "-"), el("td", {}, e.app || "-"),
        el("td", {}, e.workload || "-"), el("td", {}, (e.message || (e.data && (e.data.phase || e.data.to)) || "-") + freeze));
    }),
  );
}

// ---- output ------------------------------------------------------------------------------

function onData(topic, data) {
  if (!data || typeof data !== "object") return;
  const list = state.outputs.get(topic) || [];
  list.push(numericFields(data));
  state.outputs.set(topic, list.slice(-HISTORY * 5));
  if (list.length === 1 && !state.streamPicked) renderStreams();
  renderChart();
}

function renderStreams() {
  const select = $("#stream");
  const current = select.value;
  const topics = [...state.outputs.keys()].filter((t) => Object.keys(state.outputs.get(t).at(-1) || {}).length).sort();
  select.replaceChildren(...topics.map((t) => el("option", { value: t }, t.slice(`${ROOT}/data/${state.tenant}/`.length))));
  const preferred = topics.find((t) => t.endsWith("/out")) || topics[0];
  if (topics.includes(current) && (state.streamPicked || current === preferred)) select.value = current;
  else if (topics.length) select.value = preferred;
  renderFields();
}

function renderFields() {
  const select = $("#field");
  const current = select.value;
  const samples = state.outputs.get($("#stream").value) || [];
  const fields = Object.keys(samples.at(-1) || {}).sort();
  select.replaceChildren(...fields.map((f) => el("option", { value: f }, f)));
  // the sample app's result.mean unless the person chose another field
  if (fields.includes(current) && state.fieldPicked) select.value = current;
  else if (fields.includes("result.mean")) select.value = "result.mean";
  else if (fields.includes(current)) select.value = current;
  renderChart();
}

function renderChart() {
  const samples = state.outputs.get($("#stream").value) || [];
  const field = $("#field").value;
  const values = samples.map((s) => s[field]).filter((v) => typeof v === "number");
  drawLine($("#chart"), values, { label: field });
  const last = samples.at(-1);
  $("#last-output").textContent = last && field in last ? `last ${field}: ${last[field]}` : "no numeric output yet";
}

// ---- wiring ------------------------------------------------------------------------------

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `${view}-view`;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.view === view);
  if (view === "output") renderStreams();
  if (view === "artefacts") window.artefactsView.refresh();
}

// what artefacts.js (the artefacts view) uses of the page
window.dashboard = { state, el, banner, failure };
window.artefactsView.wire();

$("#login").addEventListener("submit", login);
$("#logout").addEventListener("click", logout);
$("#tabs").addEventListener("click", (e) => e.target.dataset.view && show(e.target.dataset.view));
$("#deploy").addEventListener("submit", (e) => { e.preventDefault(); deployApp("deploy"); });
$("#update").addEventListener("click", () => deployApp("update"));
$("#manifest-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) $("#manifest").value = await file.text();
});
$("#upload").addEventListener("click", upload);
$("#download").addEventListener("click", download);
$("#follow").addEventListener("change", () => state.selected && openWorkload(state.selected));
$("#events-filter").addEventListener("input", renderEvents);
$("#stream").addEventListener("change", () => { state.streamPicked = true; renderFields(); });
$("#field").addEventListener("change", () => { state.fieldPicked = true; renderChart(); });
