// Small canvas charts: no charting library, so nothing else to pin or fetch.
(() => {
"use strict";

function drawLine(canvas, values, { color = "#2a7", min, max, label = "" } = {}) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  canvas.dataset.points = String(values.length);
  if (values.length === 0) return;
  const lo = min !== undefined ? min : Math.min(...values);
  const hi = max !== undefined ? max : Math.max(...values);
  const span = hi - lo || 1;
  const pad = h > 60 ? 20 : 2;
  ctx.strokeStyle = color;
  ctx.lineWidth = h > 60 ? 2 : 1;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = pad + (i * (w - 2 * pad)) / Math.max(1, values.length - 1);
    const y = h - pad - ((v - lo) * (h - 2 * pad)) / span;
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  if (values.length === 1) {
    ctx.fillStyle = color;
    ctx.fillRect(pad, h - pad - ((values[0] - lo) * (h - 2 * pad)) / span - 1, 3, 3);
  }
  if (h > 60) {
    ctx.fillStyle = "#555";
    ctx.font = "12px sans-serif";
    ctx.fillText(`${label} max ${hi.toPrecision(4)}`, pad, 14);
    ctx.fillText(`min ${lo.toPrecision(4)} · ${values.length} points`, pad, h - 4);
  }
}

function sparkline(values, opts) {
  const canvas = document.createElement("canvas");
  canvas.width = 90;
  canvas.height = 22;
  canvas.className = "spark";
  drawLine(canvas, values, opts);
  return canvas;
}

// Every numeric leaf of a JSON value, by dotted path: {"result": {"mean": 2}} -> result.mean
function numericFields(value, prefix = "", out = {}) {
  if (typeof value === "number" && Number.isFinite(value)) out[prefix] = value;
  else if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) numericFields(v, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

window.charts = { drawLine, sparkline, numericFields };
})();
