"""`onecard asr finetune`: a LoRA on a transformers Whisper over your clips, dev WER before and after, and the merged
model exported to CTranslate2 so `onecard asr transcribe --model RUN` runs it.

The run's directory holds `adapter/` (peft), `checkpoints/step-N/` (adapter, optimizer, schedule, clip order and
losses, written whole or not at all), `model/` (CTranslate2, with tokenizer.json and preprocessor_config.json) and
`loss.png`. The loop is a plain PyTorch one: a LoRA on q and v of a Whisper needs no more than micro-batches,
accumulation and autocast, and a plain loop lets Ctrl-C finish the step and save it; `--resume RUN` goes on from
RUN's newest checkpoint in a new run that names RUN (`resumed_from`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from onecard.asr import audio
from onecard.asr.config import FinetuneConfig
from onecard.asr.data import Item, load_items
from onecard.asr.finetune import (
    ADAPTER,
    CHECKPOINTS,
    LOSS_PLOT,
    MAX_CLIP_S,
    MODEL_DIR,
    Plan,
    choose,
    collate,
    dev_wer,
    export_ct2,
    features_of,
    label_ids,
    latest_checkpoint,
    model_folder,
    save_checkpoint,
)
from onecard.core.device import select_device, select_dtype
from onecard.core.errors import DataError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, StopFlag, start_run, stop_after_step
from onecard.fit.observations import observe_run

__all__ = ["finetune", "resume_config"]


def finetune(config: FinetuneConfig, runs_dir: str | None = None, report_to: tuple[str, ...] = ("trackio",),
             resume: str | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` on `config.data` as a recorded run; returns the run's id, folder and figures. With
    `resume`, a new run goes on from that run's newest checkpoint (its adapter, optimizer, clip order and losses)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from onecard.fit.retry import OomStep, retry_on_oom

    folder = model_folder(config.model)
    previous = _resumable(resume, runs_dir) if resume else None
    train_items, dev_items = _split(config)
    device = select_device(config.device)
    dtype = getattr(torch, select_dtype(config.precision, device))
    console = stderr_console()
    inputs = {"data": config.data, **({"dev_data": config.dev_data} if config.dev_data else {})}
    with start_run("asr", config, inputs=inputs, seed=config.seed, runs_root=runs_dir, report_to=report_to) as run:
        # -- set up: the processor, the labels, the base model
        torch.manual_seed(config.seed)
        processor = WhisperProcessor.from_pretrained(folder)
        if getattr(processor.tokenizer, "set_prefix_tokens", None) and _multilingual(folder):
            processor.tokenizer.set_prefix_tokens(language=config.language, task="transcribe", predict_timestamps=False)
        labels = {item: label_ids(processor.tokenizer, item.reference) for item in train_items}
        base = WhisperForConditionalGeneration.from_pretrained(folder, dtype=dtype if device != "cpu" else None)
        base.to(device)  # type: ignore[arg-type]
        run.set("model", {"ref": config.model, "dir": str(folder), "device": device, "dtype": str(dtype)[6:]})
        run.set("data", {"train_clips": len(train_items), "dev_clips": len(dev_items),
                         "train": [i.name for i in train_items], "dev": [i.name for i in dev_items]})

        # -- plan: fit turns the "auto" knobs into numbers for the card
        plan, job = choose(config, str(folder), on_gpu=device.startswith("cuda"))
        run.set("plan", plan.to_json())
        console.print(f"asr finetune: {config.model} on {device} ({str(dtype)[6:]}), {len(train_items)} train / "
                      f"{len(dev_items)} dev clips; {plan.source}: micro-batch {plan.micro_batch_size} x "
                      f"{plan.grad_accum}, gradient checkpointing {'on' if plan.gradient_checkpointing else 'off'}")
        before = dev_wer(base, processor, dev_items, plan.micro_batch_size, config.language, device)
        console.print(f"dev WER before: {_pct(before['wer'])}")

        # -- work: train; on a CUDA out-of-memory error, step down fit's ladder and continue from the last checkpoint
        adapter = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules=["q_proj", "v_proj"])
        model = get_peft_model(base, adapter)
        history: dict[str, list[list[float]]] = {"train": [], "dev": []}
        plans, oom_steps, stop = [plan], [], StopFlag(stepping=True)

        resumed = latest_checkpoint(Path(previous["dir"]) / CHECKPOINTS) if previous else None
        if previous is not None and resumed is not None:
            run.set("resumed_from", {"run": previous["id"], "checkpoint": resumed.name})
            console.print(f"resuming run {previous['id']} from {resumed.name}")

        def attempt(_: Any) -> int:
            return _train(model, processor, train_items, labels, config, plans[-1], run, history, stop,
                          device, dtype, resumed)

        def step_down(step: OomStep) -> None:
            plans.append(Plan(step.job.batch, step.job.grad_accum, step.job.grad_ckpt,
                              f"fit's out-of-memory ladder: {step.change}", fit_job=step.job.model_dump()))
            oom_steps.append({"change": step.change, "error": step.error})
            run.set("oom_steps", oom_steps)
            console.print(f"out of memory: {step.change}; continuing from the last checkpoint")

        started = time.perf_counter()
        with run.gpu_phase("train"):
            steps = retry_on_oom(job, attempt, ladder=_ladder(job), on_step=step_down)
        train_s = time.perf_counter() - started
        _plot(history, run)
        if stop.requested:
            console.print(f"interrupted at step {steps}: checkpoint saved in {run.dir / CHECKPOINTS}")
            raise KeyboardInterrupt

        # -- evaluate: dev WER with the adapter
        after = dev_wer(model, processor, dev_items, plans[-1].micro_batch_size, config.language, device)
        losses = [loss for _, loss in history["train"]]
        metrics = {"wer_before": before["wer"], "wer_after": after["wer"], "cer_before": before["cer"],
                   "cer_after": after["cer"], "first_loss": losses[0] if losses else None,
                   "final_loss": losses[-1] if losses else None, "steps": steps, "oom_steps": len(oom_steps),
                   "s_per_step": round(train_s / max(1, steps - (int(resumed.name[5:]) if resumed else 0)), 3)}
        run.set("dev", {"before": before["files"], "after": after["files"]})
        run.set_metrics(metrics)
        console.print(f"step {steps}: loss {_num(metrics['first_loss'])} -> {_num(metrics['final_loss'])}; dev WER "
                      f"{_pct(before['wer'])} -> {_pct(after['wer'])}")

        # -- save: the adapter, the merged model in CTranslate2 format (what `asr transcribe --model RUN` loads)
        model.save_pretrained(str(run.dir / ADAPTER))
        merged = model.merge_and_unload()
        export_ct2(merged.to("cpu", torch.float32), processor, run.dir / MODEL_DIR, config.export_quantization)
        for name in (ADAPTER, MODEL_DIR, LOSS_PLOT):
            run.add_artifact(run.dir / name)
        result = {"run_id": run.id, "dir": str(run.dir), "model_dir": str(run.dir / MODEL_DIR),
                  "plan": plans[-1].to_json(), **metrics}
    observe_run(run.record)  # on a GPU: the training steps' peak beside the plan, for `onecard fit calibrate`
    return result


def _train(model: Any, processor: Any, items: list[Item], labels: dict[Item, list[int]], config: FinetuneConfig,
           plan: Plan, run: Run, history: dict[str, list[list[float]]], stop: StopFlag, device: str, dtype: Any,
           resumed: Path | None) -> int:
    """Train from the run's latest checkpoint (after an out-of-memory error), else `resumed` (the checkpoint of the
    run --resume names), else the start, to the last step; returns the step reached."""
    import contextlib

    import torch
    from transformers import get_scheduler

    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
    per_epoch = max(1, len(items) // config.batch_size)
    total = config.max_steps or max(1, round(config.epochs * per_epoch))
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=total // 10, num_training_steps=total)
    step, order = 0, random.Random(config.seed)
    saved = latest_checkpoint(Path(run.dir) / CHECKPOINTS) or resumed
    if saved is not None:  # go on from the last step saved
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(saved / "adapter_model.safetensors")))
        state = torch.load(saved / "training_state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        if "order" in state:  # checkpoints written before the clip order was saved start it afresh
            order.setstate((state["order"][0], tuple(state["order"][1]), state["order"][2]))
            torch.set_rng_state(state["torch_rng"])
            history["train"] = [list(point) for point in state["losses"]]
    fp16 = dtype == torch.float16 and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    autocast = (torch.autocast(device.split(":")[0], dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())
    start_id = model.config.decoder_start_token_id
    weights = model.get_encoder().conv1.weight.dtype
    model.train()
    with stop_after_step(stop):
        while step < total and not stop.requested:
            t0 = time.perf_counter()
            batch_items = order.sample(items, min(config.batch_size, len(items)))
            loss_sum = 0.0
            for i in range(0, len(batch_items), plan.micro_batch_size):
                micro = batch_items[i:i + plan.micro_batch_size]
                batch = collate(features_of(processor, micro), [labels[m] for m in micro], start_id)
                with autocast:
                    out = model(input_features=batch["input_features"].to(device, weights),
                                labels=batch["labels"].to(device))
                loss = out.loss * len(micro) / len(batch_items)  # the mean over the step's clips
                scaler.scale(loss).backward()
                loss_sum += loss.item()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            history["train"].append([step, loss_sum])
            run.log({"loss": loss_sum, "lr": scheduler.get_last_lr()[0], "s_per_step": time.perf_counter() - t0},
                    step=step)
            stderr_console().print(f"step {step}/{total}: loss {loss_sum:.4f}")
            if step % config.save_steps == 0 or stop.requested or step == total:
                save_checkpoint(Path(run.dir) / CHECKPOINTS, step, model, optimizer, scheduler, order,
                                history["train"])
    return step


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> FinetuneConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_steps."""
    from onecard.core.config import load_config

    return load_config(FinetuneConfig, None, {**_resumable(ref, runs_root)["config"], **overrides})


