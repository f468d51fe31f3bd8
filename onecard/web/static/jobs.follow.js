// Following one job of the queue from a capability page (detect, asr, diffuse): its status (queued, position N;
// running, with progress; its run), its log in a <details>, its error. followJob(id, panel) resolves with the job.
"use strict";

// jobView(panel, id): the job's status line and log in `panel`; returns the handler of its "status" and "line"
// events, as /api/jobs/ID/log sends them (and the VLM page's chat stream, which passes them on).
function jobView(panel, id) {
  const status = el("p", {class: "job-status"}, id ? `job ${id}: queued` : "queued");
  const log = el("pre", {class: "job-log"});
  panel.replaceChildren(status, el("details", {}, el("summary", {}, "log"), log));
  return ev => {
    if (ev.type === "line") { log.textContent += ev.text + "\n"; return; }
    const state = ev.status === "queued" && ev.position ? `queued, position ${ev.position}` : ev.status;
    const running = ev.status === "running" && ev.progress;
    status.replaceChildren(el("a", {href: `/jobs#${ev.id}`}, `job ${ev.id}`), ": ", state,
                           running ? ` (${ev.progress.text})` : "",
                           ...(ev.run_id ? [", run ", el("a", {href: ev.run_url}, ev.run_id)] : []));
    status.dataset.status = ev.status;
  };
}

async function followJob(id, panel) {
  await readStream(`/api/jobs/${id}/log`, {}, jobView(panel, id));
  const job = await api(`/api/jobs/${id}`);
  // the CLI's error and, on its own line, its fix
  if (job.error) panel.append(el("div", {class: "error", style: "white-space: pre-line"}, job.error));
  return job;
}

// The job kind's install state: null when installed, else the line that says how to install it.
async function notInstalled(kind) {
  const kinds = await api("/api/jobs/kinds");
  const found = kinds.find(k => k.kind === kind);
  return found && !found.installed ? found.install : null;
}
