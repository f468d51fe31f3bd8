// The Start page's recipe panel (#recipe): pick a path, card and OS; /api/recipe answers with the recipe's Markdown,
// drawn here by a small renderer of the subset the recipe uses (headings, fenced code, lists, paragraphs, `code`,
// **bold**). Text is only ever added as text nodes. Clicking a row of the paths table picks that path.
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

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], {type: "text/plain"}));
  objectUrls.push(url);
  return el("a", {href: url, download: name}, name);
}

async function showRecipe() {
  const q = ["path", "gpu", "os"].map(k => `${k}=${encodeURIComponent(document.getElementById("recipe-" + k).value)}`);
  const out = document.getElementById("recipe-out");
  out.classList.add("muted");
  try {
    const r = await api("/api/recipe?" + q.join("&"));
    objectUrls.forEach(URL.revokeObjectURL);
    objectUrls = [];
    const blocks = mdBlocks(r.markdown);
    const yamls = blocks.filter(b => b.dataset && b.dataset.lang === "yaml").map(b => b.textContent + "\n");
    out.replaceChildren(
      el("p", {}, "Download: ", download("recipe.md", r.markdown),
         r.configs.flatMap((c, k) => [", ", download(c.file, yamls[k])])),
      ...blocks);
  } catch (err) { showError(out, err); }
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
