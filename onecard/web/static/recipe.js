// The Start page's recipe panel (#recipe): pick a path, card and OS; /api/recipe answers with the recipe's Markdown,
// drawn here by a small renderer of the subset the recipe uses (headings, fenced code, lists, paragraphs, `code`,
// **bold**). Text is only ever added as text nodes. Clicking a row of the paths table picks that path.
// Below the pickers, #recipe-run runs the recipe here (/api/start/run): each install line checked (never run), the
// inputs the steps read, the configs' YAML to edit, the steps; Run queues them in the Jobs queue and follows each.
"use strict";

function mdInline(text) {
  const out = [];
  const re = /`([^`]+)`|\*\*([^*]+)\*\*/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(m[1] !== undefined ? el("code", {}, m[1]) : el("b", {}, m[2]));
    last = re.lastIndex;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

const LIST_ITEM = /^(- |\d+\. )/;

function mdBlocks(md) {
  const lines = md.split("\n"), nodes = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const body = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) body.push(lines[i]);
      i++;
      nodes.push(el("pre", {"data-lang": line.slice(3)}, el("code", {}, body.join("\n"))));
    } else if (/^#{1,6} /.test(line)) {
      const level = line.indexOf(" ");
      nodes.push(el("h" + Math.min(level + 1, 6), {}, mdInline(line.slice(level + 1))));  // # -> h2: inside the page
      i++;
    } else if (LIST_ITEM.test(line)) {
      const ordered = /^\d+\. /.test(line), items = [];
      for (; i < lines.length && LIST_ITEM.test(lines[i]) && /^\d/.test(lines[i]) === ordered; i++) {
        items.push(el("li", {}, mdInline(lines[i].replace(LIST_ITEM, ""))));
      }
      nodes.push(el(ordered ? "ol" : "ul", {}, items));
    } else if (line.trim() === "") {
      i++;
    } else {
      const text = [];
      for (; i < lines.length && lines[i].trim() !== "" && !/^(#{1,6} |```)/.test(lines[i]) && !LIST_ITEM.test(lines[i]);
           i++) text.push(lines[i]);
      nodes.push(el("p", {}, mdInline(text.join(" "))));
    }
  }
  return nodes;
}

let objectUrls = [];  // the previous recipe's downloads, released when the next one is drawn
let recipeAsked = 0;  // the latest pick: an answer to an earlier one, arriving late, is dropped

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], {type: "text/plain"}));
  objectUrls.push(url);
  return el("a", {href: url, download: name}, name);
}

async function showRecipe() {
  const q = ["path", "gpu", "os"].map(k => `${k}=${encodeURIComponent(document.getElementById("recipe-" + k).value)}`);
  showRunPlan(q);
  const out = document.getElementById("recipe-out");
  out.classList.add("muted");
  const asked = ++recipeAsked;
  try {
    const r = await api("/api/recipe?" + q.join("&"));
    if (asked !== recipeAsked) return;
    objectUrls.forEach(URL.revokeObjectURL);
    objectUrls = [];
    const blocks = mdBlocks(r.markdown);
    const yamls = blocks.filter(b => b.dataset && b.dataset.lang === "yaml").map(b => b.textContent + "\n");
    out.replaceChildren(
      el("p", {}, "Download: ", download("recipe.md", r.markdown),
         r.configs.flatMap((c, k) => [", ", download(c.file, yamls[k])])),
      ...blocks);
  } catch (err) { if (asked === recipeAsked) showError(out, err); }
  out.classList.remove("muted");
}

document.addEventListener("DOMContentLoaded", async () => {
  const box = document.getElementById("recipe");
  try {
    const [meta, cards] = await Promise.all([api("/api/recipe/paths"), api("/api/fit/cards").catch(() => [])]);
    const select = (id, options, value) => el("select", {id: "recipe-" + id, onchange: showRecipe},
      options.map(([v, label]) => el("option", {value: v, selected: v === value}, label)));
    box.replaceChildren(
      el("div", {class: "row"},
        el("label", {}, "path", select("path", meta.paths.map(p => [p.key, `${p.key}: ${p.title}`]), "qlora")),
        el("label", {}, "card", select("gpu", [["auto", "auto (this machine's)"],
                                               ...cards.map(c => [c.key, c.name.replace("NVIDIA ", "")])], "auto")),
        el("label", {}, "OS", select("os", meta.oses.map(o => [o, o]), meta.default_os))),
      el("details", {id: "recipe-run", class: "card"}, el("summary", {}, el("b", {}, "Run this recipe here")),
         el("div", {id: "run-plan"}), el("div", {id: "run-out"})),
      el("div", {id: "recipe-out"}));
    const paths = document.getElementById("paths");
    if (paths) paths.addEventListener("click", e => {
      const row = e.target.closest("tr[data-path]");
      if (!row || e.target.closest("a")) return;
      document.getElementById("recipe-path").value = row.dataset.path;
      showRecipe();
      box.scrollIntoView({behavior: "smooth"});
    });
    showRecipe();
  } catch (err) { showError(box, err); }
});

// -- running the recipe here ----------------------------------------------------------------------------------------

const SATISFIED = {true: ["yes", "ok"], false: ["no", "bad"], null: ["not run here", "muted"]};
let planQuery = null, following = null;

