"""The parts of `onecard asr finetune` (its run: `onecard.asr.train`): the model folder, fit's plan, batches of
log-mel features and labels, greedy dev transcripts, atomic checkpoints, and the CTranslate2 export.

The run's directory holds `adapter/` (peft), `checkpoints/step-N/` (adapter, optimizer and schedule state, the clip
order's and torch's random states (LoRA dropout) and the losses; each written under a temporary name and renamed once
whole), `model/` (the merged model in CTranslate2 format, with tokenizer.json and preprocessor_config.json, which
faster-whisper reads) and `loss.png`.

Settings come from `onecard fit` (its Whisper training estimate: LoRA on q and v, 30 s windows, labels up to 448
tokens): the micro-batch with gradient accumulation and gradient checkpointing that fit the card; on an out-of-memory
error, fit's retry loop steps down its ladder and training continues from the latest checkpoint.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from onecard.asr import audio
from onecard.asr.config import FinetuneConfig
from onecard.asr.data import Item
from onecard.asr.metrics import error_rates, normalizer
from onecard.core.errors import ModelNotFoundError
from onecard.fit.choose import split_batch

__all__ = ["model_folder", "Plan", "choose", "label_ids", "collate", "features_of", "transcribe_items", "dev_wer",
           "export_ct2", "save_checkpoint", "latest_checkpoint", "MODEL_DIR", "ADAPTER",
           "CHECKPOINTS", "LOSS_PLOT"]

MODEL_DIR, ADAPTER, CHECKPOINTS, LOSS_PLOT = "model", "adapter", "checkpoints", "loss.png"
TARGETS = ["q_proj", "v_proj"]  # the projections fit's Whisper estimate puts LoRA on (onecard.fit.whisper._train)
MAX_CLIP_S = 30.0  # Whisper's window: longer clips would be cut by the feature extractor
MAX_LABEL_TOKENS = 448  # decoder positions (WhisperConfig.max_target_positions)


def model_folder(ref: str) -> Path:
    """The folder of a transformers Whisper: a local folder, or a hub id from the local cache (never downloaded)."""
    from onecard.core.sources import resolve_model

    try:
        path = resolve_model(ref).path
    except ModelNotFoundError as e:
        raise ModelNotFoundError(e.what, f"download it once, online, with `huggingface-cli download {ref}`, or "
                                 "pass a folder holding config.json, the weights and the tokenizer") from None
    if not (path / "config.json").is_file() or (path / "model.bin").is_file():
        raise ModelNotFoundError(f"{path} is not a transformers Whisper (no config.json, or it is a CTranslate2 "
                                 "export)", "fine-tune a transformers model such as openai/whisper-small")
    return path


@dataclass
class Plan:
    """Micro-batch, accumulation and checkpointing a try trains with, and where they came from."""

    micro_batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    source: str
    card: str | None = None
    predicted_gib: float | None = None
    fit_job: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def choose(config: FinetuneConfig, model: str, on_gpu: bool) -> tuple[Plan, Any]:
    """The plan for the config's "auto" knobs (fit's fastest that fits the card), and the fit job it stands for.

    `model` is the model folder: fit reads its config.json, so the job and its predicted peak are the trained
    model's own dimensions, whatever its name (`onecard fit FOLDER --job train` gives the same figures)."""
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan
    from onecard.fit.solve import solve
    from onecard.fit.whisper import find

    arch = find(model)
    fixed = {"method", "lora_rank", "lora_targets", "optimizer", "quant"}
    micro, accum = config.batch_size, 1
    if config.micro_batch_size != "auto":
        micro, accum = split_batch(config.batch_size, config.micro_batch_size)
        fixed |= {"batch", "grad_accum"}
    if config.gradient_checkpointing != "auto":
        fixed.add("grad_ckpt")
    job = FitJob.model_validate({
        "model": model, "job": "train", "method": "lora", "batch": micro,
        "grad_accum": accum, "lora_rank": config.lora_rank, "lora_targets": "qv", "optimizer": "adamw",
        "grad_ckpt": config.gradient_checkpointing is not False, "gpu": config.gpu, "vram": config.vram})
    if arch is None or (not on_gpu and config.gpu is None and config.vram is None):
        why = (f"fit does not know the model {model!r}" if arch is None
               else "no GPU to plan for (--gpu NAME plans for a card)")
        micro, accum = split_batch(config.batch_size, config.micro_batch_size)
        job = job.model_copy(update={"batch": micro, "grad_accum": accum,
                                     "grad_ckpt": config.gradient_checkpointing is True})
        predicted = round(plan(job).estimate.process_gib, 3) if arch else None  # on a GPU, for the record
        return Plan(job.batch, job.grad_accum, job.grad_ckpt, f"defaults: {why}", predicted_gib=predicted,
                    fit_job=job.model_dump()), job
    base = plan(job)
    found = [p for p in solve(job, top=20, fixed=fixed, request_first=False) if p.fits] if base.card else []
    if not found:
        from onecard.core.errors import OnecardError

        card = base.card.name if base.card else "no card"
        raise OnecardError(f"no setting of Whisper {arch.key} ({arch.params / 1e6:.0f}M parameters) fits {card} "
                           "for LoRA training", f"see `onecard fit {model} --job train --method lora --solve`; use a "
                           "smaller model, or pass --gpu NAME / --vram GIB")
    best, name = found[0], base.card.name if base.card else None
    return Plan(best.job.batch, best.job.grad_accum, best.job.grad_ckpt, f"fit: fastest plan that fits {name}", name,
                round(best.estimate.process_gib, 3), best.job.model_dump(mode="json")), best.job


