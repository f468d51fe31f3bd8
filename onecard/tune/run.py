"""`onecard tune`: check data, train a LoRA/QLoRA adapter as a recorded run, evaluate it, export it.

A training run's directory holds what the other commands need: `train.jsonl` / `dev.jsonl` (the seeded split, as
chat rows), `adapter/` (safetensors that peft loads, with the tokenizer and its chat template), `checkpoints/`
(resumable), and `loss.png`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from onecard.core.config import load_config
from onecard.core.device import select_device, supports_4bit
from onecard.core.errors import ConfigError, OnecardError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, start_run
from onecard.core.runs import find_run
from onecard.core.trainer import logged_losses
from onecard.fit.observations import observe_run
from onecard.fit.plan import plan
from onecard.fit.retry import OomStep, retry_on_oom
from onecard.tune.config import CheckConfig, EvalConfig, ExportConfig, TuneConfig
from onecard.tune.data import Example, dedupe, load_examples, read_examples, split, write_jsonl
from onecard.tune.formatting import IGNORE_INDEX, encode_rows, fit_rows, length_stats
from onecard.tune.plan import Settings, choose, ladder, settings_of

__all__ = ["check", "train", "resume_config", "evaluate", "export", "find_tune_run"]

ADAPTER, CHECKPOINTS, LOSS_PLOT = "adapter", "checkpoints", "loss.png"
TRAIN_SPLIT, DEV_SPLIT = "train.jsonl", "dev.jsonl"


def check(config: CheckConfig) -> dict[str, Any]:
    """Every bad line with its reason, duplicates, formats, and row lengths (tokens with --model, else characters)."""
    report = read_examples(config.data)
    _, duplicates = dedupe(report.examples)
    result: dict[str, Any] = {
        "file": config.data, "rows": len(report.examples) + len(report.bad), "valid": len(report.examples),
        "bad": [{"line": b.line, "reason": b.reason} for b in report.bad], "formats": dict(report.formats),
        "duplicates": [{"line": line, "same_as_line": first} for line, first in duplicates],
    }
    if config.model is not None:
        from onecard.tune.model import load_tokenizer, model_dir

        tokenizer = load_tokenizer(model_dir(config.model))
        encoded = encode_rows(tokenizer, [(ex.line, ex.messages) for ex in report.examples])
        result["tokens"] = length_stats([len(ids) for _, ids, _ in encoded], config.max_seq_length)
        result["response_tokens"] = length_stats([sum(x != -100 for x in labels) for _, _, labels in encoded])
    else:
        chars = [sum(len(m["content"]) for m in ex.messages) for ex in report.examples]
        result["characters"] = length_stats(chars)
        result["note"] = "pass --model to count tokens with the model's chat template"
    return result


def train(config: TuneConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
          resume: str | None = None) -> Run:
    """Fine-tune `config.model` on `config.data` as a recorded run; with `resume`, continue that run's checkpoint."""
    from transformers import AutoConfig

    from onecard.tune.checkpoints import latest_checkpoint
    from onecard.tune.model import load_model, load_tokenizer, lora_config, model_dir
    from onecard.tune.train import (
        RecordCallback,
        StopFlag,
        make_trainer,
        plot_losses,
        precision,
        score_responses_only,
        stop_on_signal,
    )

    device = select_device(config.device)
    dtype = precision(config.precision, device)
    four_bit = device.startswith("cuda") and supports_4bit()
    console = stderr_console()
    previous = find_tune_run(resume, runs_root, need=CHECKPOINTS) if resume else None
    checkpoint, skipped = _resume_point(previous) if previous else (None, [])

    # -- set up: the rows (bad lines are an error, duplicates dropped and listed), the split, the model folder
    train_ex, dev_ex, duplicates = _examples(config, previous)
    folder = model_dir(config.model)
    inputs = {"data": config.data, **({"dev_data": config.dev_data} if config.dev_data else {})}
    with (start_run("tune", config, inputs=inputs, seed=config.seed, runs_root=runs_root, report_to=report_to) as run,
          score_responses_only()):
        write_jsonl(train_ex, run.dir / TRAIN_SPLIT)
        write_jsonl(dev_ex, run.dir / DEV_SPLIT)
        tokenizer = load_tokenizer(folder)
        train_enc = encode_rows(tokenizer, [(ex.line, ex.messages) for ex in train_ex])
        dev_enc = encode_rows(tokenizer, [(ex.line, ex.messages) for ex in dev_ex])
        run.set("model", {"ref": config.model, "dir": str(folder)})
        if previous and checkpoint:
            run.set("resumed_from", {"run": previous["id"], "checkpoint": checkpoint.name, "skipped": skipped})
            for cut in skipped:
                console.print(f"resuming from {checkpoint.name}: {cut['checkpoint']} of run {previous['id']} lacks "
                              f"{cut['missing']} (its save was cut short)")

        # -- plan: fit turns the "auto" knobs into numbers for the card
        max_positions = getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", 2048)
        longest = max(len(ids) for _, ids, _ in train_enc)
        settings, job = choose(config, str(folder), longest, max_positions, four_bit=four_bit,
                               on_gpu=device.startswith("cuda"))
        console.print(f"tune: {config.model} on {device} ({str(dtype).removeprefix('torch.')}), "
                      f"{len(train_ex)} train / {len(dev_ex)} dev rows; {settings.source}:\n  {settings.describe()}")

        # -- work: train; on a CUDA out-of-memory error, fit's retry loop takes the ladder's next step down and
        # training continues from the latest checkpoint
        history: dict[str, list[list[float]]] = {"train": logged_losses(checkpoint) if checkpoint else [], "dev": []}
        stop = StopFlag()
        callback = RecordCallback(run, history, stop)
        rungs: list[tuple[Settings, Path | None]] = [(settings, checkpoint)]  # the settings of each try, its start
        oom_steps: list[dict[str, Any]] = []

        def attempt(settings: Settings, resume_from: Path | None) -> _Trained:
            """Train with `settings`, continuing from the checkpoint `resume_from` (None: from the start)."""
            fitted = fit_rows(train_enc, settings.max_seq_length)
            if not fitted.rows:  # every row is cut before its answer begins: nothing to train on
                need = 1 + min(next((i for i, x in enumerate(labels) if x != IGNORE_INDEX), len(labels))
                               for _, _, labels in train_enc)
                raise ConfigError(f"at max_seq_length {settings.max_seq_length} no train row keeps a token of its "
                                  "answer", f"set --max-seq-length to at least {need} (the shortest prompt and one "
                                  "answer token), or auto")
            dev_rows = fit_rows(dev_enc, settings.max_seq_length).rows
            run.set("plan", settings.to_json())
            run.set("data", {"train_rows": len(train_ex), "dev_rows": len(dev_ex), "duplicates_dropped": [
                {"line": a, "same_as_line": b} for a, b in duplicates], "truncated_rows": len(fitted.truncated),
                "dropped_rows": fitted.dropped, "train_tokens": length_stats([len(r) for _, r, _ in train_enc],
                                                                             settings.max_seq_length)})
            if fitted.truncated:
                console.print(f"  {len(fitted.truncated)} of {len(train_enc)} train rows are longer than "
                              f"{settings.max_seq_length} tokens and are truncated"
                              + (f"; {len(fitted.dropped)} keep no response token and are left out"
                                 if fitted.dropped else ""))
            model = load_model(folder, dtype, device, four_bit=settings.method == "qlora")
            args = _sft_args(config, settings, run.dir / CHECKPOINTS, dtype=dtype, device=device)
            adapter = lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets)
            with stop_on_signal(stop):
                trainer = make_trainer(model, tokenizer, args, fitted.rows, dev_rows, adapter, [callback])
                output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            steps_run = max(1, trainer.state.global_step - _step_of(resume_from))
            return _Trained(trainer, s_per_step=output.metrics["train_runtime"] / steps_run,
                            train_rows=len(fitted.rows), truncated_rows=len(fitted.truncated), dev_rows=len(dev_rows))

        def step_down(step: OomStep) -> None:
            """Record a step down the ladder; the next try continues from the latest checkpoint it can load."""
            before, resume_from = rungs[-1]
            after = settings_of(step.job, f"fit's out-of-memory ladder: {step.change}", plan(step.job))
            saved, _ = latest_checkpoint(run.dir / CHECKPOINTS)
            if saved is not None and after.optimizer == before.optimizer:
                resume_from = saved  # an optimizer change cannot load the old optimizer state
            rungs.append((after, resume_from))
            oom_steps.append({"at_step": callback.step, "change": step.change,
                              "resume_from": str(resume_from) if resume_from else None, "settings": after.to_json()})
            run.set("oom_steps", oom_steps)
            console.print(f"out of memory at step {callback.step}: {step.change}; continuing")

        # each try trains the latest rung's settings, which stand for the job the loop passes
        trained = retry_on_oom(job, lambda _: attempt(*rungs[-1]), ladder=ladder(job, four_bit=four_bit),
                               on_step=step_down)
        trainer = trained.trainer
        if stop.requested:
            console.print(f"interrupted at step {trainer.state.global_step}: checkpoint saved; continue with "
                          f"`onecard tune train --resume {run.id}`")
            plot_losses(history, run.dir / LOSS_PLOT, f"tune {run.id}")
            raise KeyboardInterrupt

        # -- evaluate: loss on the dev responses
        dev = trainer.evaluate() if trained.dev_rows else {}
        if "eval_loss" in dev:
            history["dev"].append([trainer.state.global_step, dev["eval_loss"]])
        metrics = {
            "first_loss": history["train"][0][1] if history["train"] else None,
            "final_loss": history["train"][-1][1] if history["train"] else None,
            "dev_loss": dev.get("eval_loss"), "dev_perplexity": math.exp(dev["eval_loss"]) if dev else None,
            "steps": trainer.state.global_step, "s_per_step": trained.s_per_step, "train_rows": trained.train_rows,
            "truncated_rows": trained.truncated_rows, "oom_steps": len(oom_steps),
        }
        run.set_metrics(metrics)
        console.print(f"step {metrics['steps']}: train loss {metrics['first_loss']:.4f} -> {metrics['final_loss']:.4f}"
                      + (f", dev loss {metrics['dev_loss']:.4f} (perplexity {metrics['dev_perplexity']:.2f})"
                         if dev else ""))

        # -- save: the adapter (with the tokenizer and its chat template), the loss curve
        trainer.save_model(str(run.dir / ADAPTER))
        tokenizer.save_pretrained(run.dir / ADAPTER)
        plot_losses(history, run.dir / LOSS_PLOT, f"tune {run.id}")
        for name in (ADAPTER, LOSS_PLOT, TRAIN_SPLIT, DEV_SPLIT):
            run.add_artifact(run.dir / name)
    observe_run(run.record)  # on a GPU: the measured peak beside the plan it trained with, for `onecard fit calibrate`
    return run