async function showRunPlan(q) {
  const box = document.getElementById("run-plan");
  planQuery = q.join("&");
  try {
    const plan = await api("/api/start/run?" + planQuery);
    if (planQuery !== q.join("&")) return;  // a newer pick is on its way
    box.replaceChildren(...drawPlan(plan));
  } catch (err) { if (planQuery === q.join("&")) showError(box, err); }
}

function drawPlan(plan) {
  const nodes = [];
  if (plan.os_note) nodes.push(el("p", {class: "muted"}, "Note: " + plan.os_note + "."));
  nodes.push(el("h4", {}, "Install (checked on this machine, never run from the page)"),
    el("table", {id: "run-install"}, plan.install.map(i => el("tr", {},
      el("td", {}, el("code", {}, i.line)),
      el("td", {class: "sat-" + SATISFIED[i.satisfied][1]}, SATISFIED[i.satisfied][0]), el("td", {}, i.note)))));
  if (plan.inputs.length) {
    nodes.push(el("h4", {}, "Your files (inside a folder registered with onecard web --folder)"),
      el("div", {class: "row"}, plan.inputs.map(i => el("label", {},
        `${i.name} (${i.type}; ${i.used_by.join(", ")})`,
        el("input", {"data-input": i.name, placeholder: `a ${i.type} in a registered folder`})))));
  }
  if (plan.configs.length) {
    nodes.push(el("h4", {}, "Configs (fit's numbers for the card; edit before running)"),
      ...plan.configs.map(c => el("label", {}, c.file, el("textarea", {"data-config": c.file, spellcheck: "false",
        rows: Math.min(24, c.yaml.split("\n").length + 1), cols: 100}, c.yaml))));
  }
  nodes.push(el("h4", {}, "Steps"), el("ol", {id: "run-steps"}, plan.steps.map(s => el("li", {"data-how": s.how},
    el("code", {}, s.command), el("span", {class: "muted"}, ` ${s.note}`)))));
  const button = el("button", {id: "run-start", onclick: startRun, disabled: !!plan.refusal}, "Run this recipe");
  nodes.push(el("p", {}, button));
  if (plan.refusal) {
    const box = el("div", {});
    showError(box, {message: plan.refusal.error, fix: plan.refusal.fix});
    nodes.push(box);
  }
  return nodes;
}

async function startRun() {
  const out = document.getElementById("run-out");
  const params = new URLSearchParams(planQuery);
  const body = {path: params.get("path"), gpu: params.get("gpu"), os: params.get("os"), inputs: {}, configs: {}};
  document.querySelectorAll("#run-plan [data-input]").forEach(i => { body.inputs[i.dataset.input] = i.value.trim(); });
  document.querySelectorAll("#run-plan [data-config]").forEach(t => { body.configs[t.dataset.config] = t.value; });
  try {
    const run = await api("/api/start/run", {json: body});
    drawRun(out, run);
  } catch (err) {
    showError(out, err);
    if (err.body && err.body.fields) {
      out.append(el("ul", {}, err.body.fields.map(f => el("li", {}, el("b", {}, f.field), ": " + f.message))));
    }
  }
}

function drawRun(out, run) {
  const rows = run.steps.map(s => el("tr", {"data-step": s.index, "data-job": s.job ? s.job.id : null},
    el("td", {}, s.index), el("td", {}, el("code", {}, s.command)),
    el("td", {class: "status"}, s.job ? s.job.status : s.how === "here" ? "answered here" : "not run"),
    el("td", {class: "links"}, s.job ? el("a", {href: s.job_url}, "job") : null),
    el("td", {class: "detail muted"}, s.result ? reportText(s.result) : s.job ? "" : s.note)));
  out.replaceChildren(el("h4", {}, "This run"),
    el("p", {class: "muted"}, "Recipe and configs written to ", el("code", {}, run.folder)),
    el("table", {id: "run-table"}, el("tr", {}, ["", "step", "status", "", ""].map(h => el("th", {}, h))), rows));
  clearInterval(following);
  following = setInterval(() => follow(out), 1000);
}

function reportText(result) {
  return result.expect ? result.expect.join("; ") : `GPU: ${result.gpus.join(", ")}` +
    (result.missing.length ? `; missing: ${result.missing.join("; ")}` : "");
}

async function follow(out) {
  const rows = [...out.querySelectorAll("tr[data-job]")];
  let open = 0;
  for (const row of rows) {
    if (row.dataset.ended) continue;
    try {
      const job = await api("/api/jobs/" + row.dataset.job);
      row.querySelector(".status").textContent = job.status + (job.position ? ` (#${job.position} in the queue)` : "");
      row.querySelector(".status").className = "status st-" + job.status;
      const detail = job.error || (job.progress ? job.progress.text : "");
      row.querySelector(".detail").textContent = detail;
      const links = row.querySelector(".links");
      if (job.run_url && !links.querySelector("a.run")) {
        links.append(" ", el("a", {class: "run", href: job.run_url}, "run " + job.run_id));
      }
      if (job.ended_at) row.dataset.ended = "1"; else open++;
    } catch (err) { open++; }
  }
  if (!open) clearInterval(following);
}
