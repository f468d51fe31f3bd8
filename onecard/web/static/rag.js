// The RAG page: pick or build an index (progress streamed), ask with a streamed answer whose [n] citations open the
// source at its line, search-only mode, and the index's evaluation runs. Talks to /api/rag/*.
"use strict";

let indexes = [];

function current() { return document.getElementById("index").value; }

function sourceLink(name, path, line, label) {
  const query = new URLSearchParams({index: name, path, line});
  return el("a", {class: "cite", href: "/rag?" + query, "data-path": path, "data-line": line,
                  onclick: ev => { ev.preventDefault(); openSource(name, path, line); }}, label);
}

async function openSource(name, path, line) {
  const box = document.getElementById("source");
  box.hidden = false;
  document.getElementById("source-path").textContent = `${path}:${line}`;
  const pre = document.getElementById("source-text");
  try {
    const found = await api("/api/rag/source?" + new URLSearchParams({index: name, path, line}));
    pre.replaceChildren(...found.lines.map(l => el("span", {class: l.n === Number(line) ? "hl" : null,
                                                              "data-line": l.n}, `${String(l.n).padStart(4)}  ${l.text}\n`)));
    const hl = pre.querySelector(".hl");
    if (hl) hl.scrollIntoView({block: "center"});
    history.replaceState(null, "", "/rag?" + new URLSearchParams({index: name, path, line}));
  } catch (e) { showError(pre, e); }
}

function showIndex() {
  const info = document.getElementById("index-info");
  const idx = indexes.find(i => i.name === current());
  if (!idx) { info.textContent = "No index yet: build one from a registered folder."; return; }
  info.textContent = `${idx.chunks} chunks of ${idx.roots.join(", ")} (${idx.embed_model}), built ${idx.created_at || "?"}`;
  const evals = document.getElementById("evals");
  if (!idx.evaluations.length) {
    evals.textContent = "No evaluation of this index yet (`onecard rag eval --qa FILE --name " + idx.name + "`).";
    return;
  }
  const metrics = ["recall@5", "recall@10", "ndcg@10", "mrr@10"];
  const rows = [];
  for (const run of idx.evaluations) {
    for (const mode of ["bm25", "dense", "hybrid", "rerank"]) {
      const m = run.eval[mode];
      if (m) rows.push(el("tr", {}, el("td", {}, run.run_id), el("td", {}, mode),
                           ...metrics.map(k => el("td", {class: "num"}, m[k] === undefined ? "" : fmt(m[k], 3)))));
    }
  }
  const answers = idx.evaluations.filter(r => r.eval.answers).map(r => el("p", {}, `${r.run_id} answers: ` +
    Object.entries(r.eval.answers).map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v, 3) : v}`).join(", ")));
  evals.replaceChildren(el("table", {}, el("tr", {}, el("th", {}, "run"), el("th", {}, "retriever"),
                                              ...metrics.map(k => el("th", {}, k))), rows), ...answers);
}

async function loadIndexes(select) {
  const found = await api("/api/rag/indexes");
  indexes = found.indexes;
  const sel = document.getElementById("index");
  sel.replaceChildren(...indexes.map(i => el("option", {value: i.name}, i.name)));
  if (select) sel.value = select;
  document.getElementById("folders").replaceChildren(...found.folders.map(f => el("option", {value: f})));
  if (found.folders.length && !document.querySelector("[name=folder]").value)
    document.querySelector("[name=folder]").value = found.folders[0];
  showIndex();
}

async function build(ev) {
  ev.preventDefault();
  const form = ev.target;
  const progress = document.getElementById("progress");
  progress.hidden = false;
  progress.textContent = "building…\n";
  const body = {name: form.name.value, paths: [form.folder.value], embed_backend: form.embed_backend.value};
  try {
    await readStream("/api/rag/index", {json: body}, e => {
      if (e.type === "progress") progress.textContent += e.line + "\n";
      else if (e.type === "done") progress.textContent += `done: ${e.files} files, ${e.chunks} chunks ` +
        `(${e.embedded} embedded, ${e.reused} reused) in ${fmt(e.seconds, 1)} s; run ${e.run_id}\n`;
      else if (e.type === "error") throw new ApiError(200, e);
    });
    await loadIndexes(body.name);
  } catch (e) { showError(progress, e); }
}

// The answer's text with each [n] (or [n?], unsupported) turned into a link that opens source n at its line.
function linkify(text, sources, name) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d+(?:\s*,\s*\d+)*)(\??)\]/g)) {
    out.push(text.slice(last, m.index));
    const nums = m[1].split(",").map(s => Number(s.trim()));
    out.push("[");
    nums.forEach((n, i) => {
      const s = sources[n - 1];
      if (i) out.push(", ");
      out.push(s ? sourceLink(name, s.path, s.start_line, String(n) + m[2]) : String(n));
    });
    out.push("]");
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

function hitList(hits, name) {
  return el("ol", {}, hits.map(h => el("li", {}, sourceLink(name, h.path, h.start_line, h.location || h.rel),
                                       el("div", {class: "muted"}, h.text.slice(0, 240)))));
}

async function ask(ev) {
  ev.preventDefault();
  const q = document.getElementById("question").value.trim();
  const name = current();
  const k = Number(document.getElementById("k").value || 5);
  const [errorBox, answer, results, stats] = ["error", "answer", "results", "stats"].map(i => document.getElementById(i));
  errorBox.replaceChildren(); results.replaceChildren(); stats.textContent = "";
  if (!q || !name) return;
  const go = document.getElementById("go");
  go.disabled = true;
  try {
    if (document.getElementById("search-only").checked) {
      answer.hidden = true;
      const found = await api("/api/rag/search", {json: {name, query: q, k}});
      stats.textContent = `${found.hits.length} hits (${found.retriever}) in ${fmt(found.seconds * 1000, 1)} ms`;
      results.replaceChildren(hitList(found.hits, name));
      return;
    }
    answer.hidden = false;
    answer.replaceChildren("");
    answer.classList.add("streaming");
    delete answer.dataset.done;
    let done = null;
    await readStream("/api/rag/ask", {json: {name, question: q, k}}, e => {
      if (e.type === "text") answer.firstChild.appendData(e.text);
      else if (e.type === "status") stats.textContent = e.line;
      else if (e.type === "done") done = e;
      else if (e.type === "error") throw new ApiError(200, e);
    });
    if (done) {
      answer.replaceChildren(...linkify(done.answer, done.sources, name));
      answer.dataset.done = "1";
      const r = done.reply;
      stats.textContent = (done.abstained ? "No source is close enough to the question. " : "") +
        (r ? `${r.completion_tokens} tokens at ${fmt(r.tokens_per_s, 1)} tokens/s; ` : "") +
        `${done.citations.length} citation(s), ${done.invalid_citations} dropped`;
      results.replaceChildren(el("h2", {}, "Sources"), hitList(done.sources, name));
    }
  } catch (e) { showError(errorBox, e); }
  finally { answer.classList.remove("streaming"); go.disabled = false; }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("build").addEventListener("submit", build);
  document.getElementById("ask").addEventListener("submit", ask);
  document.getElementById("index").addEventListener("change", showIndex);
  document.getElementById("search-only").addEventListener("change", e => {
    document.getElementById("go").textContent = e.target.checked ? "Search" : "Ask";
  });
  const params = new URLSearchParams(location.search);
  try { await loadIndexes(params.get("index")); } catch (e) { showError(document.getElementById("error"), e); }
  if (params.get("path")) openSource(params.get("index"), params.get("path"), params.get("line") || 1);
});
