"""The numbers of each recipe path, from `onecard fit` for the card: its configs, what to expect, its OOM ladder.

Each path plans the way its capability does, so the config holds what the run would choose on that card:
`onecard.tune.plan.choose` (qlora), `onecard.detect.plan.choose` (yolo), `onecard.asr.finetune.choose` (the Whisper
fine-tune), `onecard.vlm.plan.choose` (the LLaVA QLoRA), `onecard.diffuse.plan.plan_train` / `plan_sample` (the SD 1.5
LoRA and its sampling). Where a capability has no planner of its own, fit's job
directly, with the capability's rule: llama.cpp's context (`onecard.llm.fitting`: the longest of CTX_CHOICES with
every layer on the GPU), faster-whisper's compute type and batch (fit's fastest that fits, as
`onecard.asr.model.choose` takes it), tinylm's micro-batch, LLaVA's chat
weights (`onecard.llm.fitting.fit_transformers`' rule: bf16 when it fits, else nf4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from onecard.core.errors import OnecardError
from onecard.core.gpus import GpuSpec
from onecard.fit.job import FitJob
from onecard.fit.ladder import oom_ladder_keeping
from onecard.fit.plan import Plan, plan
from onecard.fit.solve import solve
from onecard.fit.yolo import amp_trains_correctly

__all__ = ["ConfigFile", "Planned", "plan_path", "card_fields", "card_flag", "LLAMA", "GGUF"]

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
GGUF = "models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"  # where the rag recipe's download puts it
LLAVA = "llava-hf/llava-1.5-7b-hf"


@dataclass
class ConfigFile:
    """A YAML config of the recipe: its file name, the command that runs it, its values and the class that loads it."""

    file: str
    command: str
    model: type[BaseModel]
    values: dict[str, Any]
    source: str  # where its numbers came from

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "command": self.command, "config_class": self.model.__name__,
                "values": self.values, "source": self.source}


@dataclass
class Planned:
    """What fit says for a path on a card: configs, values for the commands' {placeholders}, expectations, ladders."""

    configs: list[ConfigFile]
    fills: dict[str, Any] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)
    ladders: list[tuple[str, list[str]]] = field(default_factory=list)  # (job, steps in order)


def card_fields(card: GpuSpec) -> dict[str, Any]:
    """The config keys that name the card: its catalog key, or its memory for a card the catalog does not list."""
    return {"vram": card.vram_gib} if card.key.startswith("custom-") else {"gpu": card.key}


def card_flag(card: GpuSpec) -> str:
    return f"--vram {card.vram_gib:g}" if card.key.startswith("custom-") else f"--gpu {card.key}"


def _expect(name: str, p: Plan, steps_per_update: int = 1) -> list[str]:
    """Peak against the budget, and the time fit's speed model gives (or a line saying it has none)."""
    est, card = p.estimate, p.card
    assert card is not None and p.budget_gib is not None and p.peak_upper_gib is not None
    verdict = "fits" if p.fits else "does NOT fit"
    lines = [f"{name}: peak {est.process_gib:.1f} GiB predicted (what nvidia-smi shows), safe bound "
             f"{p.peak_upper_gib:.1f} GiB against a budget of {p.budget_gib:.1f} GiB ({card.vram_gib:g} GiB less the "
             f"{p.job.margin_gib:g} GiB margin): {verdict}"]
    if est.step_s:
        per_update = f", {est.step_s * steps_per_update:.2f} s per optimizer step" if steps_per_update > 1 else ""
        lines.append(f"{name}: {est.step_s:.2f} s per micro-batch{per_update} by fit's speed model "
                     f"({est.throughput_note})")
    elif est.tokens_per_s:
        lines.append(f"{name}: up to {est.tokens_per_s:.0f} tokens/s decoding by fit's speed model "
                     f"({est.throughput_note})")
    elif est.throughput_note:  # fit has a speed model, but not the figure it needs (an unlisted card's TFLOPS)
        lines.append(f"{name}: {est.throughput_note}")
    else:
        lines.append(f"{name}: fit has no speed model for this job, so no time per step is given")
    return lines


def _steps(ladder: Iterable[tuple[FitJob, str]]) -> list[str]:
    """Each ladder step with fit's safe bound after it."""
    out = []
    for job, reason in ladder:
        bound = plan(job).peak_upper_gib
        out.append(f"{reason} (safe bound {bound:.1f} GiB)")
    return out


