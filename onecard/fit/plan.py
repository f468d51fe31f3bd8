"""The planner's front door: resolve the card and the model, call the family's estimator, say whether it fits.

A model reference resolves in this order: the LLM catalog (name, hub id or Ollama tag), the diffusion, YOLO and
Whisper catalogs, a local path (config.json, model folder, .safetensors, .gguf), a hub id in the local HF cache.
Catalog answers import no torch and take a few milliseconds (benchmarks/startup.py measures the import cost).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onecard.core.errors import ModelNotFoundError
from onecard.core.gpus import GpuSpec
from onecard.fit import catalog
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob

__all__ = ["Plan", "resolve_card", "resolve_model", "estimate", "plan"]

_OTHER_FAMILIES = ("diffusion", "yolo", "whisper")  # onecard.fit.<family>: find(name) and estimate(arch, job, card)


@dataclass
class Plan:
    """An estimate on a card: the budget is the card's memory less the job's safety margin."""

    job: FitJob
    card: GpuSpec | None
    estimate: Estimate
    budget_gib: float | None
    fits: bool | None
    headroom_gib: float | None


def resolve_card(job: FitJob) -> GpuSpec | None:
    """The card to plan for: --gpu from the catalog, --vram as a custom card, else the detected GPU, else None."""
    from onecard.core import gpus

    if job.gpu:
        return gpus.lookup(job.gpu)
    if job.vram:
        return gpus.custom(job.vram)
    from onecard.core import device

    return device.local_gpu()


def _family(name: str) -> Any:
    try:
        return importlib.import_module(f"onecard.fit.{name}")
    except ImportError:  # a family module not written yet
        return None


def resolve_model(ref: str) -> tuple[Any, Any]:
    """(estimator module, architecture) for a model reference.

    Raises:
        ModelNotFoundError: nothing matches; the message lists the closest catalog names and how to get the model.
    """
    from onecard.fit import llm, readers

    arch: Any = catalog.find(ref)
    if arch is not None:
        return llm, arch
    for name in _OTHER_FAMILIES:
        module = _family(name)
        found = module.find(ref) if module is not None else None
        if found is not None:
            return module, found
    if Path(ref).expanduser().exists():
        return llm, readers.read_path(ref)
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        cached = readers.find_in_hub_cache(ref)
        if cached is not None:
            return llm, cached
        raise ModelNotFoundError(
            f"{ref!r} is not in the catalog and not in the local Hugging Face cache ({readers.hub_cache_dir()})",
            f"download its config with `huggingface-cli download {ref} --include config.json "
            "'*.safetensors.index.json'`, or pass a local config.json / model folder / .gguf path")
    raise ModelNotFoundError(f"unknown model {ref!r}: not a catalog name, and no file or folder at that path",
                             _suggest(ref))


def _suggest(ref: str) -> str:
    pool = list(catalog.names())
    for name in _OTHER_FAMILIES:
        entries = getattr(_family(name), "CATALOG", {})  # a dict name -> arch in the other families
        for key, arch in (entries.items() if isinstance(entries, dict) else ((a.key, a) for a in entries)):
            pool += [key, *getattr(arch, "aliases", ())]
    close = difflib.get_close_matches(ref.lower(), pool, n=5, cutoff=0.5) or \
        difflib.get_close_matches(catalog.normalize(ref), pool, n=5, cutoff=0.4)
    hint = f"did you mean {', '.join(dict.fromkeys(close))}? " if close else ""
    return hint + "`onecard fit --list` shows the catalog; a local config.json, folder or .gguf path also works"


def estimate(job: FitJob, card: GpuSpec | None = None) -> Estimate:
    """The peak memory of a job on a card (None: a card-independent estimate, no throughput)."""
    module, arch = resolve_model(job.model)
    result: Estimate = module.estimate(arch, job, card)
    return result


def plan(job: FitJob) -> Plan:
    """Estimate the job on its card and decide whether it fits: process memory <= card memory - margin."""
    card = resolve_card(job)
    est = estimate(job, card)
    if card is None:
        return Plan(job, None, est, None, None, None)
    budget = card.vram_gib - job.margin_gib
    return Plan(job, card, est, budget, est.process_gib <= budget, budget - est.process_gib)
