// The events view: the last hour's events and each new one as it comes, with a text filter. A
// new event also brings the other views up to date (workloads, apps, a tenant's nodes, caches).
(() => {
"use strict";

const { $, state, el, ask, later } = window.dashboard;
const MAX_EVENTS = 500;

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
      window.workloadsView.render();
    }
  }
  if (ev.kind === "workload-state" && !$("#artefacts-view").hidden) {
    later(window.artefactsView.refreshCaches, 1000); // a workload starting may have made its site cache a ref
  }
  if (/^(workload|app|node|migration)/.test(ev.kind)) {
    later(window.workloadsView.refresh);
    later(refreshWorkloadsAgain, 3000); // and once more when the registry surely has it
    later(window.appsView.refresh);
    if (!state.fleet) later(window.nodesView.refresh);
  }
}

function refreshWorkloadsAgain() {
  return window.workloadsView.refresh();
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

function wire() {
  $("#events-filter").addEventListener("input", renderEvents);
}

window.eventsView = { load: loadEvents, onEvent, wire };
})();
