// The Fit page: a form built from FitJob's JSON schema (/api/fit/schema); every change re-plans (/api/fit) and
// re-ranks (/api/fit/solve) after 50 ms, and draws the breakdown against the card's budget.
"use strict";

// The fields shown for each model family (the rest keep their defaults); common fields first.
const COMMON = ["model", "gpu", "vram", "job", "batch", "margin_gib", "strict"];
const FAMILY_FIELDS = {
  llm: ["method", "quant", "runtime", "ctx", "new_tokens", "seq", "lora_rank", "grad_accum", "grad_ckpt", "stack",
        "optimizer", "attention", "kv_dtype", "gpu_layers"],
  diffusion: ["resolution", "vae_slicing", "vae_tiling", "offload", "attention", "cached_latents", "amp"],
  yolo: ["imgsz", "amp"],
  whisper: ["runtime", "quant", "beam"],
};
const PART_NAMES = {kv_cache: "KV cache", cuda_context: "CUDA context", allocator_slack: "allocator slack"};

let schema, models, cards;
let sequence = 0;  // answers to older requests are dropped

function familyOf(model) {
  for (const [family, names] of Object.entries(models)) if (names.includes(model)) return family;
  return "llm";  // paths and hub ids are LLMs to the planner
}

function fieldInput(name, spec) {
  const options = spec.enum || (spec.anyOf || []).flatMap(s => s.enum || []);
  const type = spec.type || (spec.anyOf || []).map(s => s.type).find(t => t !== "null");
  const title = spec.description || name;
  let input;
  if (name === "gpu") {
    input = el("select", {name}, el("option", {value: ""}, "this machine's card"),
               cards.map(c => el("option", {value: c.key}, `${c.name.replace("NVIDIA ", "")} (${c.vram_gib} GiB)`)));
  } else if (name === "model") {
    input = el("input", {name, list: "model-names", required: true});
    document.body.append(el("datalist", {id: "model-names"},
                            Object.values(models).flat().map(m => el("option", {value: m}))));
  } else if (type === "boolean") {
    const box = el("input", {type: "checkbox", name});
    box.checked = spec.default === true;
    return el("label", {class: "check", title}, box, name.replaceAll("_", " "));
  } else if (options.length) {
    input = el("select", {name}, spec.default === null ? el("option", {value: ""}, "default") : null,
               options.map(o => el("option", {value: o}, o)));
  } else {
    const numeric = type === "integer" || type === "number";
    input = el("input", {name, type: numeric ? "number" : "text", step: type === "number" ? "any" : null,
                         placeholder: spec.default === null ? "auto" : null});
  }
  if (spec.default !== null && spec.default !== undefined) input.value = spec.default;
  return el("label", {title}, name.replaceAll("_", " "), input);
}

// The request: the model and every field whose value differs from its default (the search keeps those fixed).
function readJob() {
  const job = {};
  for (const input of document.querySelectorAll("#job [name]")) {
    const spec = schema.properties[input.name];
    const type = spec.type || (spec.anyOf || []).map(s => s.type).find(t => t !== "null");
    let value = input.type === "checkbox" ? input.checked : input.value.trim();
    if (value === "") value = null;
    else if (type === "integer" || type === "number") value = Number(value);
    if (input.name === "model" || value !== (spec.default ?? null)) job[input.name] = value;
  }
  return job;
}

function buildForm() {
  const form = document.getElementById("job");
  const family = familyOf(form.elements.model ? form.elements.model.value : "llama-3.1-8b");
  const kept = form.elements.length ? readJob() : {model: "llama-3.1-8b", gpu: "rtx-4070-ti"};
  form.dataset.family = family;
  form.replaceChildren(...COMMON.concat(FAMILY_FIELDS[family]).map(n => fieldInput(n, schema.properties[n])));
  for (const [name, value] of Object.entries(kept)) {
    const input = form.elements[name];
    if (!input) continue;
    if (input.type === "checkbox") input.checked = value; else input.value = value ?? "";
  }
  document.getElementById("family").textContent = `${family} model: showing the ${family} knobs`;
}