def _offered(job: FitJob, knobs: set[str]) -> Iterator[tuple[FitJob, str]]:
    """fit's ladder for `job`, limited to the knobs the capability offers (the others stay as they were)."""
    return oom_ladder_keeping(job, {k: getattr(job, k) for k in type(job).model_fields if k not in knobs})


def _first_fit(jobs: Iterable[FitJob]) -> tuple[FitJob, Plan]:
    """The first job that fits, else the last one tried (its plan says it does not fit)."""
    for job in jobs:
        planned = plan(job)
        if planned.fits:
            break
    return job, planned


# -- the paths -------------------------------------------------------------------------------------------------------


def _rag(card: GpuSpec) -> Planned:
    from onecard.fit.catalog import find
    from onecard.llm.fitting import CTX_CHOICES
    from onecard.rag.config import AskConfig

    layers = find("llama-3.1-8b").n_layers  # type: ignore[union-attr]  # a catalog entry
    for ctx in CTX_CHOICES:  # onecard.llm.fitting's rule: the longest context with every layer on the GPU
        job = FitJob(model="llama-3.1-8b", runtime="llama.cpp", quant="q4_k_m", ctx=ctx, **card_fields(card))
        p = plan(job)
        if p.fits and (p.estimate.gpu_layers or 0) > layers:
            break
    gpu_layers = p.estimate.gpu_layers or 0
    values = {"name": "mine", "backend": "llamacpp", "model": GGUF, "ctx": ctx, "gpu_layers": gpu_layers, "k": 5,
              "temperature": 0.0}
    source = (f"ctx and gpu_layers: onecard fit, llama.cpp Q4_K_M on {card.name} (the longest context with every "
              "layer on the GPU)")
    config = ConfigFile("rag.yaml", 'onecard rag ask --config rag.yaml "QUESTION"', AskConfig, values, source)
    expect = _expect(f"Llama-3.1-8B Q4_K_M, context {ctx}, {min(gpu_layers, layers)}/{layers} layers on the GPU", p)
    expect.append("the embedding model (all-MiniLM-L6-v2, 22 M parameters) and BM25 add little; fit does not size them")
    return Planned([config], {"ctx": ctx, "gpu_layers": gpu_layers}, expect,
                   [("answering model (ctx in rag.yaml; a lower gpu_layers keeps layers on the CPU, slower)",
                     _steps(_offered(job, {"ctx", "gpu_layers"})))])


def _qlora(card: GpuSpec) -> Planned:
    from onecard.fit.catalog import find
    from onecard.tune.config import TuneConfig
    from onecard.tune.plan import choose, ladder

    max_positions = find(LLAMA).max_ctx  # type: ignore[union-attr]  # a catalog entry
    base = {"model": LLAMA, "data": "my_pairs.jsonl", "method": "qlora", "lora_rank": 16, "lora_alpha": 32,
            "lora_dropout": 0.05, "batch_size": 16, "learning_rate": 2e-4, "epochs": 2, "save_steps": 100,
            "eval_steps": 100}
    notes = []
    for seq in (2048, 1024, 512):
        request = TuneConfig.model_validate({**base, "max_seq_length": seq, **card_fields(card)})
        try:
            settings, job = choose(request, LLAMA, seq, max_positions, four_bit=True, on_gpu=False)
            break
        except OnecardError as e:
            notes.append(f"at sequence {seq}: {e.what}")
    else:  # as the YOLO, Whisper and tinylm recipes: no config that would not run
        raise OnecardError(f"Llama-3.1-8B QLoRA does not fit {card.name} at any sequence down to 512 by fit's bound",
                           f"use a smaller model (`onecard fit MODEL --job train --method qlora {card_flag(card)} "
                           "--solve` shows what fits), or name a card with more memory")
    values = {**base, "max_seq_length": settings.max_seq_length, "micro_batch_size": settings.micro_batch_size,
              "gradient_checkpointing": settings.gradient_checkpointing, "optimizer": settings.optimizer}
    source = f"micro_batch_size, gradient_checkpointing, optimizer: onecard.tune.plan.choose, {settings.source}"
    config = ConfigFile("qlora.yaml", "onecard tune train --config qlora.yaml", TuneConfig, values, source)
    p = plan(job)
    expect = [*(f"{n}; sequence {settings.max_seq_length} is the longest that fits" for n in notes),
              *_expect(f"training ({settings.describe()})", p, job.grad_accum)]
    if p.estimate.step_s:
        tokens = job.batch * job.grad_accum * job.seq
        expect.append(f"about {tokens / (p.estimate.step_s * job.grad_accum):,.0f} tokens/s at full rows: an epoch of "
                      f"N rows of {job.seq} tokens takes N / {job.batch * job.grad_accum} optimizer steps")
    return Planned([config], {"seq": job.seq, "batch": job.batch, "accum": job.grad_accum}, expect,
                   [("training (onecard tune steps down it by itself on an out-of-memory error)",
                     _steps(ladder(job, four_bit=True)))])


