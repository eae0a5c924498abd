// The workloads view: the tenant's workloads with stop, start and restart, and one workload's
// panel: its logs (a tail, or followed), a file uploaded into it or downloaded from it.
(() => {
"use strict";

const { $, state, el, banner, failure, ask, later } = window.dashboard;
const MAX_LOG_LINES = 2000;

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
  window.nodesView.render();
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

function wire() {
  $("#upload").addEventListener("click", upload);
  $("#download").addEventListener("click", download);
  $("#follow").addEventListener("change", () => state.selected && openWorkload(state.selected));
}

window.workloadsView = { refresh: refreshWorkloads, render: renderWorkloads, wire };
})();