function showPlan(plan) {
  const verdict = document.getElementById("verdict");
  const tight = plan.fits === false && plan.process_gib <= (plan.budget_gib ?? Infinity);
  verdict.className = "verdict " + (plan.fits ? "ok" : tight ? "warn" : "bad");
  verdict.dataset.fits = String(plan.fits);
  verdict.textContent = plan.verdict;
  const fixed = plan.bound_abs_gib ? ` + ${plan.bound_abs_gib.toFixed(2)} GiB` : "";
  const strict = plan.strict_note ? `; ${plan.strict_note}` : "";
  document.getElementById("bound").textContent = plan.peak_upper_gib === null ? "" :
    `safe upper bound ${plan.peak_upper_gib.toFixed(1)} GiB (estimate × ${(1 + plan.bound_margin).toFixed(3)}${fixed}, ` +
    `${plan.kind}${plan.bound_group === "first sight" ? ", first sight" : ""}); fits is decided on it${strict}` +
    (plan.cache_gib >= 0.05 ? `; where the card has room nvidia-smi may also show ${plan.cache_gib.toFixed(1)} GiB ` +
      "of PyTorch's cache, given back when memory runs short" : "");
  const parts = Object.entries(plan.breakdown).filter(([, v]) => v > 0)
    .map(([k, v]) => ({label: PART_NAMES[k] || k.replaceAll("_", " "), value: v}));
  parts.push({label: "process total", value: plan.process_gib, color: "#1d2330"});
  if (plan.peak_upper_gib !== null) parts.push({label: "safe upper bound", value: plan.peak_upper_gib, color: "#6b7280"});
  drawBars(document.getElementById("breakdown"), parts,
           {unit: "GiB", line: plan.budget_gib === null ? null : {value: plan.budget_gib, label: "budget"}});
  const fixes = document.getElementById("fixes");
  fixes.replaceChildren(...(plan.fixes && plan.fixes.length ? [el("h2", {}, "Cheapest fixes"),
    el("ul", {}, plan.fixes.map(f => el("li", {}, `${f.changes}: ${f.process_gib} GiB`)))] : []));
  document.getElementById("assumptions").replaceChildren(...plan.assumptions.map(a => el("li", {}, a)));
}

function apply(settings) {
  const form = document.getElementById("job");
  for (const [name, value] of Object.entries(settings)) {
    const input = form.elements[name];
    if (!input) continue;
    if (input.type === "checkbox") input.checked = value; else input.value = value ?? "";
  }
  update();
}

function showSolutions(answer) {
  const box = document.getElementById("solutions");
  if (!answer.solutions.length) { box.replaceChildren(el("p", {}, "no setting fits this card")); return; }
  box.replaceChildren(el("table", {},
    el("tr", {}, ["#", "changes", "GiB", "upper", "spare", "speed", ""].map(h => el("th", {}, h))),
    answer.solutions.map((s, i) => el("tr", {},
      el("td", {}, i + 1), el("td", {}, s.changes || "as asked"), el("td", {class: "num"}, s.process_gib),
      el("td", {class: "num"}, s.peak_upper_gib ?? ""), el("td", {class: "num"}, s.headroom_gib ?? ""),
      el("td", {class: "num"}, s.throughput.tokens_per_s ? fmt(s.throughput.tokens_per_s, 0) + " tok/s"
                               : s.throughput.step_s ? fmt(s.throughput.step_s) + " s/step" : ""),
      el("td", {}, el("button", {class: "plain", type: "button", onclick: () => apply(s.settings)}, "use"))))));
}

async function update() {
  const job = readJob();
  const mine = ++sequence;
  const verdict = document.getElementById("verdict");
  try {
    const [plan, solved] = await Promise.all([api("/api/fit", {json: job}), api("/api/fit/solve?top=8", {json: job})]);
    if (mine !== sequence) return;
    showPlan(plan);
    showSolutions(solved);
  } catch (err) {
    if (mine !== sequence) return;
    verdict.className = "verdict bad";
    verdict.dataset.fits = "error";
    showError(document.getElementById("breakdown"), err);
    verdict.textContent = "cannot plan";
    document.getElementById("solutions").replaceChildren();
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  [schema, models, cards] = await Promise.all([api("/api/fit/schema"), api("/api/fit/models"), api("/api/fit/cards")]);
  buildForm();
  const form = document.getElementById("job");
  const later = debounce(update, 50);
  const onChange = event => {
    if (event.target.name === "model" && familyOf(event.target.value) !== form.dataset.family) {
      buildForm();  // the new family's knobs; typing goes on in the new model box
      form.elements.model.focus();
    }
    later();
  };
  form.addEventListener("input", onChange);
  form.addEventListener("change", onChange);
  update();
});
