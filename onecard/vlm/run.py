"""`onecard vlm`: check image-text data; tune a LoRA/QLoRA adapter of a VLM's language model as a recorded run.

A tune run's directory holds what the other commands need: `train.jsonl` / `dev.jsonl` (the rows it trained and
held out, with absolute image paths), `adapter/` (safetensors that peft loads, with the processor), `checkpoints/`
(resumable), and `loss.png`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from onecard.core.config import load_config
from onecard.core.device import select_device, supports_4bit
from onecard.core.errors import DataError, OnecardError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, start_run
from onecard.core.runs import find_run
from onecard.core.trainer import logged_losses
from onecard.fit.observations import observe_run
from onecard.fit.plan import plan
from onecard.fit.retry import OomStep, retry_on_oom
from onecard.vlm.config import CheckConfig, TuneConfig
from onecard.vlm.data import Example, dedupe, load_examples, read_examples, split, write_jsonl
from onecard.vlm.plan import Settings, choose, ladder, settings_of

__all__ = ["check", "tune", "resume_config", "find_vlm_run", "ADAPTER", "TRAIN_SPLIT", "DEV_SPLIT"]

ADAPTER, CHECKPOINTS, LOSS_PLOT = "adapter", "checkpoints", "loss.png"
TRAIN_SPLIT, DEV_SPLIT = "train.jsonl", "dev.jsonl"


def check(config: CheckConfig) -> dict[str, Any]:
    """Bad rows by line (missing or undecodable images among them), duplicates, formats, and lengths (tokens with
    image tokens under --model, else characters)."""
    report = read_examples(config.data)
    _, duplicates = dedupe(report.examples)
    result: dict[str, Any] = {
        "file": config.data, "rows": len(report.examples) + len(report.bad), "valid": len(report.examples),
        "bad": [{"line": b.line, "reason": b.reason} for b in report.bad], "formats": dict(report.formats),
        "duplicates": [{"line": line, "same_as_line": first} for line, first in duplicates],
        "images": len({i for ex in report.examples for i in ex.images}),
    }
    if config.model is not None and report.examples:
        from onecard.vlm.model import load_processor, model_dir
        from onecard.vlm.train import IGNORE_INDEX, encode

        processor = load_processor(model_dir(config.model))
        image_id = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<image>"))
        rows = [encode(processor, ex.images, ex.messages()) for ex in report.examples]
        result["tokens"] = _stats([len(r["input_ids"]) for r in rows], config.max_seq_length)
        result["image_tokens"] = _stats([r["input_ids"].count(image_id) for r in rows])
        result["answer_tokens"] = _stats([sum(x != IGNORE_INDEX for x in r["labels"]) for r in rows])
    else:
        result["characters"] = _stats([sum(len(c) for _, c in ex.turns) for ex in report.examples])
        result["note"] = "pass --model to count tokens, image tokens included, with the model's processor"
    return result


def _stats(values: list[int], limit: int | None = None) -> dict[str, Any]:
    if not values:
        return {}
    ordered = sorted(values)
    stats: dict[str, Any] = {"min": ordered[0], "median": ordered[len(ordered) // 2],
                             "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
                             "max": ordered[-1]}
    if limit is not None:
        stats["over_limit"] = sum(v > limit for v in values)
    return stats


def tune(config: TuneConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
         resume: str | None = None) -> Run:
    """Tune `config.model` on `config.data` as a recorded run; with `resume`, continue that run's checkpoint."""
    from onecard.core.plots import plot_losses
    from onecard.vlm.model import load_model, load_processor, lora_config, model_dir
    from onecard.vlm.train import (
        RecordCallback,
        StopFlag,
        encode,
        latest_checkpoint,
        make_trainer,
        precision,
        sft_args,
        stop_on_signal,
    )

    device = select_device(config.device)
    dtype = precision(config.precision, device)
    four_bit = device.startswith("cuda") and supports_4bit()
    console = stderr_console()
    previous = find_vlm_run(resume, runs_root, need=CHECKPOINTS) if resume else None
    checkpoint = latest_checkpoint(Path(previous["dir"]) / CHECKPOINTS) if previous else None
    if previous and checkpoint is None:
        raise OnecardError(f"nothing to resume: run {previous['id']} has no complete checkpoint",
                           "start over without --resume, with the run's flags")

    # -- set up: the rows (bad rows are an error, duplicates dropped and listed), the split, the model folder
    train_ex, dev_ex, duplicates = _examples(config, previous)
    folder = model_dir(config.model)
    inputs = {"data": config.data, **({"dev_data": config.dev_data} if config.dev_data else {})}
    with start_run("vlm", config, inputs=inputs, seed=config.seed, runs_root=runs_root, report_to=report_to) as run:
        write_jsonl(train_ex, run.dir / TRAIN_SPLIT)
        write_jsonl(dev_ex, run.dir / DEV_SPLIT)
        processor = load_processor(folder)
        image_id = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<image>"))
        train_enc = [encode(processor, ex.images, ex.messages()) for ex in train_ex]
        dev_enc = [encode(processor, ex.images, ex.messages()) for ex in dev_ex]
        run.set("model", {"ref": config.model, "dir": str(folder)})
        if previous and checkpoint:
            run.set("resumed_from", {"run": previous["id"], "checkpoint": checkpoint.name})

        # -- plan: fit turns the "auto" knobs into numbers for the card (image tokens and the frozen tower counted)
        image_tokens = max(r["input_ids"].count(image_id) for r in train_enc)
        longest_text = max(len(r["input_ids"]) - r["input_ids"].count(image_id) for r in train_enc)
        settings, job = choose(config, str(folder), longest_text, image_tokens, four_bit=four_bit,
                               on_gpu=device.startswith("cuda"))
        console.print(f"vlm tune: {config.model} on {device} ({str(dtype).removeprefix('torch.')}), "
                      f"{len(train_ex)} train / {len(dev_ex)} dev rows; {settings.source}:\n  {settings.describe()}")

        # -- work: train; on a CUDA out-of-memory error, fit's retry loop takes the ladder's next step down and
        # training continues from the latest checkpoint
        history: dict[str, list[list[float]]] = {"train": logged_losses(checkpoint) if checkpoint else [], "dev": []}
        stop = StopFlag()
        callback = RecordCallback(run, history, stop)
        rungs: list[tuple[Settings, Path | None]] = [(settings, checkpoint)]
        oom_steps: list[dict[str, Any]] = []

        def attempt(settings: Settings, resume_from: Path | None) -> _Trained:
            rows = [r for r in train_enc if len(r["input_ids"]) <= settings.max_seq_length]
            dev_rows = [r for r in dev_enc if len(r["input_ids"]) <= settings.max_seq_length]
            if not rows:
                raise DataError(f"every train row is longer than {settings.max_seq_length} tokens (image tokens "
                                "included)", "raise --max-seq-length, or leave it on auto")
            run.set("plan", settings.to_json())
            run.set("data", {"train_rows": len(train_ex), "dev_rows": len(dev_ex), "duplicates_dropped": [
                {"line": a, "same_as_line": b} for a, b in duplicates], "too_long_rows": len(train_enc) - len(rows)})
            if len(rows) < len(train_enc):
                console.print(f"  {len(train_enc) - len(rows)} of {len(train_enc)} train rows are longer than "
                              f"{settings.max_seq_length} tokens and are left out (an image cannot be cut)")
            model = load_model(folder, dtype, device, four_bit=settings.method == "qlora")
            args = sft_args(run.dir / CHECKPOINTS, micro_batch_size=settings.micro_batch_size,
                            grad_accum=settings.grad_accum, gradient_checkpointing=settings.gradient_checkpointing,
                            optimizer=settings.optimizer, learning_rate=config.learning_rate,
                            lr_scheduler=config.lr_scheduler, warmup_ratio=config.warmup_ratio,
                            weight_decay=config.weight_decay, epochs=config.epochs, max_steps=config.max_steps,
                            dtype=dtype, device=device, logging_steps=config.logging_steps,
                            save_steps=config.save_steps, eval_steps=config.eval_steps, seed=config.seed)
            adapter = lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets,
                                  config.train_projector)
            with stop_on_signal(stop):
                trainer = make_trainer(model, processor, args, rows, dev_rows, adapter, [callback])
                output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            start = int(resume_from.name.split("-")[-1]) if resume_from else 0
            return _Trained(trainer, output.metrics["train_runtime"] / max(1, trainer.state.global_step - start),
                            len(rows), len(dev_rows))

        def step_down(step: OomStep) -> None:
            before, resume_from = rungs[-1]
            after = settings_of(step.job, image_tokens, f"fit's out-of-memory ladder: {step.change}", plan(step.job))
            saved = latest_checkpoint(run.dir / CHECKPOINTS)
            if saved is not None and after.optimizer == before.optimizer:
                resume_from = saved  # an optimizer change cannot load the old optimizer state
            rungs.append((after, resume_from))
            oom_steps.append({"at_step": callback.step, "change": step.change,
                              "resume_from": str(resume_from) if resume_from else None, "settings": after.to_json()})
            run.set("oom_steps", oom_steps)
            console.print(f"out of memory at step {callback.step}: {step.change}; continuing")

        trained = retry_on_oom(job, lambda _: attempt(*rungs[-1]), ladder=ladder(job, four_bit=four_bit),
                               on_step=step_down)
        trainer = trained.trainer
        if stop.requested:
            console.print(f"interrupted at step {trainer.state.global_step}: checkpoint saved; continue with "
                          f"`onecard vlm tune --resume {run.id}`")
            plot_losses(history, run.dir / LOSS_PLOT, f"vlm {run.id}", xlabel="optimizer step",
                        ylabel="cross-entropy on answers (nats/token)")
            raise KeyboardInterrupt

        # -- evaluate: loss on the dev answers
        dev = trainer.evaluate() if trained.dev_rows else {}
        if "eval_loss" in dev:
            history["dev"].append([trainer.state.global_step, dev["eval_loss"]])
        metrics = {
            "first_loss": history["train"][0][1] if history["train"] else None,
            "final_loss": history["train"][-1][1] if history["train"] else None,
            "dev_loss": dev.get("eval_loss"), "steps": trainer.state.global_step, "s_per_step": trained.s_per_step,
            "train_rows": trained.train_rows, "oom_steps": len(oom_steps),
        }
        run.set_metrics(metrics)
        console.print(f"step {metrics['steps']}: answer loss {metrics['first_loss']:.4f} -> "
                      f"{metrics['final_loss']:.4f}" + (f", dev {metrics['dev_loss']:.4f}" if dev else ""))

        # -- save: the adapter (with the processor and its chat template), the loss curve
        trainer.save_model(str(run.dir / ADAPTER))
        processor.save_pretrained(run.dir / ADAPTER)
        plot_losses(history, run.dir / LOSS_PLOT, f"vlm {run.id}", xlabel="optimizer step",
                    ylabel="cross-entropy on answers (nats/token)")
        for name in (ADAPTER, LOSS_PLOT, TRAIN_SPLIT, DEV_SPLIT):
            run.add_artifact(run.dir / name)
    observe_run(run.record)  # on a GPU: the measured peak beside the plan it trained with, for `onecard fit calibrate`
    return run


