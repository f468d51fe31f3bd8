// The Diffuse page: the sample form to POST /api/diffuse/sample (a `diffuse sample` job of the queue), then its
// images (GET /api/diffuse/image/JOB/N).
"use strict";

const NUMBERS = ["steps", "guidance", "weight", "seed", "batch", "resolution"];

async function draw() {
  const form = document.getElementById("form");
  const panel = document.getElementById("job");
  const config = {};
  for (const input of form.elements) {
    if (input.value === "") continue;
    config[input.name] = NUMBERS.includes(input.name) ? Number(input.value) : input.value;
  }
  const drawn = document.getElementById("drawn");
  drawn.hidden = true;  // the images of an earlier job never stand under this one
  const go = document.getElementById("go");
  go.disabled = true;  // one drawing at a time from this page: a second click would queue the same job again
  let job;
  try {
    job = await followJob((await api("/api/diffuse/sample", {json: config})).id, panel);
  } catch (err) { showError(panel, err); return; } finally { go.disabled = false; }
  if (job.status !== "succeeded") return;
  document.getElementById("images").replaceChildren(...job.result.images.map((image, n) => el("figure", {},
    el("img", {src: `/api/diffuse/image/${job.id}/${n}`, alt: job.result.prompt}),
    el("figcaption", {class: "muted"}, `seed ${image.seed}`))));
  drawn.hidden = false;
}

document.addEventListener("DOMContentLoaded", async () => {
  const missing = await notInstalled("diffuse sample");
  if (missing) {
    const box = document.getElementById("missing");
    box.textContent = `Image generation is ${missing}`;
    box.hidden = false;
    document.getElementById("ask").hidden = true;
    return;
  }
  const go = document.getElementById("go");
  go.disabled = false;
  go.addEventListener("click", draw);
});
