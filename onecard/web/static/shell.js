// onecard's shared page code: the nav bar, api() (fetch with the token), readStream() (Server-Sent Events over a
// POST or GET), and two small SVG charts, drawBars() and drawLines(). Each page's own <page>.js uses these.
"use strict";

const PAGES = [["/", "Start"], ["/fit", "Fit"], ["/chat", "Chat"], ["/rag", "RAG"], ["/runs", "Runs"],
               ["/jobs", "Jobs"], ["/detect", "Detect"], ["/asr", "ASR"], ["/diffuse", "Diffuse"], ["/vlm", "VLM"]];
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fdf", "#e07b39", "#1f8a4c", "#9b59b6", "#c0392b", "#16a2b8", "#b7791f", "#6b7280"];

// The token of a page opened as /?token=T; the server also sets a cookie, the header serves scripts and tabs.
const TOKEN = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("onecard_token");
if (TOKEN) sessionStorage.setItem("onecard_token", TOKEN);

// el("div", {class: "x", onclick: f}, "text", child...): a DOM element.
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (TOKEN) h.Authorization = "Bearer " + TOKEN;
  return h;
}

// An error from the API: .message is the server's "error", .fix its "fix", .status the HTTP status.
class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.fix = body && body.fix;
    this.body = body;
  }
}

// api("/api/fit", {json: {...}}) -> the parsed JSON answer; throws ApiError on a non-2xx answer.
async function api(path, opts = {}) {
  const init = Object.assign({}, opts, {headers: headers(opts.headers)});
  if (opts.json !== undefined) {
    init.method = opts.method || "POST";
    init.body = JSON.stringify(opts.json);
    init.headers["Content-Type"] = "application/json";
    delete init.json;
  }
  const r = await fetch(path, init);
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, typeof body === "object" ? body : {error: body});
  return body;
}

// readStream(path, opts, onEvent): calls onEvent(obj) for each `data:` JSON object of a text/event-stream answer.
// opts as api() (json: a POST body); opts.signal (an AbortController's) stops it. Resolves when the stream ends.
async function readStream(path, opts, onEvent) {
  const init = Object.assign({}, opts, {headers: headers(opts.headers)});
  init.headers.Accept = "text/event-stream";
  if (opts.json !== undefined) {
    init.method = "POST";
    init.body = JSON.stringify(opts.json);
    init.headers["Content-Type"] = "application/json";
    delete init.json;
  }
  const r = await fetch(path, init);
  if (!r.ok) {
    let body;
    try { body = await r.json(); } catch (e) { body = {error: r.statusText}; }
    throw new ApiError(r.status, body);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), {stream: !done});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {  // one event per blank-line-separated block
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter(l => l.startsWith("data:")).map(l => l.slice(5).trimStart()).join("\n");
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
    if (done) return;
  }
}

// showError(container, err): the error and its fix, in place of the container's content.
function showError(container, err) {
  container.replaceChildren(el("div", {class: "error"}, err.message,
                               err.fix ? el("span", {class: "fix"}, "Fix: " + err.fix) : null));
}

// debounce(f, ms): f called once, ms after the last call.
function debounce(f, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => f(...args), ms); };
}

function fmt(x, digits = 2) {
  return typeof x === "number" ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(digits)) : String(x);
}

// drawBars(container, [{label, value}], {line: {value, label}, unit, max}): horizontal bars, one per item, with an
// optional dashed vertical line (a budget). Replaces the container's content with the SVG.
function drawBars(container, items, opts = {}) {
  const W = 720, rowH = 22, left = 170, right = 80, top = 8, H = top + items.length * rowH + 24;
  const line = opts.line;
  const max = Math.max(opts.max || 0, line ? line.value : 0, ...items.map(i => i.value)) || 1;
  const x = v => left + (W - left - right) * Math.max(0, v) / max;
  const svg = el("svg:svg", {class: "chart bars", viewBox: `0 0 ${W} ${H}`, role: "img"});
  items.forEach((it, i) => {
    const y = top + i * rowH;
    svg.append(el("svg:text", {x: left - 6, y: y + 14, "text-anchor": "end"}, it.label),
               el("svg:rect", {x: left, y: y + 3, width: Math.max(1, x(it.value) - left), height: rowH - 7,
                               fill: it.color || COLORS[i % COLORS.length]}, el("svg:title", {}, it.label)),
               el("svg:text", {x: x(it.value) + 4, y: y + 14}, fmt(it.value) + (opts.unit ? " " + opts.unit : "")));
  });
  svg.append(el("svg:line", {class: "axis", x1: left, x2: left, y1: top, y2: H - 20}));
  if (line) {
    svg.append(el("svg:line", {class: "budget", x1: x(line.value), x2: x(line.value), y1: top - 4, y2: H - 18}),
               el("svg:text", {x: x(line.value), y: H - 4, "text-anchor": "middle"},
                  (line.label || "") + " " + fmt(line.value) + (opts.unit ? " " + opts.unit : "")));
  }
  container.replaceChildren(svg);
  return svg;
}

// drawLines(container, [{label, points: [[x, y], ...]}], {xLabel, yLabel}): line chart, series overlaid, a legend.
function drawLines(container, series, opts = {}) {
  const W = 860, H = 340, l = 60, r = 16, t = 34, b = 40;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) { container.replaceChildren(el("p", {class: "muted"}, opts.empty || "no points to draw")); return null; }
  const [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  const [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  const sx = v => l + (W - l - r) * (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0));
  const sy = v => H - b - (H - t - b) * (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0));
  const svg = el("svg:svg", {class: "chart lines", viewBox: `0 0 ${W} ${H}`, role: "img"});
  for (let k = 0; k <= 4; k++) {  // 5 horizontal grid lines with their values
    const v = y0 + (y1 - y0) * k / 4;
    svg.append(el("svg:line", {class: "grid", x1: l, x2: W - r, y1: sy(v), y2: sy(v)}),
               el("svg:text", {x: l - 4, y: sy(v) + 4, "text-anchor": "end"}, fmt(v, 3)));
  }
  svg.append(el("svg:line", {class: "axis", x1: l, x2: W - r, y1: H - b, y2: H - b}),
             el("svg:text", {x: l, y: H - b + 14}, fmt(x0, 0)),
             el("svg:text", {x: W - r, y: H - b + 14, "text-anchor": "end"}, fmt(x1, 0)),
             el("svg:text", {x: (l + W - r) / 2, y: H - 14, "text-anchor": "middle"}, opts.xLabel || ""),
             el("svg:text", {x: 4, y: 14}, opts.yLabel || ""));
  series.forEach((s, i) => {  // legend on the top row
    const color = s.color || COLORS[i % COLORS.length];
    svg.append(el("svg:polyline", {fill: "none", stroke: color, "stroke-width": 2, "data-series": s.label,
                                   points: s.points.map(p => `${sx(p[0])},${sy(p[1])}`).join(" ")}),
               el("svg:rect", {x: l + i * 140, y: 5, width: 10, height: 10, fill: color}),
               el("svg:text", {x: l + 14 + i * 140, y: 14}, s.label));
  });
  container.replaceChildren(svg);
  return svg;
}

// The nav bar over every page.
document.addEventListener("DOMContentLoaded", () => {
  const here = location.pathname.replace(/\/$/, "") || "/";
  const links = PAGES.map(([href, name]) => el("a", {href, class: href === here ? "here" : null}, name));
  document.body.prepend(el("nav", {class: "shell"}, el("a", {class: "brand", href: "/"}, "onecard"), links));
});
