// The VLM page: whether onecard.vlm is built and installed here (/api/vlm/status), and a question about an uploaded
// image answered by the vision model as a stream (POST /api/vlm/chat).
"use strict";

async function ask() {
  const form = document.getElementById("form");
  const file = form.image.files[0];
  const answer = document.getElementById("answer");
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
  document.getElementById("speed").textContent = "…";
  try {
    await readStream("/api/vlm/chat", {method: "POST", body}, ev => {
      if (ev.type === "text") answer.textContent += ev.text;
      else if (ev.type === "done") {
        const r = ev.reply;
        document.getElementById("speed").textContent = `${r.completion_tokens} tokens` +
          (r.tokens_per_s ? `, ${r.tokens_per_s.toFixed(1)} tokens/s` : "");
        answer.dataset.done = "1";
      } else if (ev.type === "error") showError(error, {message: ev.error, fix: ev.fix});
    });
  } catch (err) { showError(error, err); }
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
