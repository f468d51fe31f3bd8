// The Jobs page: a form built from the job's own config (/api/jobs/kinds), POST /api/jobs to queue it, the queue
// (refreshed every 2 s), and one job's progress and log streamed over SSE (/api/jobs/ID/log); Cancel = Ctrl-C.
"use strict";

let kinds = [];
let watching = null;  // {id, abort}: the job whose log streams into the view

// One input per config field: a select for fixed choices, a checkbox for a boolean, a textarea for a list (one value
// per line), else a text or number input (a datalist offers "auto" where the field also takes it).
function fieldInput(f) {
  const title = f.description || f.name;
  const label = f.name.replaceAll("_", " ") + (f.required ? " *" : "");
  const attrs = {name: f.name, "data-type": f.type, title};
  if (f.type === "boolean" && !f.choices.length) {
    const box = el("input", Object.assign({type: "checkbox"}, attrs));
    box.checked = f.default === true;
    return el("label", {class: "check", title}, box, label);
  }
  let input;
  if (f.type === "choice" || (f.type === "boolean" && f.choices.length)) {
    const values = f.type === "boolean" ? [...f.choices, true, false] : f.choices;
    input = el("select", attrs, f.default === null || f.nullable ? el("option", {value: ""}, "default") : null,
               values.map(v => el("option", {value: String(v)}, String(v))));
  } else if (f.type === "array") {
    input = el("textarea", Object.assign({rows: 2, placeholder: "one per line"}, attrs));
  } else {
    const numeric = (f.type === "integer" || f.type === "number") && !f.choices.length;
    input = el("input", Object.assign({type: numeric ? "number" : "text", step: f.type === "number" ? "any" : null,
                                       list: f.choices.length ? "choices-" + f.name : null,
                                       placeholder: f.required ? "required" : (f.default === null ? "none" : null),
                                       required: f.required}, attrs));
  }
  if (f.default !== null && f.default !== undefined) {
    input.value = Array.isArray(f.default) ? f.default.join("\n") : String(f.default);
  }
  const wrap = el("label", {title}, label, input);
  if (input.getAttribute("list")) wrap.append(el("datalist", {id: input.getAttribute("list")}, f.choices.map(c => el("option", {value: c}))));
  return wrap;
}

// The config the form sends: only the fields that differ from their default (and the required ones), so the rest
// take the config's own defaults (a preset fills them, as with the CLI).
function formValues(kind) {
  const config = {};
  for (const f of kind.form.fields) {
    const input = document.querySelector(`#job-form [name="${f.name}"]`);
    if (!input) continue;
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (f.type === "array") value = input.value.split("\n").map(s => s.trim()).filter(Boolean);
    else if (input.value === "") continue;
    else if (input.value === "true" || input.value === "false") value = input.value === "true";
    else if ((f.type === "integer" || f.type === "number") && !isNaN(Number(input.value))) value = Number(input.value);
    else value = input.value;
    if (JSON.stringify(value) !== JSON.stringify(f.default) || f.required) config[f.name] = value;
  }
  return config;
}

function currentKind() {
  return kinds.find(k => k.kind === document.getElementById("kind").value);
}

function drawForm() {
  const kind = currentKind();
  const form = document.getElementById("job-form");
  document.getElementById("kind-doc").textContent = kind ? kind.form.description : "";
  form.replaceChildren(...(kind ? kind.form.fields.map(fieldInput) : []));
  document.getElementById("start-error").replaceChildren();
}

async function start() {
  const kind = currentKind();
  const box = document.getElementById("start-error");
  box.replaceChildren();
  document.querySelectorAll("#job-form .invalid").forEach(n => n.classList.remove("invalid"));
  const reportTo = document.getElementById("report-to").value;
  try {
    const job = await api("/api/jobs", {json: {kind: kind.kind, config: formValues(kind), report_to: [reportTo]}});
    document.getElementById("start-note").textContent = `queued as ${job.id}` +
      (job.position ? `, position ${job.position}` : "");
    await refresh();
    watch(job.id);
  } catch (err) {
    showError(box, err);
    for (const f of (err.body && err.body.fields) || []) {  // "config.max_iters" -> the max_iters input
      const input = document.querySelector(`#job-form [name="${f.field.replace(/^config\./, "").split(".")[0]}"]`);
      if (input) input.classList.add("invalid");
    }
  }
}

