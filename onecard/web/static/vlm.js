// The VLM page: whether onecard.vlm is built and installed here (/api/vlm/status), and a question about an uploaded
// image (POST /api/vlm/chat): a `vlm chat` job of the queue, whose status and log show while it waits and runs
// (jobView of jobs.follow.js), then the answer, its speed and its run.
"use strict";

async function ask() {
  const form = document.getElementById("form");
  const file = form.image.files[0];
  const answer = document.getElementById("answer");
  const speed = document.getElementById("speed");
  const error = document.getElementById("error");
  error.replaceChildren();
  if (!file || !form.question.value) { showError(error, new Error("choose an image and ask a question")); return; }
  const preview = document.getElementById("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const body = new FormData();
  body.append("image", file);
  for (const name of ["question", "model", "max_tokens"]) body.append(name, form[name].value);
  answer.textContent = "";
  delete answer.dataset.done;
  speed.textContent = "";
  const go = document.getElementById("go");
  go.disabled = true;  // one question at a time from this page: the next waits for this answer
  const job = jobView(document.getElementById("job"));
  try {
    await readStream("/api/vlm/chat", {method: "POST", body}, ev => {
      if (ev.type === "status" || ev.type === "line") job(ev);
      else if (ev.type === "text") answer.textContent += ev.text;
      else if (ev.type === "done") {
        const r = ev.reply;
        speed.replaceChildren(`${r.completion_tokens} tokens` +
          (r.tokens_per_s ? `, ${r.tokens_per_s.toFixed(1)} tokens/s` : ""),
          ...(ev.run_id ? [", recorded as run ", el("a", {href: ev.run_url}, ev.run_id)] : []));
        answer.dataset.done = "1";
      } else if (ev.type === "error") showError(error, {message: ev.error, fix: ev.fix});
    });
  } catch (err) { showError(error, err); }
  go.disabled = false;
}

document.addEventListener("DOMContentLoaded", async () => {
  const state = await api("/api/vlm/status");
  if (!state.installed) {
    const box = document.getElementById("missing");
    box.textContent = `Chat about images (onecard vlm) is ${state.message}.`;
    box.hidden = false;
    return;
  }
  document.getElementById("ask").hidden = false;
  const go = document.getElementById("go");
  go.disabled = false;
  go.addEventListener("click", ask);
});