def _yolo(card: GpuSpec) -> Planned:
    from onecard.detect.config import DetectConfig
    from onecard.detect.plan import choose, ladder

    amp = amp_trains_correctly(card.compute_capability, card.name)  # as detect's amp_runs_correctly decides
    config = DetectConfig.model_validate({"data": "my_dataset/data.yaml", "model": "yolov8s.pt", "imgsz": "auto",
                                          "amp": amp, **card_fields(card)})
    settings, job = choose(config, "yolov8s", "cpu")  # "cpu": plan for the named card, not this machine's
    assert job is not None  # fit knows yolov8s
    values = {"data": "my_dataset/data.yaml", "model": "yolov8s.pt", "epochs": 100, "imgsz": settings.imgsz,
              "batch": settings.batch, "amp": settings.amp, "patience": 50}
    source = f"imgsz, batch, amp: onecard.detect.plan.choose, {settings.source}"
    expect = _expect(f"YOLOv8s training, {settings.describe()}", plan(job))
    return Planned([ConfigFile("yolo.yaml", "onecard detect train --config yolo.yaml", DetectConfig, values, source)],
                   {"imgsz": settings.imgsz}, expect,
                   [("training (onecard detect steps down it by itself on an out-of-memory error)",
                     _steps(ladder(job, amp_ok=amp)))])


def _diffusion(card: GpuSpec) -> Planned:
    from onecard.diffuse.config import DiffuseConfig

    # DiffuseConfig names a catalog card (gpu), not a memory size: on a custom card `onecard diffuse` keeps its
    # defaults, and fit's verdict below is still for that card
    gpu = None if card.key.startswith("custom-") else card.key
    settings, job, p = _diffuse_train(gpu, card)
    if not p.fits:  # as the YOLO, Whisper and tinylm recipes: no config that would not run
        raise OnecardError(f"SD 1.5 LoRA training does not fit {card.name} at one image per step by fit's bound "
                           f"({p.peak_upper_gib:.1f} GiB against {p.budget_gib:.1f})",
                           "name a card with more memory, or see `onecard fit sd15 --job train --solve "
                           f"{card_flag(card)}`")
    sample, sp = _diffuse_sample(gpu, card)
    values = {"base": "models/sd15", "data": "photos/", "token": "sks", "rank": 8, "resolution": 512,
              "max_steps": 500, "batch_size": job.batch * job.grad_accum, "lr": 1e-4,
              **({"micro_batch_size": job.batch, "gradient_checkpointing": job.grad_ckpt, "optimizer": job.optimizer,
                  "gpu": gpu} if gpu else {})}
    source = ("batch_size: the largest of 4, 2, 1 images per step that SD 1.5 LoRA training (latents cached) fits "
              f"{card.name} with, by onecard.diffuse.plan.plan_train (what `onecard diffuse train` runs): "
              + (settings.source if gpu else "its defaults (its config names a catalog card, not a memory size), "
                 "judged by onecard fit on this card"))
    micro = f", micro-batch {job.batch} x {job.grad_accum}" if job.grad_accum > 1 else ""
    expect = [*_expect(f"SD 1.5 LoRA training at 512 px, batch {job.batch * job.grad_accum}{micro}", p,
                       job.grad_accum),
              *_expect(f"sampling {sample.batch} images at 512 px", sp)]
    return Planned([ConfigFile("diffusion.yaml", "onecard diffuse train --config diffusion.yaml", DiffuseConfig,
                               values, source)],
                   {"batch": job.batch, "sample_batch": sample.batch}, expect,  # fit checks the micro-batch
                   [("training (batch_size in diffusion.yaml; each step then sees fewer images)",
                     _steps(_offered(job, {"batch"}))),
                    ("sampling (--batch)", _steps(_offered(sample, {"batch", "resolution"})))])


def _diffuse_train(gpu: str | None, card: GpuSpec) -> tuple[Any, FitJob, Plan]:
    """diffuse's own training plan at the most images per step (4, 2, 1) that fits the card, else at 1."""
    from onecard.diffuse.plan import plan_train

    for batch in (4, 2, 1):
        try:
            settings, job = plan_train("sd15", rank=8, resolution=512, batch_size=batch, gradient_checkpointing="auto",
                                       optimizer="auto", gpu=gpu, on_cuda=False, eight_bit=True)
        except OnecardError:
            if batch > 1:
                continue
            raise
        job = job.model_copy(update=card_fields(card))
        planned = plan(job)
        if planned.fits or batch == 1:
            return settings, job, planned
    raise AssertionError("batch 1 returns or raises")


