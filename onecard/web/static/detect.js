// The Detect page: an image upload to POST /api/detect/predict (a `detect predict` job of the queue), then the
// job's boxes drawn over the image on a canvas, with a table of them.
"use strict";

async function detect() {
  const form = document.getElementById("form");
  const file = form.image.files[0];
  const panel = document.getElementById("job");
  if (!file) { showError(panel, new Error("choose an image first")); return; }
  const body = new FormData();
  body.append("image", file);
  body.append("run", form.run.value);
  body.append("conf", form.conf.value);
  let job;
  try {
    job = await api("/api/detect/predict", {method: "POST", body});
    job = await followJob(job.id, panel);
  } catch (err) { showError(panel, err); return; }
  if (job.status !== "succeeded") return;
  draw(file, job.result.images[0].detections);
}

function draw(file, detections) {
  const canvas = document.getElementById("canvas");
  const image = new Image();
  image.onload = () => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0);
    ctx.lineWidth = Math.max(2, image.naturalWidth / 300);
    ctx.font = `${Math.max(12, image.naturalWidth / 50)}px sans-serif`;
    detections.forEach(d => {
      const [x1, y1, x2, y2] = d.box_xyxy;
      const color = COLORS[d.class % COLORS.length];
      ctx.strokeStyle = ctx.fillStyle = color;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = `${d.name} ${d.confidence.toFixed(2)}`;
      const size = parseInt(ctx.font);
      const top = Math.max(y1, size + 4);  // a box at the image's top edge gets its label inside it
      ctx.fillRect(x1, top - size - 4, ctx.measureText(label).width + 6, size + 4);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x1 + 3, top - 4);
    });
    canvas.dataset.boxes = detections.length;
  };
  image.src = URL.createObjectURL(file);
  document.querySelector("#boxes tbody").replaceChildren(...detections.map(d => el("tr", {},
    el("td", {}, d.name), el("td", {class: "num"}, d.confidence.toFixed(3)), el("td", {}, d.box_xyxy.join(", ")))));
}

document.addEventListener("DOMContentLoaded", async () => {
  const missing = await notInstalled("detect predict");
  if (missing) {
    const box = document.getElementById("missing");
    box.textContent = `Detection is ${missing}`;
    box.hidden = false;
    document.getElementById("ask").hidden = true;
    return;
  }
  const go = document.getElementById("go");
  go.disabled = false;
  go.addEventListener("click", detect);
});
