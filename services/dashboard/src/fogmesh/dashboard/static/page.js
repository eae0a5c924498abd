// What every view of the dashboard shares: the session's state (the bus, who is logged in, what
// the views last listed), small DOM helpers, the banner that reports a failure, a request that
// reports its own failure there, and a debounce. The views are one script each (nodes.js,
// apps.js, workloads.js, events.js, output.js, artefacts.js); app.js logs in and wires them.
(() => {
"use strict";

const { RequestFailed } = window.fogmesh;

const $ = (sel) => document.querySelector(sel);
const HISTORY = 60; // samples kept per node and per output field

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

const timers = new Map();
function later(fn, ms = 300) {
  // many pushes in a burst (a deploy's events) make one request
  clearTimeout(timers.get(fn));
  timers.set(fn, setTimeout(fn, ms));
}

window.dashboard = { $, HISTORY, state, el, banner, failure, ask, later };
})();