def _diffuse_sample(gpu: str | None, card: GpuSpec) -> tuple[FitJob, Plan]:
    """diffuse's own sampling plan at the most images at once (4, 2, 1) that fits, else 1 as fit judges it."""
    from onecard.diffuse.plan import plan_sample

    for batch in (4, 2, 1):
        try:
            _, job = plan_sample("sd15", batch=batch, resolution=512, fp32=False, knobs={}, gpu=gpu, on_cuda=False)
        except OnecardError:
            continue
        job = job.model_copy(update=card_fields(card))
        planned = plan(job)
        if planned.fits:
            return job, planned
    return _first_fit([FitJob(model="sd15", job="infer", resolution=512, batch=1, **card_fields(card))])


def _whisper(card: GpuSpec) -> Planned:
    from onecard.asr.config import FinetuneConfig, TranscribeConfig
    from onecard.asr.finetune import choose
    from onecard.asr.model import COMPUTE_OF_QUANT
    from onecard.asr.train import _ladder as finetune_ladder  # the steps asr finetune's retry takes

    job = FitJob(model="whisper-large-v3", runtime="faster-whisper", beam=5, **card_fields(card))
    found = [p for p in solve(job, top=20, fixed={"beam"}, request_first=False) if p.fits]
    if not found:
        raise OnecardError(f"Whisper large-v3 does not fit {card.name} by fit's bound",
                           "pick a smaller model: `onecard fit whisper-small --runtime faster-whisper --solve`")
    best = found[0]  # as onecard.asr.model.choose takes it: fit's fastest that fits
    compute_type = COMPUTE_OF_QUANT[best.job.quant]
    transcribe = {"model": "large-v3", "language": "auto", "vad": True, "word_timestamps": True,
                  "compute_type": compute_type, "batch_size": best.job.batch,
                  "formats": ["txt", "srt", "vtt", "json"]}
    tune = FinetuneConfig.model_validate({"model": "openai/whisper-small", "data": "clips.tsv", "language": "en",
                                          **card_fields(card)})
    settings, tune_job = choose(tune, "openai/whisper-small", on_gpu=False)
    finetune = {"model": "openai/whisper-small", "data": "clips.tsv", "language": "en", "batch_size": 16,
                "micro_batch_size": settings.micro_batch_size,
                "gradient_checkpointing": settings.gradient_checkpointing, "epochs": 3.0}
    configs = [
        ConfigFile("whisper.yaml", "onecard asr transcribe --config whisper.yaml AUDIO", TranscribeConfig, transcribe,
                   f"compute_type, batch_size: onecard fit's fastest faster-whisper setting that fits {card.name}"),
        ConfigFile("whisper-finetune.yaml", "onecard asr finetune --config whisper-finetune.yaml", FinetuneConfig,
                   finetune, "micro_batch_size, gradient_checkpointing: onecard.asr.finetune.choose, "
                   f"{settings.source}"),
    ]
    expect = [*_expect(f"transcription (large-v3, {compute_type}, batch {best.job.batch}, beam 5)", best),
              *_expect(f"fine-tune (whisper-small LoRA, micro-batch {tune_job.batch} x {tune_job.grad_accum})",
                       plan(tune_job), tune_job.grad_accum)]
    return Planned(configs, {"compute_type": compute_type, "batch": best.job.batch}, expect,
                   [("transcription (compute_type, beam_size, batch_size in whisper.yaml)",
                     _steps(_offered(best.job, {"quant", "beam", "batch"}))),
                    ("fine-tune (onecard asr finetune steps down it by itself on an out-of-memory error)",
                     _steps(finetune_ladder(tune_job)))])


