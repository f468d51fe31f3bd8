"""`onecard llm list` and `onecard llm pull`: the models on this machine, and fetching one from the hub when online.

Listed: models that installed packages ship, GGUF files in the folders people keep them in (and the Hugging Face
cache), chat models in the hub cache, and what a running Ollama has. Nothing downloads except through `pull`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from onecard.core.errors import ModelNotFoundError, OnecardError

__all__ = ["LocalModel", "list_local", "gguf_folders", "pull", "render_list"]

LocalModel = dict[str, Any]  # {"ref": what --model takes, "backend": ..., "source": ..., "size_gib": ..., "path": ...}


def gguf_folders() -> list[Path]:
    """Where GGUF files usually are: ~/models, LM Studio's folders, llama.cpp's cache, $ONECARD_MODELS."""
    home = Path.home()
    found = [home / "models", home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models",
             home / ".cache" / "llama.cpp"]
    if os.environ.get("LLAMA_CACHE"):
        found.append(Path(os.environ["LLAMA_CACHE"]))
    found += [Path(p) for p in os.environ.get("ONECARD_MODELS", "").split(os.pathsep) if p]
    return found


def list_local(ollama_url: str | None = None, folders: list[Path] | None = None) -> list[LocalModel]:
    """Every model `onecard chat --model` can use here, without touching the network (Ollama is asked locally)."""
    from onecard.core.sources import SHIPPED, hub_cache_dir, resolve_model

    models: list[LocalModel] = []
    for name, shipped in SHIPPED.items():
        if not shipped.pattern.endswith(".gguf"):
            continue  # the other packaged models are not chat models
        try:
            path = resolve_model(name).path
        except ModelNotFoundError:
            continue
        models.append(_entry(name, "llamacpp", f"package {shipped.distribution}", path))
    for folder in folders if folders is not None else gguf_folders():
        for path in sorted(folder.expanduser().rglob("*.gguf")) if folder.expanduser().is_dir() else []:
            models.append(_entry(str(path), "llamacpp", str(folder), path))
    cache = hub_cache_dir()
    for repo in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        hub_id = repo.name[len("models--"):].replace("--", "/")
        snapshots = sorted(repo.glob("snapshots/*"))
        for path in sorted({p for s in snapshots for p in s.rglob("*.gguf")}):
            models.append(_entry(str(path), "llamacpp", f"hub cache {hub_id}", path))
        if any(_is_chat_model(s) for s in snapshots):
            models.append(_entry(hub_id, "transformers", "hub cache", snapshots[-1]))
    models += _ollama(ollama_url)
    return models


def _entry(ref: str, backend: str, source: str, path: Path) -> LocalModel:
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"ref": ref, "backend": backend, "source": source, "size_gib": round(size / 2**30, 2), "path": str(path)}


def _is_chat_model(snapshot: Path) -> bool:
    config = snapshot / "tokenizer_config.json"
    return (snapshot / "config.json").is_file() and config.is_file() and "chat_template" in config.read_text(
        encoding="utf-8", errors="replace")


def _ollama(url: str | None) -> list[LocalModel]:
    from onecard.llm.base import BackendUnavailableError
    from onecard.llm.ollama import list_models

    try:
        found = list_models(url, timeout_s=1.0)
    except BackendUnavailableError:
        return []
    return [{"ref": m["name"], "backend": "ollama", "source": "Ollama", "path": None,
             "size_gib": round((m["size"] or 0) / 2**30, 2), "quant": m["quant"]} for m in found]


def pull(ref: str, include: str | None = None) -> Path:
    """Download a model into the Hugging Face cache and return its local path.

    Args:
        ref: `org/name` (the whole repo, or the files matching `include`) or `org/name/FILE.gguf` (one file).
        include: a glob such as `*Q4_K_M.gguf`, to take one quantization from a repo of many.
    """
    from onecard.core.extras import require

    hub = require("huggingface_hub", "llm", "huggingface-hub")
    parts = ref.strip("/").split("/")
    if len(parts) < 2 or ref.startswith((".", "~")):
        raise OnecardError(f"{ref!r} is not a hub reference",
                           "pass org/name (e.g. HuggingFaceTB/SmolLM2-360M-Instruct) or org/name/FILE.gguf; for "
                           "Ollama models run `ollama pull NAME`")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise OnecardError(f"cannot download {ref}: HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} is set, so "
                           "the Hugging Face hub is off limits",
                           "unset HF_HUB_OFFLINE on a machine that is online, or copy the file here and pass its path")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        if filename:
            return Path(hub.hf_hub_download(repo, filename))
        return Path(hub.snapshot_download(repo, allow_patterns=include))
    except hub.errors.LocalEntryNotFoundError as e:  # the hub did not answer and the cache has nothing
        raise OnecardError(f"cannot download {ref}: the Hugging Face hub is unreachable ({e})",
                           "connect to the internet and try again, or copy the file here and pass its path") from None
    except hub.errors.RepositoryNotFoundError:
        raise ModelNotFoundError(f"no repository {repo} on the Hugging Face hub (or it is private)",
                                 "check the name on huggingface.co; for a private or gated repo run `hf auth login`"
                                 ) from None
    except hub.errors.EntryNotFoundError:
        raise ModelNotFoundError(f"{repo} has no file {filename}", f"see the file list at huggingface.co/{repo}"
                                 ) from None
    except OSError as e:
        raise OnecardError(f"cannot download {ref}: {type(e).__name__}: {e}",
                           "check the connection and the free disk space, then try again") from None


def render_list(models: list[LocalModel], console: Any) -> None:
    """The `onecard llm list` table, with the --model value to copy."""
    from rich.table import Table

    table = Table("--model", "--backend", "GiB", "from", title="Models on this machine")
    for m in models:
        table.add_row(m["ref"], m["backend"], f"{m['size_gib']:.2f}", m["source"])
    console.print(table)
    if not any(m["backend"] == "ollama" for m in models):
        console.print("(Ollama is not running or has no models; `ollama serve` starts it)", style="dim")
