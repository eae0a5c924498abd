// The apps view: the tenant's apps with scale and delete, and deploy or update from a manifest
// (YAML or JSON), whose syntax errors and refused fields are shown at their line.
(() => {
"use strict";

const { $, state, el, banner, failure, ask, later } = window.dashboard;

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
  window.outputView.renderStreams();
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
    later(window.workloadsView.refresh);
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
  later(window.workloadsView.refresh);
}

function wire() {
  $("#deploy").addEventListener("submit", (e) => { e.preventDefault(); deployApp("deploy"); });
  $("#update").addEventListener("click", () => deployApp("update"));
  $("#manifest-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) $("#manifest").value = await file.text();
  });
}

window.appsView = { refresh: refreshApps, wire };
})();
