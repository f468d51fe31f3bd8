// The Runs page: every run record (filtered), one run (config, metrics, loss curves, files), or two compared
// (config diff, metrics side by side, loss curves overlaid). /runs?a=ID&b=ID opens a comparison, /runs?run=ID a run.
"use strict";

const ticked = new Set();

function cell(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function table(headers, rows, rowClass) {
  return el("table", {}, el("tr", {}, headers.map(h => el("th", {}, h))),
            rows.map((r, i) => el("tr", {class: rowClass ? rowClass(i) : null},
                                  r.map(v => el("td", {class: typeof v === "number" ? "num" : null},
                                                v instanceof Node ? v : cell(v))))));
}

// The loss-like series of a history: {"train/loss": [[step, v]...], ...} -> drawLines series.
function lossSeries(history, prefix) {
  return Object.entries(history).filter(([name]) => /loss/.test(name))
    .map(([name, points]) => ({label: (prefix ? prefix + " " : "") + name, points}));
}

function flat(data, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(data || {})) {
    const key = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) flat(v, key, out);
    else out[key] = v;
  }
  return out;
}

async function loadList() {
  const form = document.getElementById("filters");
  const query = new URLSearchParams();
  for (const name of ["capability", "status"]) if (form.elements[name].value) query.set(name, form.elements[name].value);
  const box = document.getElementById("runs");
  try {
    const answer = await api("/api/runs?" + query);
    const select = form.elements.capability;
    for (const c of answer.capabilities) {
      if (![...select.options].some(o => o.value === c)) select.append(el("option", {value: c}, c));
    }
    if (!answer.runs.length) { box.replaceChildren(el("p", {}, "No runs match. Start one from the Jobs page or the CLI.")); return; }
    box.replaceChildren(table(["", "run", "capability", "status", "metrics", "started", "took"], answer.runs.map(r => {
      const box = el("input", {type: "checkbox", "data-run": r.id, onchange: e => tick(r.id, e.target.checked)});
      box.checked = ticked.has(r.id);
      const metrics = Object.entries(r.metrics).slice(0, 3).map(([k, v]) => `${k}=${cell(v)}`).join(", ");
      return [box, el("a", {href: "?run=" + encodeURIComponent(r.id), onclick: e => { e.preventDefault(); showRun(r.id); }}, r.id),
              r.capability, r.status, metrics, (r.started_at || "").replace("T", " ").slice(0, 19),
              r.duration_s === null ? "–" : r.duration_s.toFixed(1) + " s"];
    })));
  } catch (err) { showError(box, err); }
}

function tick(id, on) {
  if (on) ticked.add(id); else ticked.delete(id);
  document.getElementById("compare").disabled = ticked.size !== 2;
}

async function showRun(id) {
  const view = document.getElementById("view");
  view.hidden = false;
  history.replaceState(null, "", "?run=" + encodeURIComponent(id) + tokenPart());
  try {
    const {record, history: points, files} = await api("/api/runs/" + encodeURIComponent(id));
    const chart = el("div");
    view.replaceChildren(el("h2", {}, `Run ${record.id}`),
      el("p", {class: "muted"}, `${record.capability}, ${record.status}`,
         record.error ? ` – ${record.error.type}: ${record.error.message}` : ""),
      el("div", {class: "row"},
         el("div", {}, el("h2", {}, "Metrics"), table(["metric", "value"], Object.entries(flat(record.metrics)))),
         el("div", {}, el("h2", {}, "Loss"), chart)),
      el("h2", {}, "Config"), table(["key", "value"], Object.entries(flat(record.config))),
      el("h2", {}, "Files"), table(["file", "bytes"], files.map(f => [
        el("a", {href: `/api/runs/${encodeURIComponent(id)}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`,
                 download: f.path.split("/").pop()}, f.path), f.bytes])));
    drawLines(chart, lossSeries(points), {xLabel: "step", yLabel: "loss", empty: "this run logged no loss"});
  } catch (err) { showError(view, err); }
}

async function showCompare(a, b) {
  const view = document.getElementById("view");
  view.hidden = false;
  history.replaceState(null, "", `?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}` + tokenPart());
  try {
    const diff = await api(`/api/runs/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    const chart = el("div", {id: "curves"});
    const metrics = Object.entries(diff.metrics).map(([k, m]) => [k, m.a, m.b, m.delta]);
    view.replaceChildren(el("h2", {}, `Compare ${diff.a} (a) and ${diff.b} (b)`),
      el("h2", {}, "Loss curves"), chart,
      el("div", {class: "row"},
         el("div", {id: "metrics"}, el("h2", {}, "Metrics"), table(["metric", "a", "b", "b − a"], metrics)),
         el("div", {id: "config-diff"}, el("h2", {}, "Config differences"),
            table(["key", "a", "b"], Object.entries(Object.assign({}, diff.run, diff.config)).map(([k, [va, vb]]) => [k, va, vb]),
                  () => "diff"))));
    drawLines(chart, lossSeries(diff.history.a, "a").concat(lossSeries(diff.history.b, "b")),
              {xLabel: "step", yLabel: "loss", empty: "neither run logged a loss"});
  } catch (err) { showError(view, err); }
}

function tokenPart() {
  const token = new URLSearchParams(location.search).get("token");
  return token ? "&token=" + encodeURIComponent(token) : "";
}

document.addEventListener("DOMContentLoaded", async () => {
  const form = document.getElementById("filters");
  form.addEventListener("change", loadList);
  document.getElementById("compare").addEventListener("click", () => showCompare(...ticked));
  await loadList();
  const params = new URLSearchParams(location.search);
  if (params.get("a") && params.get("b")) showCompare(params.get("a"), params.get("b"));
  else if (params.get("run")) showRun(params.get("run"));
});