class _Trained(NamedTuple):
    """An attempt that fit: its trainer, and what the metrics take from it."""

    trainer: Any
    s_per_step: float
    train_rows: int
    truncated_rows: int
    dev_rows: int


def _sft_args(config: TuneConfig, settings: Settings, out: Path, *, dtype: Any, device: str) -> Any:
    """TRL's arguments for one try: the knobs fit chose (`settings`) and the ones the user set (`config`)."""
    from onecard.tune.train import sft_args

    return sft_args(
        out, micro_batch_size=settings.micro_batch_size, grad_accum=settings.grad_accum,
        gradient_checkpointing=settings.gradient_checkpointing, optimizer=settings.optimizer,
        max_seq_length=settings.max_seq_length, packing=config.packing, learning_rate=config.learning_rate,
        lr_scheduler=config.lr_scheduler, warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
        epochs=config.epochs, max_steps=config.max_steps, dtype=dtype, device=device,
        logging_steps=config.logging_steps, save_steps=config.save_steps, eval_steps=config.eval_steps,
        seed=config.seed, deepspeed=config.deepspeed)


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


def _resume_point(previous: dict[str, Any]) -> tuple[Path, list[dict[str, str]]]:
    """The newest complete checkpoint of run `previous`, and the newer ones skipped (cut short while saved)."""
    from onecard.tune.checkpoints import latest_checkpoint

    checkpoint, skipped = latest_checkpoint(Path(previous["dir"]) / CHECKPOINTS)
    if checkpoint is None:
        why = "; ".join(f"{s['checkpoint']} lacks {s['missing']}" for s in skipped) or "no checkpoint-N folder"
        config = previous["config"]
        raise OnecardError(f"nothing to resume: run {previous['id']} has no complete checkpoint ({why})",
                           f"start over without --resume, e.g. `onecard tune train --model {config['model']} "
                           f"--data {config['data']}` with the run's other flags")
    return checkpoint, skipped


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> TuneConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_steps."""
    saved = find_tune_run(ref, runs_root, need=CHECKPOINTS)["config"]
    return load_config(TuneConfig, None, {**saved, **overrides})


def evaluate(config: EvalConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Dev loss, perplexity, exact match, token F1 and ROUGE-L of the base model and the tuned one, side by side."""
    from onecard.tune.evaluate import compare

    record = find_tune_run(config.run, runs_root)
    data = config.data or str(Path(record["dir"]) / DEV_SPLIT)
    device = select_device(config.device)
    recorded = record.get("plan", {})
    result = compare(Path(record["dir"]) / ADAPTER, load_examples(data)[: config.max_rows], device=device,
                     max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, show=config.show,
                     max_length=recorded.get("max_seq_length"),
                     four_bit=recorded.get("method") == "qlora" and device.startswith("cuda") and supports_4bit())
    return {"run": record["id"], "data": data, **result}


def export(config: ExportConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Write the adapter, and as asked the merged model, a GGUF, and an Ollama Modelfile; returns their paths."""
    import onecard.tune.export

    record = find_tune_run(config.run, runs_root)
    out = Path(config.out) if config.out else Path(record["dir"]) / "export"
    return onecard.tune.export.export(Path(record["dir"]) / ADAPTER, out, merge=config.merge, gguf=config.gguf,
                                      ollama=config.ollama, llama_cpp=config.llama_cpp)


def find_tune_run(ref: str, runs_root: str | None, need: str = ADAPTER) -> dict[str, Any]:
    """A tune run that has `need` (its adapter, or checkpoints), by id, prefix, directory, or 'last'."""
    example = "onecard tune train --model tiny --data my_pairs.jsonl --max-steps 20"
    return find_run(ref, runs_root, capability="tune", has=need, how_to_make=f"train one, e.g. `{example}`")
