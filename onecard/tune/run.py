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
from onecard.core.errors import ConfigError
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
from onecard.tune.config import CheckConfig, EvalConfig, ExportConfig, TuneConfig
from onecard.tune.data import dedupe, load_examples, read_examples, split, write_jsonl
from onecard.tune.formatting import IGNORE_INDEX, encode_rows, fit_rows
from onecard.tune.plan import Settings, choose, ladder, settings_of

__all__ = ["check", "train", "resume_config", "evaluate", "export", "find_tune_run"]


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

    from onecard.tune.model import load_model, load_tokenizer, lora_config, model_dir
    from onecard.tune.train import make_trainer, precision, score_responses_only

    device = select_device(config.device)
    dtype = precision(config.precision, device)
    four_bit = device.startswith("cuda") and supports_4bit()
    console = stderr_console()
    previous = find_tune_run(resume, runs_root, need=CHECKPOINTS) if resume else None
    checkpoint, skipped = resume_point(previous, "onecard tune train") if previous else (None, [])

    # -- set up: the rows (bad lines are an error, duplicates dropped and listed), the split, the model folder
    train_ex, dev_ex, duplicates = train_dev_examples(config, previous, load=load_examples, dedupe=dedupe, split=split)
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

        # -- plan: fit turns the "auto" knobs into numbers for the card
        max_positions = getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", 2048)
        longest = max(len(ids) for _, ids, _ in train_enc)
        settings, job = choose(config, str(folder), longest, max_positions, four_bit=four_bit,
                               on_gpu=device.startswith("cuda"))
        console.print(f"tune: {config.model} on {device} ({str(dtype).removeprefix('torch.')}), "
                      f"{len(train_ex)} train / {len(dev_ex)} dev rows; {settings.source}:\n  {settings.describe()}")

        # -- work: train; on a CUDA out-of-memory error, fit's retry loop takes the ladder's next step down and
        # training continues from the latest checkpoint
        tries = Tries(run, settings, checkpoint, command="onecard tune train", plot_title=f"tune {run.id}",
                      loss_label="cross-entropy on responses (nats/token)")

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
            args = sft_args(run.dir / CHECKPOINTS, settings, config, dtype=dtype, device=device,
                            # Rows arrive tokenized with their labels (formatting.encode_rows); packing puts several
                            # rows in one sequence, and the padding-free collator restarts position ids per row, so
                            # attention stays within a row.
                            max_length=settings.max_seq_length, packing=config.packing, packing_strategy="bfd",
                            deepspeed=config.deepspeed)
            adapter = lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets)
            trainer, s_per_step = tries.train(
                lambda callbacks: make_trainer(model, tokenizer, args, fitted.rows, dev_rows, adapter, callbacks),
                resume_from)
            return _Trained(trainer, s_per_step=s_per_step, train_rows=len(fitted.rows),
                            truncated_rows=len(fitted.truncated), dev_rows=len(dev_rows),
                            longest_row=max(len(row["input_ids"]) for row in fitted.rows))

        # each try trains the latest rung's settings, which stand for the job the loop passes
        with run.gpu_phase("train"):
            trained = retry_on_oom(job, lambda _: attempt(*tries.last), ladder=ladder(job, four_bit=four_bit),
                                   on_step=lambda step: tries.step_down(step.change, settings_of(
                                       step.job, f"fit's out-of-memory ladder: {step.change}", plan(step.job))))
        trainer = trained.trainer

        # -- evaluate: loss on the dev responses (a Ctrl-C stops here, with the checkpoint saved)
        losses = tries.evaluate(trainer, trained.dev_rows)
        dev_loss = losses["dev_loss"]
        metrics = {
            **losses, "dev_perplexity": math.exp(dev_loss) if dev_loss is not None else None,
            "steps": trainer.state.global_step, "s_per_step": trained.s_per_step, "train_rows": trained.train_rows,
            "truncated_rows": trained.truncated_rows, "oom_steps": len(tries.oom_steps),
        }
        run.set_metrics(metrics)
        console.print(f"step {metrics['steps']}: train loss {metrics['first_loss']:.4f} -> {metrics['final_loss']:.4f}"
                      + (f", dev loss {dev_loss:.4f} (perplexity {metrics['dev_perplexity']:.2f})"
                         if dev_loss is not None else ""))

        # -- save: the adapter (with the tokenizer and its chat template), the loss curve
        tries.save(trainer, tokenizer)
    # on a GPU: the measured peak beside the plan it trained with, for `onecard fit calibrate`
    observe_run(run.record, ran=ran_fields(job.seq, trained.longest_row, config.packing))
    return run


class _Trained(NamedTuple):
    """An attempt that fit: its trainer, and what the metrics take from it."""

    trainer: Any
    s_per_step: float
    train_rows: int
    truncated_rows: int
    dev_rows: int
    longest_row: int  # tokens of the longest train row after truncation


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
