"""`onecard vlm`: check image-text data; tune a LoRA/QLoRA adapter of a VLM's language model as a recorded run.

A tune run's directory holds what the other commands need: `train.jsonl` / `dev.jsonl` (the rows it trained and
held out, with absolute image paths), `adapter/` (safetensors that peft loads, with the processor), `checkpoints/`
(resumable), and `loss.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from onecard.core.config import load_config
from onecard.core.device import select_device, supports_4bit
from onecard.core.errors import DataError
from onecard.core.peft_run import (
    ADAPTER,
    CHECKPOINTS,
    DEV_SPLIT,
    TRAIN_SPLIT,
    Tries,
    length_stats,
    ran_fields,
    resume_point,
    train_dev_examples,
)
from onecard.core.progress import stderr_console
from onecard.core.records import Run, start_run
from onecard.core.runs import find_run
from onecard.core.trainer import sft_args
from onecard.fit.observations import observe_run
from onecard.fit.plan import plan
from onecard.fit.retry import retry_on_oom
from onecard.vlm.config import CheckConfig, TuneConfig
from onecard.vlm.data import dedupe, load_examples, read_examples, split, write_jsonl
from onecard.vlm.plan import Settings, choose, ladder, settings_of

__all__ = ["check", "tune", "resume_config", "find_vlm_run", "ADAPTER", "TRAIN_SPLIT", "DEV_SPLIT"]


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
        result["tokens"] = length_stats([len(r["input_ids"]) for r in rows], config.max_seq_length)
        result["image_tokens"] = length_stats([r["input_ids"].count(image_id) for r in rows])
        result["answer_tokens"] = length_stats([sum(x != IGNORE_INDEX for x in r["labels"]) for r in rows])
    else:
        result["characters"] = length_stats([sum(len(c) for _, c in ex.turns) for ex in report.examples])
        result["note"] = "pass --model to count tokens, image tokens included, with the model's processor"
    return result


def tune(config: TuneConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
         resume: str | None = None) -> Run:
    """Tune `config.model` on `config.data` as a recorded run; with `resume`, continue that run's checkpoint."""
    from onecard.vlm.model import load_model, load_processor, lora_config, model_dir
    from onecard.vlm.train import encode, make_trainer, precision

    device = select_device(config.device)
    dtype = precision(config.precision, device)
    four_bit = device.startswith("cuda") and supports_4bit()
    console = stderr_console()
    previous = find_vlm_run(resume, runs_root, need=CHECKPOINTS) if resume else None
    checkpoint = resume_point(previous, "onecard vlm tune")[0] if previous else None

    # -- set up: the rows (bad rows are an error, duplicates dropped and listed), the split, the model folder
    train_ex, dev_ex, duplicates = train_dev_examples(config, previous, load=load_examples, dedupe=dedupe, split=split)
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

        def text_tokens(row: dict[str, Any]) -> int:  # what the fit job's seq counts: the row less its image tokens
            return len(row["input_ids"]) - row["input_ids"].count(image_id)

        longest_text = max(map(text_tokens, train_enc))
        settings, job = choose(config, str(folder), longest_text, image_tokens, four_bit=four_bit,
                               on_gpu=device.startswith("cuda"))
        console.print(f"vlm tune: {config.model} on {device} ({str(dtype).removeprefix('torch.')}), "
                      f"{len(train_ex)} train / {len(dev_ex)} dev rows; {settings.source}:\n  {settings.describe()}")

        # -- work: train; on a CUDA out-of-memory error, fit's retry loop takes the ladder's next step down and
        # training continues from the latest checkpoint
        tries = Tries(run, settings, checkpoint, command="onecard vlm tune", plot_title=f"vlm {run.id}",
                      loss_label="cross-entropy on answers (nats/token)")

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
            # rows arrive tokenized with their labels; the collator needs the "images" column TRL would drop
            args = sft_args(run.dir / CHECKPOINTS, settings, config, dtype=dtype, device=device, max_length=None,
                            remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True})
            adapter = lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets,
                                  config.train_projector)
            trainer, s_per_step = tries.train(
                lambda callbacks: make_trainer(model, processor, args, rows, dev_rows, adapter, callbacks),
                resume_from)
            return _Trained(trainer, s_per_step, len(rows), len(dev_rows), max(map(text_tokens, rows)))

        with run.gpu_phase("train"):
            trained = retry_on_oom(job, lambda _: attempt(*tries.last), ladder=ladder(job, four_bit=four_bit),
                                   on_step=lambda step: tries.step_down(step.change, settings_of(
                                       step.job, image_tokens, f"fit's out-of-memory ladder: {step.change}",
                                       plan(step.job))))
        trainer = trained.trainer

        # -- evaluate: loss on the dev answers (a Ctrl-C stops here, with the checkpoint saved)
        losses = tries.evaluate(trainer, trained.dev_rows)
        metrics = {**losses, "steps": trainer.state.global_step, "s_per_step": trained.s_per_step,
                   "train_rows": trained.train_rows, "oom_steps": len(tries.oom_steps)}
        run.set_metrics(metrics)
        console.print(f"step {metrics['steps']}: answer loss {metrics['first_loss']:.4f} -> "
                      f"{metrics['final_loss']:.4f}"
                      + (f", dev {losses['dev_loss']:.4f}" if losses["dev_loss"] is not None else ""))

        # -- save: the adapter (with the processor and its chat template), the loss curve
        tries.save(trainer, processor)
    # on a GPU: the measured peak beside the plan it trained with, for `onecard fit calibrate`
    observe_run(run.record, ran=ran_fields(job.seq, trained.longest_text))
    return run


class _Trained(NamedTuple):
    trainer: Any
    s_per_step: float
    train_rows: int
    dev_rows: int
    longest_text: int  # text tokens of the longest train row kept (image tokens aside, as the fit job's seq)


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> TuneConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_steps."""
    saved = find_vlm_run(ref, runs_root, need=CHECKPOINTS)["config"]
    return load_config(TuneConfig, None, {**saved, **overrides})


def find_vlm_run(ref: str, runs_root: str | None, need: str = ADAPTER) -> dict[str, Any]:
    """A vlm tune run that has `need` (its adapter, or checkpoints), by id, prefix, directory, or 'last'."""
    example = "onecard vlm tune --model tiny --data pairs.jsonl --max-steps 20"
    return find_run(ref, runs_root, capability="vlm", has=need, how_to_make=f"train one, e.g. `{example}`")