class _Trained(NamedTuple):
    trainer: Any
    s_per_step: float
    train_rows: int
    dev_rows: int


def _examples(config: TuneConfig,
              previous: dict[str, Any] | None) -> tuple[list[Example], list[Example], list[tuple[int, int]]]:
    """The train rows, the dev rows, and the duplicates dropped (line, same as line); a resumed run keeps its split."""
    if previous:
        folder = Path(previous["dir"])
        return load_examples(folder / TRAIN_SPLIT), load_examples(folder / DEV_SPLIT), []
    examples = load_examples(config.data)
    duplicates: list[tuple[int, int]] = []
    if config.dedupe:
        examples, duplicates = dedupe(examples)
    if config.dev_data:
        return examples, load_examples(config.dev_data), duplicates
    train_ex, dev_ex = split(examples, config.dev_fraction, config.seed)
    return train_ex, dev_ex, duplicates


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> TuneConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_steps."""
    saved = find_vlm_run(ref, runs_root, need=CHECKPOINTS)["config"]
    return load_config(TuneConfig, None, {**saved, **overrides})


def find_vlm_run(ref: str, runs_root: str | None, need: str = ADAPTER) -> dict[str, Any]:
    """A vlm tune run that has `need` (its adapter, or checkpoints), by id, prefix, directory, or 'last'."""
    example = "onecard vlm tune --model tiny --data pairs.jsonl --max-steps 20"
    return find_run(ref, runs_root, capability="vlm", has=need, how_to_make=f"train one, e.g. `{example}`")