function statusText(job) {
  return job.status === "queued" && job.position ? `queued, position ${job.position}` : job.status;
}

function runLink(job) {
  return job.run_id ? el("a", {href: job.run_url, class: "run-link"}, job.run_id) : "";
}

function progressText(job) {
  const p = job.progress;
  if (!p) return "";
  return p.total ? `${p.done}/${p.total}` : p.text;
}

async function refresh() {
  let jobs;
  try { jobs = await api("/api/jobs"); } catch (err) { return; }
  const rows = jobs.map(job => el("tr", {"data-job": job.id, "data-status": job.status},
    el("td", {}, el("a", {href: "#" + job.id, onclick: e => { e.preventDefault(); watch(job.id); }}, job.id)),
    el("td", {}, job.kind), el("td", {class: "status"}, statusText(job)), el("td", {}, progressText(job)),
    el("td", {}, runLink(job)),
    el("td", {}, ["queued", "running"].includes(job.status)
      ? el("button", {class: "plain cancel", onclick: () => cancel(job.id)}, "Cancel") : "")));
  document.querySelector("#jobs tbody").replaceChildren(...rows);
}

async function cancel(id) {
  try { await api(`/api/jobs/${id}/cancel`, {method: "POST"}); } catch (err) { alert(err.message); }
  refresh();
}

function showStatus(job) {
  const status = document.getElementById("job-status");
  status.textContent = statusText(job);
  status.className = "verdict " + ({succeeded: "ok", failed: "bad", interrupted: "warn", cancelled: "warn"}[job.status] || "");
  document.getElementById("job-run").replaceChildren(job.run_id ? "run " : "", runLink(job));
  const p = job.progress;
  const bar = document.getElementById("job-bar");
  if (p && p.total) { bar.max = p.total; bar.value = p.done; }
  if (job.status === "succeeded") { bar.max = 1; bar.value = 1; }
  document.getElementById("job-progress").textContent = p ? p.text : "";
  const error = document.getElementById("job-error");
  if (job.error) showError(error, {message: job.error}); else error.replaceChildren();
}

// Stream one job's log and status into the view (the stream replays the lines so far, then follows).
async function watch(id) {
  if (watching) watching.abort.abort();
  const abort = new AbortController();
  watching = {id, abort};
  const view = document.getElementById("job-view");
  view.hidden = false;
  document.getElementById("job-id").textContent = id;
  const log = document.getElementById("job-log");
  log.textContent = "";
  try {
    await readStream(`/api/jobs/${id}/log`, {signal: abort.signal}, event => {
      if (event.type === "line") {
        log.textContent += event.text + "\n";
        log.scrollTop = log.scrollHeight;
      } else {
        showStatus(event);
      }
    });
  } catch (err) {
    if (err.name !== "AbortError") showError(document.getElementById("job-error"), err);
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", async () => {
  try {
    kinds = await api("/api/jobs/kinds");
  } catch (err) {
    showError(document.getElementById("start-error"), err);
    return;
  }
  const installed = kinds.filter(k => k.installed);
  document.getElementById("kind").replaceChildren(...installed.map(k => el("option", {value: k.kind}, k.kind)));
  const missing = kinds.filter(k => !k.installed);
  if (missing.length) {
    document.getElementById("not-installed").replaceChildren(el("p", {}, "Not installed in this onecard:"),
      el("ul", {}, missing.map(k => el("li", {}, el("b", {}, k.kind), " — ", el("code", {}, k.install)))));
  }
  const wanted = new URLSearchParams(location.search).get("kind");
  if (wanted && installed.some(k => k.kind === wanted)) document.getElementById("kind").value = wanted;
  document.getElementById("kind").addEventListener("change", drawForm);
  document.getElementById("start").addEventListener("click", start);
  document.getElementById("start").disabled = !installed.length;
  drawForm();
  await refresh();
  setInterval(refresh, 2000);
  const shown = location.hash.slice(1);
  if (shown) watch(shown);
});
