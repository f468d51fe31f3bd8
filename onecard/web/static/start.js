// The Start page: this machine (doctor), what its card runs (fit), the guide's paths with links to their pages.
// The recipe part (#recipe) is filled by recipe.js from /api/recipe.
"use strict";

function showMachine(m) {
  const gpus = m.gpus.length ? m.gpus.map(g => `${g.name} (${fmt(g.vram_total_gib, 1)} GiB)`).join(", ") : m.gpu_note;
  const rows = [["system", `${m.os.system} ${m.os.release}`], ["Python", m.python.version],
                ["CPU", `${m.cpu.model}, ${m.cpu.logical_cores} threads`], ["RAM", `${m.ram.total_gib} GiB`],
                ["GPU", gpus], ["torch", m.torch.installed ? `${m.torch.version} (${m.torch.build})` : "not installed"]];
  const missing = m.missing.map(x => el("li", {}, el("b", {}, x.what), `: ${x.for}. `, el("code", {}, x.install)));
  document.getElementById("machine").replaceChildren(
    el("table", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
    missing.length ? el("div", {}, el("h2", {}, "Missing"), el("ul", {}, missing)) : "");
}

async function load() {
  const card = document.getElementById("card").value;
  try {
    const data = await api("/api/start" + (card ? "?gpu=" + encodeURIComponent(card) : ""));
    showMachine(data.machine);
    document.getElementById("can-run").replaceChildren(...data.can_run.lines.map(l => el("li", {}, l)));
    document.getElementById("paths").replaceChildren(el("tr", {}, ["path", "", "page", "installed"].map(h => el("th", {}, h))),
      ...data.paths.map(p => el("tr", {"data-path": p.key}, el("td", {}, el("code", {}, p.key)), el("td", {}, p.title),
        el("td", {}, el("a", {href: p.page}, p.page)),
        el("td", {}, p.installed ? "yes" : el("code", {}, `pip install 'onecard[${p.extra}]'`)))));
  } catch (err) { showError(document.getElementById("machine"), err); }
}

document.addEventListener("DOMContentLoaded", async () => {
  const select = document.getElementById("card");
  try {
    for (const c of await api("/api/fit/cards")) select.append(el("option", {value: c.key}, c.name.replace("NVIDIA ", "")));
  } catch (err) { /* the list is a convenience; load() shows errors */ }
  select.addEventListener("change", load);
  load();
});
