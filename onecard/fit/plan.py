"""The planner's front door: resolve the card and the model, call the family's estimator, say whether it fits.

Whether it fits is decided on the safe bound, not the point estimate: the process figure times (1 + the margin of
its job kind), the planner's worst under-prediction on its own cases of that kind (`onecard.fit.bound`). On a card
`onecard fit calibrate` has corrections for, the estimate is first scaled by the correction (`judge`).

A model reference resolves in this order: a local path that holds its own architecture (a folder with a config.json,
a config.json, a .safetensors beside one, a .gguf: planned from its files, never from its name, so a folder named
`tiny` is not Whisper tiny), the LLM catalog (name, hub id or Ollama tag), the diffusion, YOLO and Whisper catalogs,
any other local path, a hub id in the local HF cache.
Catalog answers import no torch and take a few milliseconds (benchmarks/startup.py measures the import cost).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from onecard.core.errors import ConfigError, ModelNotFoundError
from onecard.core.gpus import GpuSpec
from onecard.fit import bound, catalog, diffusion, llm, llm_infer, overheads, readers, whisper, yolo
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob

__all__ = ["Plan", "Resolved", "Family", "catalog_names", "check_flags", "looks_like_path",
           "resolve_card", "resolve_arch", "estimate", "judge", "plan"]

Family = Literal["llm", "diffusion", "yolo", "whisper"]
Estimator = Callable[[Any, FitJob, "GpuSpec | None"], Estimate]
# The families besides LLMs, in the order their catalogs are searched: (family, find, estimate, catalog).
_CATALOGS: tuple[tuple[Family, Callable[[str], Any], Estimator, dict[str, Any]], ...] = (
    ("diffusion", diffusion.find, diffusion.estimate, diffusion.CATALOG),
    ("yolo", yolo.find, yolo.estimate, yolo.CATALOG),
    ("whisper", whisper.find, whisper.estimate, whisper.CATALOG),
)


@dataclass
class Plan:
    """An estimate on a card, and whether it fits: the budget is the card's memory less the job's safety margin.

    Attributes:
        fits: whether the upper bound is within the budget (None: no card).
        headroom_gib: budget - upper bound (budget - the estimate where there is no bound).
        peak_upper_gib: the safe bound on the process figure (`margin.upper(estimate.process_gib)`).
        margin: the job kind's bound margin and what stands behind it.
        calibration: the correction applied to the estimate on this card, if `onecard fit calibrate` made one.
    """

    job: FitJob
    card: GpuSpec | None
    estimate: Estimate
    budget_gib: float | None
    fits: bool | None
    headroom_gib: float | None
    peak_upper_gib: float | None = None
    margin: bound.Margin | None = None
    calibration: bound.Correction | None = None


@dataclass(frozen=True)
class Resolved:
    """What a model reference resolved to: its family, its architecture facts and the estimator that sizes it.

    Attributes:
        family: llm (LLMs, VLMs and tinylm), diffusion, yolo or whisper.
        arch: the architecture (`LlmArch`, `DiffusionArch`, `YoloArch` or `WhisperArch`).
        estimator: the family's `estimate(arch, job, card)`.
    """

    family: Family
    arch: Any
    estimator: Estimator

    def estimate(self, job: FitJob, card: GpuSpec | None) -> Estimate:
        """The model's own peak of `job` (whose knobs may differ from the request's), uncalibrated, no bound.

        Raises:
            ConfigError: a runtime, weight format or training method the family's estimator does not plan.
        """
        check_flags(self.family, job)
        return overheads.eager_modules(self.estimator(self.arch, job, card), job, self.runtime(job))

    def runtime(self, job: FitJob) -> str:
        """The runtime that holds the model: an LLM's inference runtime, Whisper's, else PyTorch (`torch`)."""
        if self.family == "whisper":
            return whisper.runtime_of(job) if job.job == "infer" else "transformers"  # asr finetune trains on it
        if self.family == "llm" and self.kind(job) == "llm-infer":
            return llm_infer.runtime_of(self.arch, job)
        return "torch"

    def kind(self, job: FitJob) -> str:
        """The job kind its bound is kept for (`bound.kind_of`)."""
        return bound.kind_of(self.family, self.arch, job)

    def group(self, job: FitJob) -> str:
        """The mechanism group within its kind (`bound.group_of`: the stack an LLM trains on, the runtime it infers
        on, the diffusion offload mode, the YOLO task): what a bound margin and a calibration are kept for."""
        kind = self.kind(job)
        return bound.group_of(kind, self.arch, job, self.runtime(job) if kind == "llm-infer" else None)


# What each family's estimator plans besides the LLMs' own checks (llm_infer.parse_quant, llm_train): a flag it would
# otherwise ignore, or plan as something else, is refused. (family, job): (runtimes, weight formats; None: any).
_FLAGS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    ("llm", "train"): (("auto", "transformers"), None),
    ("diffusion", "infer"): (("auto", "diffusers"), ("auto", "fp16", "bf16", "fp32")),
    ("diffusion", "train"): (("auto", "diffusers"), ("auto", "fp16", "bf16", "fp32")),
    ("yolo", "infer"): (("auto", "ultralytics"), ("auto", "fp16", "fp32")),
    ("yolo", "train"): (("auto", "ultralytics"), ("auto",)),
    ("whisper", "infer"): (("auto", "openai-whisper", "faster-whisper", "transformers"),
                           ("auto", "fp16", "bf16", "fp32", "float32", "int8", "int8_float16", "int8_bfloat16",
                            "int8_float32")),
    ("whisper", "train"): (("auto", "transformers"), ("auto", "fp16", "bf16", "fp32")),
}
_WHY = {
    ("llm", "train"): "training runs on transformers; --stack names the library (trl, torchtune, unsloth, axolotl...)",
    ("yolo", "train"): "ultralytics trains fp32 weights with AMP (--no-amp for fp32 activations)",
}


def check_flags(family: str, job: FitJob) -> None:
    """Refuse a runtime, weight format or training method the family's estimator does not plan (it would be ignored).

    Raises:
        ConfigError: naming the flag, what was given and what the family takes.
    """
    runtimes, quants = _FLAGS.get((family, job.job), ((job.runtime,), None))
    what = f"{family} {'training' if job.job == 'train' else 'inference'}"
    why = _WHY.get((family, job.job), f"the {what} planner")
    if job.runtime not in runtimes:
        raise ConfigError(f"--runtime {job.runtime} does not run {what}",
                          f"use --runtime {' or '.join(runtimes)} ({why})")
    if quants is not None and job.quant.lower() not in quants:
        raise ConfigError(f"--quant {job.quant} is not a weight format {what} is planned in",
                          f"use --quant {', '.join(quants)} ({why})")
    if family == "whisper" and job.quant.lower().startswith("int8") and whisper.runtime_of(job) != "faster-whisper":
        raise ConfigError(f"--quant {job.quant} is CTranslate2's int8: {whisper.runtime_of(job)} runs fp16 or fp32",
                          "use --runtime faster-whisper for int8, or --quant fp16 / fp32")
    if family == "diffusion" and job.job == "train" and job.method == "full":
        raise ConfigError(f"--method {job.method}: diffusion training is planned as LoRA on the UNet (diffuse train)",
                          "leave --method out, or give --method lora")


def resolve_card(job: FitJob) -> GpuSpec | None:
    """The card to plan for: --gpu from the catalog, --vram as a custom card, else the detected GPU, else None."""
    from onecard.core import device, gpus

    if job.gpu and job.vram:
        raise ConfigError(f"--gpu {job.gpu} and --vram {job.vram:g} both name the card",
                          "give --gpu for a card in the catalog, or --vram for any other card's memory in GiB")
    if job.gpu:
        return gpus.lookup(job.gpu)
    if job.vram:
        return gpus.custom(job.vram)
    return device.local_gpu()


def resolve_arch(ref: str) -> Resolved:
    """The family, architecture and estimator of a model reference.

    Raises:
        ModelNotFoundError: nothing matches; the message lists the closest catalog names and how to get the model.
    """
    own = _own_files(ref)
    if own is not None:  # a folder or file with its own config is planned from it, never from its name
        config = own / "config.json" if own.is_dir() else own.parent / "config.json" \
            if own.suffix == ".safetensors" else own
        found = whisper.find(str(config)) if config.name == "config.json" else None
        if found is not None:
            return Resolved("whisper", found, whisper.estimate)
        return Resolved("llm", readers.read_path(own), llm.estimate)
    arch: Any = catalog.find(ref)
    if arch is not None:
        return Resolved("llm", arch, llm.estimate)
    for family, find, estimator, _ in _CATALOGS:
        found = find(ref)
        if found is not None:
            return Resolved(family, found, estimator)
    local = readers.local_path(ref)
    try:
        on_disk = local is not None and local.exists()
    except OSError:  # longer than a file name may be, say: not a path, then
        on_disk = False
    if on_disk:
        return Resolved("llm", readers.read_path(ref), llm.estimate)
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        cached = readers.find_in_hub_cache(ref)
        if cached is not None:
            return Resolved("llm", cached, llm.estimate)
        raise ModelNotFoundError(
            f"{ref!r} is not in the catalog and not in the local Hugging Face cache ({readers.hub_cache_dir()})",
            f"download its config with `huggingface-cli download {ref} --include config.json "
            "'*.safetensors.index.json'`, or pass a local config.json / model folder / .gguf path")
    shown = ref if len(ref) <= 80 else f"{ref[:60]}... ({len(ref):,} characters)"
    if looks_like_path(ref):
        raise ModelNotFoundError(f"no file or folder at {shown!r}",
                                 "check the path: a model folder with config.json, a config.json, or a .gguf file")
    raise ModelNotFoundError(f"unknown model {shown!r}: not a catalog name, and no file or folder at that path",
                             _suggest(ref[:200]))


def looks_like_path(ref: str) -> bool:
    """Whether a model reference is written as a path (./x, /x, ~/x, a\\b, a/b/c, x.gguf), not a name or a hub id."""
    return ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1 or \
        ref.lower().endswith((".json", ".gguf", ".safetensors"))


def _own_files(ref: str) -> Path | None:
    """The path `ref` names when it holds its own architecture: a folder with a config.json, a config.json (or other
    .json), a .safetensors with a config.json beside it, or a .gguf; None otherwise (a name, or a YOLO .pt file)."""
    path = readers.local_path(ref)
    if path is None:
        return None
    try:
        if path.is_dir():
            return path if (path / "config.json").is_file() else None
        if not path.is_file():
            return None
    except OSError:  # longer than a file name may be, say: not a path, then
        return None
    if path.suffix in (".json", ".gguf") or path.suffix == ".safetensors" and (path.parent / "config.json").is_file():
        return path
    return None


def _suggest(ref: str) -> str:
    pool = list(catalog.names())
    for _, _, _, entries in _CATALOGS:
        for key, arch in entries.items():
            pool += [key, *getattr(arch, "aliases", ())]
    close = difflib.get_close_matches(ref.lower(), pool, n=5, cutoff=0.5) or \
        difflib.get_close_matches(catalog.normalize(ref), pool, n=5, cutoff=0.4)
    hint = f"did you mean {', '.join(dict.fromkeys(close))}? " if close else ""
    return hint + "`onecard fit --list` shows the catalog; a local config.json, folder or .gguf path also works"


def catalog_names() -> dict[str, list[str]]:
    """Every catalog name by family (`onecard fit --list`): LLMs, then diffusion, YOLO and Whisper."""
    prefix = {"whisper": "whisper-"}  # the name `onecard fit` takes (whisper-large-v3)
    return {"llm": [arch.key for arch in catalog.CATALOG],
            **{family: [prefix.get(family, "") + key for key in sorted(entries)]
               for family, _, _, entries in _CATALOGS}}


def estimate(job: FitJob, card: GpuSpec | None = None) -> Estimate:
    """The peak memory of a job on a card (None: a card-independent estimate, no throughput)."""
    return resolve_arch(job.model).estimate(job, card)


def judge(resolved: Resolved, job: FitJob, card: GpuSpec | None, budget_gib: float | None = None) -> Plan:
    """Estimate `job` on `card` with this machine's correction, bound it, and decide on the bound whether it fits.

    Args:
        resolved: the job's model (`resolve_arch`).
        job: the job; `job.calibration` False leaves the saved correction out.
        card: the card; None: no budget and no verdict (the bound is still given).
        budget_gib: the memory the job may use; None: the card's memory less `job.margin_gib`.
    """
    kind, group = resolved.kind(job), resolved.group(job)
    fix = bound.correction(card.key, group, kind) if card is not None and job.calibration else None
    runtime = resolved.runtime(job)
    margin = bound.RESERVED if runtime == "vllm" else bound.margin(kind, group)
    if job.strict:
        margin = bound.strict(margin)
    scale = (1 + margin.margin) * (fix.scale if fix is not None else 1.0)  # upper bound / uncalibrated estimate
    budget = None if card is None else card.usable_gib - job.margin_gib if budget_gib is None else budget_gib
    if card is not None and budget_gib is None and budget is not None and budget <= 0:
        raise ConfigError(f"a margin of {job.margin_gib:g} GiB leaves no memory to plan in: the {card.name} has "
                          f"{card.usable_gib:.1f} GiB CUDA can allocate", "name a card with more memory (--gpu / "
                          "--vram); with `onecard fit`, a --margin-gib below the card's memory (0.5 by default)")
    if runtime == "vllm" and card is not None and budget is not None:
        # vLLM takes gpu_memory_utilization of the card and refuses to start when its KV pool cannot hold the job
        budget = min(budget, job.gpu_memory_utilization * card.usable_gib)
    est = resolved.estimate(job, card)
    if card is not None and budget is not None and runtime == "llama.cpp" and job.gpu_layers is None \
            and est.process_gib * scale + margin.abs_gib > budget:
        # llama.cpp's GPU layers are the planner's to choose (as many as fit): as many as fit on the bound
        room = max(0.0, budget - margin.abs_gib) / scale
        est = resolved.estimate(job.model_copy(update={"margin_gib": max(0.0, card.usable_gib - room)}), card)
    if fix is not None:
        est = bound.apply(est, fix)
    upper = margin.upper(est.process_gib)
    if card is None or budget is None:
        return Plan(job, None, est, None, None, None, upper, margin, fix)
    return Plan(job, card, est, budget, upper <= budget + 1e-9, budget - upper, upper, margin, fix)  # vLLM: equal


def plan(job: FitJob) -> Plan:
    """Estimate the job on its card and decide whether it fits: upper bound <= card memory - margin (`judge`)."""
    return judge(resolve_arch(job.model), job, resolve_card(job))