def label_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a transcript as the decoder is trained on them: the tokenizer's prefix tokens (start of
    transcript, language, task, no timestamps), the text, end of text; cut to the decoder's 448 positions."""
    ids: list[int] = tokenizer(text).input_ids
    return ids[:MAX_LABEL_TOKENS]


def collate(features: Any, labels: Sequence[list[int]], decoder_start_id: int) -> dict[str, Any]:
    """A batch: log-mel features (B, n_mels, 3000) and labels padded with -100 (ignored by the loss).

    The model prepends `decoder_start_id` to the labels it shifts right, so a leading start token is dropped here
    (the Hugging Face Whisper fine-tuning recipe)."""
    import torch

    rows = [ids[1:] if ids and ids[0] == decoder_start_id else ids for ids in labels]
    width = max(len(r) for r in rows)
    padded = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        padded[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return {"input_features": features, "labels": padded}


def features_of(processor: Any, items: Sequence[Item]) -> Any:
    """Log-mel features of the clips, (B, n_mels, 3000) float32, each padded to Whisper's 30 s window."""
    arrays = [audio.decode(i.audio, i.channel) for i in items]
    return processor.feature_extractor(arrays, sampling_rate=audio.SAMPLE_RATE, return_tensors="pt").input_features


def transcribe_items(model: Any, processor: Any, items: Sequence[Item], batch_size: int, language: str,
                     device: str) -> list[str]:
    """Greedy transcripts of clips with a transformers Whisper (the dev WER before and after training)."""
    import torch

    multilingual = bool(getattr(model.generation_config, "is_multilingual", False))
    options = {"language": language, "task": "transcribe"} if multilingual else {}
    texts: list[str] = []
    model.eval()
    weights = model.get_encoder().conv1.weight.dtype  # the base model's (fp16/bf16 on a GPU, fp32 on a CPU)
    for start in range(0, len(items), batch_size):
        features = features_of(processor, items[start:start + batch_size]).to(device, weights)
        with torch.no_grad():
            ids = model.generate(input_features=features, max_new_tokens=MAX_LABEL_TOKENS // 2, **options)
        texts += [t.strip() for t in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return texts


def dev_wer(model: Any, processor: Any, items: Sequence[Item], batch_size: int, language: str,
            device: str) -> dict[str, Any]:
    """WER and CER on the dev clips (onecard.asr.metrics, Whisper's normaliser), with the transcripts."""
    hyps = transcribe_items(model, processor, items, batch_size, language, device)
    kind: Literal["english", "basic"] = "english" if language.startswith("en") else "basic"
    scores = error_rates([i.reference for i in items], hyps, normalizer(kind))
    return {"wer": scores.get("wer"), "cer": scores.get("cer"),
            "files": [{"file": i.name, "reference": i.reference, "hypothesis": h} for i, h in zip(items, hyps,
                                                                                               strict=True)]}


def export_ct2(merged: Any, processor: Any, out: Path, quantization: str) -> Path:
    """Write a merged transformers Whisper as a CTranslate2 model folder that faster-whisper loads offline.

    The model is saved to a temporary folder, converted with ctranslate2's TransformersConverter beside `out`, and
    renamed to `out` once whole. tokenizer.json and preprocessor_config.json are copied in: without them faster-whisper
    would fetch openai's tokenizer from the hub, and assume 80 mel bins.
    """
    import tempfile

    from ctranslate2.converters import TransformersConverter

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".merged.") as tmp:
        merged.save_pretrained(tmp)
        processor.tokenizer.save_pretrained(tmp)
        processor.feature_extractor.to_json_file(str(Path(tmp) / "preprocessor_config.json"))
        staged = out.parent / f".{out.name}.tmp"
        shutil.rmtree(staged, ignore_errors=True)
        TransformersConverter(tmp, copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(staged), quantization=quantization, force=True)
    shutil.rmtree(out, ignore_errors=True)
    staged.rename(out)
    return out


def save_checkpoint(folder: Path, step: int, model: Any, optimizer: Any, scheduler: Any, order: random.Random,
                    losses: list[list[float]]) -> Path:
    """`checkpoints/step-N/`: the adapter, and what training goes on from (optimizer, schedule, the clip order's
    random state, the losses so far), written under `tmp-step-N/` and renamed whole."""
    import torch

    final, staged = folder / f"step-{step}", folder / f"tmp-step-{step}"
    shutil.rmtree(staged, ignore_errors=True)
    model.save_pretrained(staged)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "order": order.getstate(), "torch_rng": torch.get_rng_state(), "losses": losses},
               staged / "training_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    staged.rename(final)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest whole `step-N` checkpoint (`tmp-step-N`, a save cut short, is never taken)."""
    found = [p for p in folder.glob("step-*") if p.name[5:].isdigit() and (p / "training_state.pt").is_file()]
    return max(found, key=lambda p: int(p.name[5:]), default=None)
