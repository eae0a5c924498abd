// The nodes view: the registry's list, each node's CPU and memory sparklines (an operator's from
// every heartbeat, a tenant's from the registry's usage history) and a node's details.
(() => {
"use strict";

const { $, HISTORY, state, el, ask, later } = window.dashboard;
const { sparkline } = window.charts;

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

window.nodesView = { refresh: refreshNodes, render: renderNodes, onHeartbeat };
})();