def _resumable(ref: str, runs_root: str | None) -> dict[str, Any]:
    """The record of an asr finetune run (id, unique prefix, folder or 'last') with a whole checkpoint."""
    from onecard.core.runs import find_run

    record = find_run(ref, runs_root, capability="asr", has=CHECKPOINTS,
                      how_to_make="fine-tune one: `onecard asr finetune --model MODEL --data manifest.tsv`")
    if latest_checkpoint(Path(record["dir"]) / CHECKPOINTS) is None:
        raise DataError(f"run {record['id']} has no whole checkpoint in {Path(record['dir']) / CHECKPOINTS}",
                        "start a new run without --resume")
    return record


def _ladder(job: Any) -> Any:
    """fit's out-of-memory ladder, less the steps that need bitsandbytes (8-bit optimizers, 4-bit weights)."""
    from onecard.fit.ladder import oom_ladder_keeping

    return oom_ladder_keeping(job, {"method": job.method, "quant": job.quant, "optimizer": job.optimizer})


def _split(config: FinetuneConfig) -> tuple[list[Item], list[Item]]:
    """The train and dev clips (dev: --dev-data, else a seeded share of --data); clips over 30 s are an error."""
    items = load_items(config.data)
    for item in items:
        seconds = audio.duration_s(item.audio)
        if seconds is not None and seconds > MAX_CLIP_S + 0.5:
            raise DataError(f"{item.audio}: {seconds:.1f} s long; Whisper trains on clips of 30 s or less",
                            "cut long recordings into clips at sentence ends, each with its part of the transcript")
    if config.dev_data:
        return items, load_items(config.dev_data)
    if len(items) < 2:
        raise DataError(f"{config.data}: one clip cannot be split into train and dev",
                        "add clips, or pass --dev-data with separate dev clips")
    shuffled = random.Random(config.seed).sample(items, len(items))
    n_dev = max(1, round(config.dev_fraction * len(items)))
    return shuffled[n_dev:], shuffled[:n_dev]


def _multilingual(folder: Path) -> bool:
    import json

    return int(json.loads((folder / "config.json").read_text()).get("vocab_size", 0)) >= 51865  # .en: 51864


def _plot(history: dict[str, list[list[float]]], run: Run) -> None:
    from onecard.core import plots

    if history["train"]:
        plots.plot_losses(history, run.dir / LOSS_PLOT, f"asr finetune {run.id}", xlabel="optimizer step",
                          ylabel="cross-entropy on transcript tokens (nats/token)")


def _pct(wer: float | None) -> str:
    return "-" if wer is None else f"{100 * wer:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
