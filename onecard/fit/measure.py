"""`--measure`: run the real job for a few steps on the GPU and read the allocator's and NVML's peaks.

The model is built from its config with random weights (nothing is downloaded); 8-bit and 4-bit weights go through
bitsandbytes, LoRA through peft, as `tune` runs them. Diffusion, YOLO and Whisper jobs run through
`measure_jobs` (diffusers, ultralytics, transformers). The figures are read the way the measured table's sources read
theirs: `torch.cuda.max_memory_allocated/reserved`, and NVML's memory for this process (allocator cache included,
since nothing is freed before the reading).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onecard.core.errors import ConfigError, OnecardError
from onecard.core.extras import require
from onecard.core.gpus import GpuSpec
from onecard.fit import measure_jobs, stacks
from onecard.fit.estimate import GIB, Estimate
from onecard.fit.job import FitJob
from onecard.fit.knobs import effective_quant, family, is_gguf
from onecard.fit.observations import predicted_figure
from onecard.fit.plan import resolve_arch
from onecard.fit.trace import hf_config, prepare_training

__all__ = ["Measured", "measure", "require_cuda"]


@dataclass
class Measured:
    """Peaks read on the GPU after a few real steps (GiB)."""

    peak_allocated_gib: float  # torch.cuda.max_memory_allocated()
    peak_reserved_gib: float  # torch.cuda.max_memory_reserved()
    process_gib: float | None  # NVML: this process's memory (None where NVML cannot see it)
    device: str
    steps: int
    step_s: float | None = None
    tokens_per_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def versus(self, estimate: Estimate, card: GpuSpec | None = None) -> list[tuple[str, float, float | None]]:
        """(figure, predicted, measured) rows to print side by side, measured on `card` (the reserved and nvidia-smi
        figures hold the allocator cache it has room for)."""
        usable_gib = None if card is None else card.usable_gib
        return [("peak allocated", estimate.peak_allocated_gib, self.peak_allocated_gib),
                ("peak reserved", predicted_figure(estimate, "reserved", usable_gib), self.peak_reserved_gib),
                ("process (nvidia-smi)", predicted_figure(estimate, "process", usable_gib), self.process_gib)]


def require_cuda() -> Any:
    """torch, once it is known to see an NVIDIA GPU; otherwise an error that points to `--trace`."""
    torch = require("torch", "tune")
    if not torch.cuda.is_available():
        raise OnecardError(
            f"measuring needs an NVIDIA GPU with CUDA, and torch {torch.__version__} sees none here",
            "run the same command with --trace instead of --measure: it counts the peak on fake tensors, no GPU needed",
        )
    return torch


def _nvml_used(torch: Any) -> tuple[int | None, int]:
    """(bytes NVML charges to this process or None, bytes used on the whole device)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        bus_id = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
        mine = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                if p.pid == os.getpid() and p.usedGpuMemory]
        return (mine[0] if mine else None), pynvml.nvmlDeviceGetMemoryInfo(handle).used
    finally:
        pynvml.nvmlShutdown()


def _quantize(model: Any, quant: str, dtype: Any) -> None:
    """Swap every nn.Linear but the output head for its bitsandbytes layer; weights quantize on `.cuda()`."""
    torch = require("torch", "tune")
    bnb = require("bitsandbytes", "tune")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or name == "lm_head":
                continue
            bias = child.bias is not None
            if quant == "int8":
                new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=bias, has_fp16_weights=False)
                new.weight = bnb.nn.Int8Params(child.weight.data, requires_grad=False, has_fp16_weights=False)
            else:  # nf4 / fp4 with double quantization, as QLoRA
                new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=bias, compute_dtype=dtype,
                                        quant_type=quant, compress_statistics=True)
                new.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type=quant,
                                               compress_statistics=True)
            if bias:
                new.bias = child.bias
            setattr(parent, name, new)


def _model(job: FitJob, config: Any, torch: Any) -> tuple[Any, list[str]]:
    transformers = require("transformers", "tune")
    dtype = torch.float32 if effective_quant(job) == "fp32" else (
        torch.bfloat16 if torch.cuda.is_bf16_supported() and effective_quant(job) != "fp16" else torch.float16)
    quant = effective_quant(job)
    attn = "eager" if job.attention == "eager" else "sdpa"
    notes = [f"random weights from the config, {str(dtype).removeprefix('torch.')} compute, {attn} attention"]
    if quant in ("nf4", "fp4", "int8"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
        _quantize(model, quant, dtype)
        notes.append(f"bitsandbytes {quant} linear layers (output head in 16-bit)")
        model = model.cuda()
    elif quant in ("fp32", "fp16", "bf16"):
        with torch.device("cuda"):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    else:
        raise ConfigError(f"--measure runs bitsandbytes or 16/32-bit weights, not {quant!r}",
                          "use --quant nf4, int8, bf16, fp16 or fp32 with --measure")
    return model, notes


def _optimizer(job: FitJob, params: list[Any], torch: Any) -> Any:
    name = job.optimizer if job.optimizer != "auto" else ("paged_adamw8bit" if job.method == "qlora" else "adamw")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-4)
    if name == "adafactor":
        return require("transformers", "tune").Adafactor(params, lr=1e-4, relative_step=False, scale_parameter=False)
    bnb = require("bitsandbytes", "tune")
    cls = {"adamw8bit": bnb.optim.AdamW8bit, "paged_adamw8bit": bnb.optim.PagedAdamW8bit,
           "paged_adamw": bnb.optim.PagedAdamW}[name]
    return cls(params, lr=1e-4)


