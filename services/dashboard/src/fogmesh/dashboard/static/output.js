// The output view: every numeric field of an app's JSON outputs on fm/v1/data/{tenant}/#,
// charted (the sample app's result.mean of .../out unless the person picks another).
(() => {
"use strict";

const { ROOT } = window.fogmesh;
const { drawLine, numericFields } = window.charts;
const { $, HISTORY, state, el } = window.dashboard;

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

function wire() {
  $("#stream").addEventListener("change", () => { state.streamPicked = true; renderFields(); });
  $("#field").addEventListener("change", () => { state.fieldPicked = true; renderChart(); });
}

window.outputView = { onData, renderStreams, wire };
})();
