// The dashboard's page: log in, subscribe to what the account may read, and wire the views
// (nodes.js, apps.js, workloads.js, events.js, output.js, artefacts.js; what they share is in
// page.js). Everything goes through the bus (bus.js): the same topics, requests and replies as
// the CLI; what a login sees is what the broker's ACLs let its account read.
(() => {
"use strict";

const { Bus, ROOT } = window.fogmesh;
const { $, state, banner, later } = window.dashboard;
const { nodesView, appsView, workloadsView, eventsView, outputView, artefactsView } = window;

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
  state.fleet = await bus.subscribe(`${ROOT}/nodes/+/heartbeat`, nodesView.onHeartbeat);
  if (state.fleet) {
    await bus.subscribe(`${ROOT}/nodes/+/state`, () => later(nodesView.refresh));
    await bus.subscribe(`${ROOT}/nodes/+/actual`, () => later(workloadsView.refresh));
    await bus.subscribe(`${ROOT}/events/fleet/+`, eventsView.onEvent);
  }
  if (state.fleet && state.username !== tenant) {
    await bus.subscribe(bus.replyTopic(state.username)); // its own requests (a site cache's status)
  }
  await bus.subscribe(`${ROOT}/events/tenants/${tenant}/+`, eventsView.onEvent);
  await bus.subscribe(`${ROOT}/data/${tenant}/#`, outputView.onData);
  $("#who").textContent = `${state.username} as tenant ${tenant}${state.fleet ? " (fleet view)" : ""}`;
  $("#nodes-mode").textContent = state.fleet
    ? "live from each node's heartbeat"
    : "as the registry reports them, refreshed on your events";
}

function refreshAll() {
  nodesView.refresh();
  appsView.refresh();
  workloadsView.refresh();
  eventsView.load();
}

function logout() {
  if (state.bus) state.bus.end();
  location.reload();
}

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `${view}-view`;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.view === view);
  if (view === "output") outputView.renderStreams();
  if (view === "artefacts") artefactsView.refresh();
}

// ---- wiring ------------------------------------------------------------------------------

for (const v of [appsView, workloadsView, eventsView, outputView, artefactsView]) v.wire();

$("#login").addEventListener("submit", login);
$("#logout").addEventListener("click", logout);
$("#tabs").addEventListener("click", (e) => e.target.dataset.view && show(e.target.dataset.view));
})();
