// The chat page: a conversation with any onecard.llm backend, streamed from POST /api/chat (Server-Sent Events),
// with the JSON-schema and tools toggles of `onecard chat`, and each reply's token counts and speed.
"use strict";

const history = [];  // the messages sent with each turn (the system prompt is added by the server)
let abort = null;

function field(name) { return document.querySelector(`[name="${name}"]`); }

function settings() {
  const body = {backend: field("backend").value, temperature: Number(field("temperature").value || 0),
                system: field("system").value};
  for (const k of ["model", "base_url"]) if (field(k).value.trim()) body[k] = field(k).value.trim();
  if (field("max_tokens").value) body.max_tokens = Number(field("max_tokens").value);
  if (field("use_schema").checked) body.json_schema = JSON.parse(field("schema").value);
  if (field("use_tools").checked) body.tools = JSON.parse(field("tools").value);
  return body;
}

function bubble(role, text) {
  const node = el("div", {class: "msg " + role}, text);
  document.getElementById("history").append(node);
  return node;
}

function speed(done) {
  const r = done.reply;
  return `${r.prompt_tokens} prompt tokens, ${r.completion_tokens} new: ${fmt(r.tokens_per_s, 1)} tokens/s, ` +
         `first token after ${fmt(r.ttft_s, 2)} s (${done.backend}, ${done.model})`;
}

async function send(text) {
  const errorBox = document.getElementById("error");
  errorBox.replaceChildren();
  let body;
  try { body = settings(); } catch (e) { showError(errorBox, {message: "the JSON schema or tools are not valid JSON: " + e.message}); return; }
  history.push({role: "user", content: text});
  bubble("user", text);
  const reply = bubble("assistant streaming", "");
  reply.dataset.role = "reply";
  body.messages = history;
  abort = new AbortController();
  document.getElementById("send").disabled = true;
  document.getElementById("stop").disabled = false;
  let finished = null;
  try {
    await readStream("/api/chat", {json: body, signal: abort.signal}, ev => {
      if (ev.type === "text") reply.firstChild ? reply.firstChild.appendData(ev.text) : reply.append(ev.text);
      else if (ev.type === "done") finished = ev;
      else if (ev.type === "error") throw new ApiError(200, ev);
    });
  } catch (e) {
    if (e.name !== "AbortError") showError(errorBox, e);
  } finally {
    reply.classList.remove("streaming");
    document.getElementById("send").disabled = false;
    document.getElementById("stop").disabled = true;
    abort = null;
  }
  if (finished) {
    const calls = finished.reply.tool_calls || [];
    for (const c of calls) reply.append(el("code", {}, `${c.name}(${JSON.stringify(c.arguments)})`));
    history.push(finished.message);
    reply.append(el("span", {class: "meta"}, speed(finished)));
    document.getElementById("stats").textContent = speed(finished);
    reply.dataset.done = "1";
  } else {
    history.pop();  // the turn failed or was stopped: it leaves the history as it was, as `onecard chat` does
    reply.dataset.done = "error";
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  const prompt = document.getElementById("prompt");
  document.getElementById("ask").addEventListener("submit", ev => {
    ev.preventDefault();
    const text = prompt.value.trim();
    if (!text || abort) return;
    prompt.value = "";
    send(text);
  });
  prompt.addEventListener("keydown", ev => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); document.getElementById("send").click(); }
  });
  document.getElementById("stop").addEventListener("click", () => abort && abort.abort());
  document.getElementById("reset").addEventListener("click", () => {
    history.length = 0;
    document.getElementById("history").replaceChildren();
    document.getElementById("stats").textContent = "";
  });
  field("use_schema").addEventListener("change", e => { document.getElementById("schema-box").hidden = !e.target.checked; });
  field("use_tools").addEventListener("change", e => { document.getElementById("tools-box").hidden = !e.target.checked; });
  try {
    const found = await api("/api/chat/models");
    document.getElementById("models").replaceChildren(...found.models.map(m => el("option", {value: m.ref}, m.backend)));
  } catch (e) { /* the list is a convenience; the model field still takes any name */ }
});
