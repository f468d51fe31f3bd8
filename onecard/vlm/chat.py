"""`onecard vlm chat`: one streamed answer, or a REPL, about images, through `onecard.llm`'s one chat interface.

transformers loads the model folder ("tiny", a folder, a cached hub id) in the weights `onecard fit` picks for the
card (bf16 when it fits, else NF4); llama.cpp takes a .gguf with its --mmproj projector (CPU or partial offload);
Ollama serves its own vision models. The conversation is saved with the run record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from onecard.llm import Backend, LLMConfig, UnsupportedError, load
from onecard.vlm.config import VlmChatConfig

__all__ = ["VlmChatConfig", "open_backend", "chat"]


def open_backend(config: VlmChatConfig) -> Backend:
    """The vision model behind `onecard.llm`, fitted to the card.

    Raises:
        UnsupportedError: the model cannot read images (a text model, or a .gguf without --mmproj).
    """
    from onecard.vlm.model import model_dir

    name = config.backend if config.backend != "auto" else "llamacpp" if config.model.endswith(".gguf") \
        else "transformers"
    model = str(model_dir(config.model)) if name == "transformers" else config.model
    settings = {k: getattr(config, k) for k in LLMConfig.model_fields}
    backend = load(LLMConfig.model_validate({**settings, "model": model, "backend": name}), gpu=config.gpu)
    if not backend.capabilities.vision:
        backend.close()
        fix = ("pass the model's projector with --mmproj mmproj.gguf" if name == "llamacpp" else
               "pass a vision model: a LLaVA-style folder or hub id (llava-hf/llava-1.5-7b-hf), or 'tiny'")
        raise UnsupportedError(f"{config.model} cannot read images ({'; '.join(backend.capabilities.notes)})", fix)
    return backend


def chat(config: VlmChatConfig, lines: Iterator[str], out: TextIO, status: Callable[[str], None],
         as_json: bool = False, stdin_text: str | None = None, runs_root: str | Path | None = None
         ) -> dict[str, Any]:
    """Answer `config.prompt` about `config.image` (one shot), or talk in a REPL over `lines`; return the run's
    summary. The run record holds the settings, the conversation (chat.json) and the token counts."""
    from onecard.core.records import start_run
    from onecard.llm.chat import Chat, one_shot, repl

    backend = open_backend(config)
    for note in backend.notes:
        status(note)
    status(" ".join(f"{k}={v}" for k, v in backend.settings.items()))
    talk = Chat(backend, config)
    inputs = {f"image{i}": path for i, path in enumerate(config.image)}
    try:
        with start_run("vlm", config, inputs=inputs, seed=config.seed, runs_root=runs_root, report_to=()) as run:
            run.set("backend", {"name": backend.name, "notes": backend.notes, **backend.settings})
            metrics: dict[str, Any] = {}
            try:
                if config.prompt is not None:
                    reply = one_shot(talk, config.prompt, stdin_text, out, status, as_json, config.image)
                    metrics = {k: v for k, v in reply.to_json().items() if k not in ("text", "tool_calls")}
                else:
                    repl(talk, lines, out, status, as_json, config.image)
            finally:
                talk.save(run.dir / "chat.json")
                run.add_artifact(run.dir / "chat.json", kind="conversation")
                run.set_metrics({"turns": sum(m["role"] == "assistant" for m in talk.history), **metrics})
    finally:
        backend.close()
    return {"run_id": run.id, "dir": str(run.dir), **run.record["metrics"]}