def _vlm(card: GpuSpec) -> Planned:
    from onecard.fit.catalog import find
    from onecard.llm.fitting import CPU_CTX
    from onecard.vlm.config import TuneConfig, VlmChatConfig
    from onecard.vlm.plan import choose, ladder

    image_tokens = find(LLAVA).vision.image_tokens  # type: ignore[union-attr]  # a catalog VLM
    base = {"model": LLAVA, "data": "my_pairs.jsonl", "method": "qlora", "max_seq_length": 2048, "lora_rank": 16,
            "lora_alpha": 32, "lora_dropout": 0.05, "batch_size": 8, "learning_rate": 2e-4, "epochs": 1}
    chat, chat_plan = _first_fit(FitJob(model=LLAVA, runtime="transformers", quant=quant, ctx=CPU_CTX,
                                        **card_fields(card)) for quant in ("bf16", "nf4"))
    chat_values = {"model": LLAVA, "backend": "transformers", "quant": chat.quant, "ctx": CPU_CTX,
                   **({} if card.key.startswith("custom-") else {"gpu": card.key})}  # VlmChatConfig has no vram
    chat_config = ConfigFile("vlm-chat.yaml", 'onecard vlm chat --config vlm-chat.yaml --image IMAGE --prompt "..."',
                             VlmChatConfig, chat_values,
                             f"quant: onecard fit on {card.name}, bf16 when it fits, else nf4 (as `onecard vlm chat` "
                             "chooses for quant auto: onecard.llm.fitting.fit_transformers)")
    weights = "4-bit nf4" if chat.quant == "nf4" else chat.quant
    expect = _expect(f"image chat (LLaVA-1.5-7B, {weights} weights, context {CPU_CTX})", chat_plan)
    ladders = [("image chat (quant and ctx in vlm-chat.yaml)", _steps(_offered(chat, {"quant", "ctx"})))]
    request = TuneConfig.model_validate({**base, **card_fields(card)})
    try:
        settings, job = choose(request, LLAVA, 2048 - image_tokens, image_tokens, four_bit=True, on_gpu=False)
    except OnecardError as e:
        return Planned([ConfigFile("vlm.yaml", "onecard vlm tune --config vlm.yaml", TuneConfig, base,
                                   "none: no setting fits this card"), chat_config], {"text_seq": 2048 - image_tokens},
                       [f"QLoRA: {e.what}", *expect], ladders)
    values = {**base, "micro_batch_size": settings.micro_batch_size,
              "gradient_checkpointing": settings.gradient_checkpointing, "optimizer": settings.optimizer}
    source = f"micro_batch_size, gradient_checkpointing, optimizer: onecard.vlm.plan.choose, {settings.source}"
    expect = [*_expect(f"QLoRA ({settings.describe()})", plan(job), job.grad_accum), *expect]
    return Planned([ConfigFile("vlm.yaml", "onecard vlm tune --config vlm.yaml", TuneConfig, values, source),
                    chat_config], {"text_seq": job.seq}, expect,
                   [("QLoRA (onecard vlm tune steps down it by itself on an out-of-memory error)",
                     _steps(ladder(job, four_bit=True))), *ladders])


def _tinylm(card: GpuSpec) -> Planned:
    from onecard.tinylm.config import PRESETS, TinyLMConfig

    baby = PRESETS["baby"]
    job = FitJob(model="tinylm-baby", job="train", batch=baby["batch_size"], seq=baby["block_size"],
                 **card_fields(card))
    found = solve(job, top=20, fixed={"seq"}, request_first=False)
    if not found:
        raise OnecardError(f"tinylm's baby preset does not fit {card.name} by fit's bound",
                           "train `--preset nanogpt-cpu` instead")
    best = found[0].job
    values = {"data": "input.txt", "preset": "baby", "pos": "rope", "batch_size": best.batch,
              "grad_accum": best.grad_accum}
    p = plan(best)
    expect = _expect(f"baby GPT, micro-batch {best.batch} x {best.grad_accum}, context {best.seq}", p, best.grad_accum)
    if p.estimate.step_s:
        total_s = p.estimate.step_s * best.grad_accum * baby["max_iters"]
        expect.append(f"the preset's {baby['max_iters']:,} steps: about {total_s / 60:.0f} minutes by that estimate")
    source = f"batch_size, grad_accum: onecard fit's fastest setting of the baby preset that fits {card.name}"
    return Planned([ConfigFile("tinylm.yaml", "onecard tinylm train --config tinylm.yaml", TinyLMConfig, values,
                               source)], {"batch": best.batch, "grad_accum": best.grad_accum}, expect,
                   [("training (batch_size and grad_accum in tinylm.yaml)",
                     _steps(_offered(best, {"batch", "grad_accum"})))])


PLANNERS: dict[str, Callable[[GpuSpec], Planned]] = {
    "rag": _rag, "qlora": _qlora, "yolo": _yolo, "diffusion": _diffusion, "whisper": _whisper, "vlm": _vlm,
    "tinylm": _tinylm,
}


def plan_path(path: str, card: GpuSpec) -> Planned:
    """fit's numbers for a recipe path on a card."""
    return PLANNERS[path](card)
