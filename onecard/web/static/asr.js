// The ASR page: an audio upload (with speakers and diarizer) to POST /api/asr/transcribe (an `asr transcribe` job
// of the queue), then its transcript (GET /api/asr/transcript/JOB) as rows of time, speaker and text, and which
// diarizer labelled the speakers and why; a click on a row plays from there.
"use strict";

function clock(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

async function transcribe() {
  const form = document.getElementById("form");
  const file = form.audio.files[0];
  const panel = document.getElementById("job");
  if (!file) { showError(panel, new Error("choose an audio file first")); return; }
  const body = new FormData();
  for (const name of ["model", "language", "speakers", "diarizer"]) body.append(name, form[name].value);
  body.append("audio", file);
  const player = document.getElementById("player");
  player.src = URL.createObjectURL(file);
  player.hidden = false;
  let transcript;
  try {
    const job = await followJob((await api("/api/asr/transcribe", {method: "POST", body})).id, panel);
    if (job.status !== "succeeded") return;
    transcript = await api(`/api/asr/transcript/${job.id}`);
  } catch (err) { showError(panel, err); return; }
  const who = transcript.diarizer ? `; speakers by ${transcript.diarizer.name} (${transcript.diarizer.reason})` : "";
  document.getElementById("summary").textContent =
    `${transcript.duration_s.toFixed(1)} s of ${transcript.language} audio, ${transcript.segments.length} segments${who}`;
  document.querySelector("#segments tbody").replaceChildren(...transcript.segments.map(s => el("tr", {
    onclick: () => { player.currentTime = s.start; player.play(); }},
    el("td", {class: "time"}, `${clock(s.start)} – ${clock(s.end)}`), el("td", {}, s.speaker || ""),
    el("td", {}, s.text))));
}

document.addEventListener("DOMContentLoaded", async () => {
  const missing = await notInstalled("asr transcribe");
  if (missing) {
    const box = document.getElementById("missing");
    box.textContent = `Transcription is ${missing}`;
    box.hidden = false;
    document.getElementById("ask").hidden = true;
    return;
  }
  const go = document.getElementById("go");
  go.disabled = false;
  go.addEventListener("click", transcribe);
});