def _train(model: Any, job: FitJob, vocab: int, steps: int, torch: Any, notes: list[str]) -> list[float]:
    model = prepare_training(model, job)
    model.train()
    optimizer = _optimizer(job, [p for p in model.parameters() if p.requires_grad], torch)
    notes.append(f"{steps} training steps of batch {job.batch} x {job.seq} random tokens, {type(optimizer).__name__}")
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        ids = torch.randint(0, vocab, (job.batch, job.seq), device="cuda")
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _generate(model: Any, job: FitJob, vocab: int, torch: Any, notes: list[str]) -> float:
    prompt = max(1, job.ctx - job.new_tokens)
    ids = torch.randint(0, vocab, (job.batch, prompt), device="cuda")
    notes.append(f"generate(): batch {job.batch}, {prompt} prompt tokens + {job.new_tokens} new tokens, greedy")
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=job.new_tokens,
                       min_new_tokens=job.new_tokens, do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(job: FitJob, config: Any = None, steps: int = 3) -> Measured:
    """Run the job on the GPU (a few training steps, or one generate / pipeline call / transcription) and read its
    memory peaks.

    Args:
        job: an LLM/VLM job on transformers (training: full, LoRA, QLoRA; inference: generate), a diffusers job
            (sd15, sdxl: a pipeline call or LoRA training steps), an ultralytics YOLOv8 job (training steps or a
            predict forward) or a Whisper job on transformers (beam search or fine-tuning steps).
        config: a transformers config instead of an LLM job's model (see `trace.hf_config`).
        steps: training steps; the step time is the median after the first.

    Raises:
        OnecardError: no CUDA GPU (use --trace), a job --measure does not run (GGUF, Whisper on CTranslate2 or
            openai-whisper), or the capability's extra (diffusers, ultralytics) is not installed.
    """
    kind = family(job)
    if kind != "llm":
        measure_jobs.check(job, kind)
        return _measure_other(job, steps, require_cuda())
    if is_gguf(job):
        raise ConfigError(f"--measure runs transformers LLM jobs; {job.model} ({job.runtime}) is a GGUF model",
                          "use the capability's own run (its record stores the peak), or --trace")
    torch = require_cuda()
    config = config if config is not None else hf_config(job)
    _, device_before = _nvml_used(torch)
    model, notes = _model(job, config, torch)
    vocab = config.get_text_config().vocab_size
    torch.cuda.reset_peak_memory_stats()
    step_s = tokens_per_s = None
    if job.job == "train":
        if (untraced := stacks.untraced_note(job)) is not None:
            notes.append(untraced)
        times = _train(model, job, vocab, steps, torch, notes)
        step_s = sorted(times[1:] or times)[len(times[1:] or times) // 2]
    else:
        tokens_per_s = job.batch * job.new_tokens / _generate(model, job, vocab, torch, notes)
    return _read(torch, device_before, notes, steps if job.job == "train" else 1, step_s, tokens_per_s)


def _measure_other(job: FitJob, steps: int, torch: Any) -> Measured:
    """Diffusion, YOLO and Whisper: the model is built inside the measured window, so its weights count."""
    resolved = resolve_arch(job.model)
    runs: dict[str, Callable[[FitJob, Any, int, Any], tuple[list[str], float | None]]] = {
        "diffusion": measure_jobs.run_diffusion, "yolo": measure_jobs.run_yolo, "whisper": measure_jobs.run_whisper}
    run = runs[resolved.family]
    _, device_before = _nvml_used(torch)
    torch.cuda.reset_peak_memory_stats()
    notes, step_s = run(job, resolved.arch, steps, torch)
    return _read(torch, device_before, notes, steps if job.job == "train" else 1, step_s, None)


def _read(torch: Any, device_before: int, notes: list[str], steps: int, step_s: float | None,
          tokens_per_s: float | None) -> Measured:
    """The allocator's peaks and NVML's figure for this process, read before anything is freed."""
    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    mine, device_after = _nvml_used(torch)  # read before anything is freed: the allocator still holds its peak
    if mine is None:
        mine = device_after - device_before
        notes.append("NVML shows no per-process figure here (container?): process = device use minus use at start")
    return Measured(peak_allocated_gib=allocated / GIB, peak_reserved_gib=reserved / GIB,
                    process_gib=mine / GIB if mine > 0 else None, device=torch.cuda.get_device_name(),
                    steps=steps, step_s=step_s, tokens_per_s=tokens_per_s, notes=notes)
