"""`onecard diffuse train`: set up -> plan -> work -> save, one recorded run (the CLI and web call `train`)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from onecard.core.device import select_device, select_dtype
from onecard.core.errors import DataError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, StopFlag, start_run, stop_after_step
from onecard.diffuse.config import DiffuseConfig
from onecard.diffuse.data import check_images
from onecard.diffuse.runs import LORA_DIR, TRAINING_STATE, VALIDATION_DIR, find_train_run, save_checkpoint
from onecard.fit.observations import observe_run

__all__ = ["train", "resume_config"]

Group = dict[str, Any]  # {"latents": (n, 4, h, w), "cond": encode_prompts' tensors (n, ...)}, one image size


def train(config: DiffuseConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
          resume: str | None = None) -> Run:
    """Train a LoRA on `config.base`'s UNet with the images of `config.data`, as a recorded run; with `resume`,
    continue that run's last checkpoint (its LoRA, optimizer, random state and losses) in a new run."""
    from onecard.core.extras import require

    diffusers = require("diffusers", "diffuse")
    import torch

    from onecard.diffuse.base import resolve_base
    from onecard.diffuse.plan import eight_bit_usable, plan_train, train_ladder
    from onecard.diffuse.train import LORA_FILE, add_lora, load_pipeline
    from onecard.fit.retry import OomStep, retry_on_oom

    report = check_images(config.data, config.resolution)
    if report["errors"]:
        shown = "; ".join(f"{p['file']}: {p['message']}" for p in report["problems"] if p["severity"] == "error")
        raise DataError(f"{config.data}: {report['errors']} errors in the training images: {shown[:600]}",
                        f"see them all with `onecard diffuse data check {config.data}`, fix them, then train")
    previous = find_train_run(resume, runs_root, need=f"{LORA_DIR}/{TRAINING_STATE}") if resume else None
    base = resolve_base(config.base)
    device = select_device(config.device)
    dtype = getattr(torch, select_dtype(config.dtype, device))
    eight_bit = eight_bit_usable(device)
    settings, job = plan_train(base.family, rank=config.rank, resolution=config.resolution,
                               batch_size=config.batch_size, gradient_checkpointing=config.gradient_checkpointing,
                               optimizer=config.optimizer, gpu=config.gpu, on_cuda=device.startswith("cuda"),
                               eight_bit=eight_bit, micro_batch_size=config.micro_batch_size)
    console = stderr_console()
    with start_run("diffuse", config, inputs={"data": config.data, "base": config.base}, seed=config.seed,
                   runs_root=runs_root, report_to=report_to) as run:
        # -- set up: the frozen pipeline, class images (drawn by the base, before the LoRA), the LoRA, the latents
        # and caption embeddings cached once
        torch.manual_seed(config.seed)
        pipe = load_pipeline(config.base, device, dtype)
        run.set("model", {"base": config.base, "path": str(base.path), "family": base.family, "device": device,
                          "dtype": str(dtype)[6:], "prediction_type": pipe.scheduler.config.prediction_type})
        run.set("plan", settings.to_json())
        prior = _class_group(pipe, config, runs_root, console) if config.class_prompt else None
        lora_config = add_lora(pipe.unet, config.rank, config.alpha)
        groups, captions = _instance_groups(pipe, config)
        if device.startswith("cuda"):  # latents cached: the VAE leaves the GPU, as fit plans it (back to draw grids)
            pipe.vae.to("cpu")
            torch.cuda.empty_cache()
        run.set("data", {"images": len(captions), "captions": captions, "warnings": report["warnings"],
                         "buckets": [list(g["size"]) for g in groups] if config.buckets else None,
                         "class_images": config.class_images if prior else 0})
        trainable = [p for p in pipe.unet.parameters() if p.requires_grad]
        console.print(f"diffuse train: LoRA r={config.rank} on {config.base} ({base.family}, {device}, "
                      f"{str(dtype)[6:]}), {len(captions)} images at {config.resolution} px, "
                      f"{sum(p.numel() for p in trainable):,} trainable parameters; {settings.source}: "
                      f"{_describe(job)}")

        # -- work: the noise-prediction loss on random batches; Ctrl-C saves after the step and stops; a CUDA
        # out-of-memory error steps down fit's ladder and goes on from the step that failed
        scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)  # the base's training noise schedule
        fp16 = dtype == torch.float16 and device.startswith("cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        generator = torch.Generator(device).manual_seed(config.seed)
        order = random.Random(config.seed)
        losses: list[float] = []
        jobs, oom_steps = [job], []
        optimizer = _optimizer(job.optimizer, trainable, config.lr)
        if previous is not None:
            from peft.utils import set_peft_model_state_dict

            state = torch.load(Path(previous["dir"]) / LORA_DIR / TRAINING_STATE, weights_only=True)
            set_peft_model_state_dict(pipe.unet, state["lora"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            order.setstate((state["order"][0], tuple(state["order"][1]), state["order"][2]))
            losses = list(state["losses"])
            run.set("resumed_from", {"run": previous["id"], "step": len(losses)})
            console.print(f"resuming run {previous['id']} at step {len(losses)}")
        prompts = [captions[0], *([config.class_prompt] if config.class_prompt else [])]
        stop = StopFlag(stepping=True)

        def step_down(step: OomStep) -> None:
            nonlocal optimizer
            if step.job.optimizer != jobs[-1].optimizer:
                optimizer = _optimizer(step.job.optimizer, trainable, config.lr)
            jobs.append(step.job)
            oom_steps.append({"change": step.change, "error": step.error})
            run.set("oom_steps", oom_steps)
            console.print(f"out of memory: {step.change}; going on from step {len(losses) + 1}")

        def work(_: Any) -> None:
            from onecard.diffuse.train import noise_loss  # looked up per call: a test may replace it

            pipe.unet.train()
            if jobs[-1].grad_ckpt:
                pipe.unet.enable_gradient_checkpointing()
            optimizer.zero_grad(set_to_none=True)  # a step that ran out of memory may have left gradients
            micro = jobs[-1].batch
            while len(losses) < config.max_steps and not stop.requested:
                t0 = time.perf_counter()
                group = groups[0] if len(groups) == 1 else order.choices(groups, [len(g["latents"]) for g in groups])[0]
                parts = [(group, order.sample(range(len(group["latents"])),
                                              min(config.batch_size, len(group["latents"]))), 1.0)]
                if prior is not None:
                    parts.append((prior, order.sample(range(len(prior["latents"])),
                                                      min(config.batch_size, len(prior["latents"]))),
                                  config.prior_weight))
                total = []
                for part, pick, weight in parts:  # the mean loss of each part, its micro-batches accumulated
                    part_loss = 0.0
                    for i in range(0, len(pick), micro):
                        chunk = pick[i:i + micro]
                        cond = {k: v[chunk].to(device) for k, v in part["cond"].items()}
                        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                            per_image = noise_loss(pipe.unet, scheduler, part["latents"][chunk].to(device), cond,
                                                   generator, config.noise_offset, config.snr_gamma)
                        loss = per_image.sum() / len(pick)
                        scaler.scale(loss * weight).backward()  # type: ignore[no-untyped-call]
                        part_loss += loss.item()
                    total.append(part_loss)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                losses.append(total[0] + (config.prior_weight * total[1] if prior is not None else 0.0))
                step = len(losses)
                run.log({"loss": losses[-1], **({"prior_loss": total[1]} if prior is not None else {}),
                         "s_per_step": time.perf_counter() - t0}, step=step)
                console.print(f"step {step}/{config.max_steps}: loss {losses[-1]:.4f}")
                if config.save_every and step % config.save_every == 0 and step < config.max_steps:
                    save_checkpoint(pipe.unet, lora_config, run, losses, optimizer, generator, order)
                if config.validate_every and step % config.validate_every == 0 and step < config.max_steps:
                    _validate(pipe, prompts, config, run, step, dtype)

        started = time.perf_counter()
        with stop_after_step(stop), run.gpu_phase("train"):
            retry_on_oom(job, work, ladder=train_ladder(job, eight_bit), on_step=step_down)
        train_s = time.perf_counter() - started

        # -- save: the LoRA (also when interrupted), the last validation grid, and the losses
        save_checkpoint(pipe.unet, lora_config, run, losses, optimizer, generator, order)
        run.add_artifact(run.dir / LORA_DIR / LORA_FILE, kind="lora")
        if config.validate_every and not stop.requested:
            run.add_artifact(_validate(pipe, prompts, config, run, len(losses), dtype), kind="validation")
        window = max(1, len(losses) // 4)  # one step's loss is noisy (a random timestep): compare quarter means
        metrics = {"first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
                   "first_quarter_loss": _mean(losses[:window]), "last_quarter_loss": _mean(losses[-window:]),
                   "steps": len(losses), "s_per_step": round(train_s / max(1, len(losses)), 3),
                   "oom_steps": len(oom_steps), "predicted_gib": settings.predicted_gib}
        run.set_metrics(metrics)
        if stop.requested:
            console.print(f"interrupted at step {len(losses)}: the LoRA is saved in {run.dir / LORA_DIR}")
            raise KeyboardInterrupt
        console.print(f"step {len(losses)}: loss (quarter means) {_num(metrics['first_quarter_loss'])} -> "
                      f"{_num(metrics['last_quarter_loss'])}; LoRA in {run.dir / LORA_DIR / LORA_FILE}")
    observe_run(run.record)  # on a GPU: the training steps' peak beside the plan, for `onecard fit calibrate`
    return run


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> DiffuseConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_steps."""
    from onecard.core.config import load_config

    saved = find_train_run(ref, runs_root, need=f"{LORA_DIR}/{TRAINING_STATE}")["config"]
    return load_config(DiffuseConfig, None, {**saved, **overrides})


def _instance_groups(pipe: Any, config: DiffuseConfig) -> tuple[list[Group], list[str]]:
    """The training images' latents and caption conditioning, one group per image size (one without buckets)."""
    from onecard.diffuse.data import load_bucketed, load_images

    if config.buckets:
        loaded = load_bucketed(config.data, config.resolution, config.token)
    else:
        pixels, captions = load_images(config.data, config.resolution, config.token)
        loaded = [((config.resolution, config.resolution), pixels, captions)]
    groups = [_group(pipe, size, pixels, captions) for size, pixels, captions in loaded]
    return groups, [c for _, _, caps in loaded for c in caps]


def _group(pipe: Any, size: tuple[int, int], pixels: Any, captions: list[str]) -> Group:
    from onecard.diffuse.train import cache_latents, encode_prompts, sdxl_time_ids

    cond = encode_prompts(pipe, captions)
    if "pooled" in cond:
        cond["time_ids"] = sdxl_time_ids(size[1], size[0], len(captions))
    # on a GPU one image at a time: the VAE encoder's working memory for 8 images at 512 px (~2 GiB) would
    # otherwise be the run's peak, above the training step fit plans for
    per_call = 1 if pipe.vae.device.type == "cuda" else 8
    return {"size": size, "latents": cache_latents(pipe.vae, pixels, per_call), "cond": cond}


def _class_group(pipe: Any, config: DiffuseConfig, runs_root: str | None, console: Any) -> Group:
    """The class images (cached beside the runs folder), as latents with the class prompt's conditioning."""
    from onecard.core.paths import runs_dir
    from onecard.diffuse.prior import class_cache_dir, class_images

    assert config.class_prompt is not None
    root = (Path(runs_root) if runs_root else runs_dir()).expanduser().parent / "diffuse-class-images"
    folder = class_cache_dir(root, config.base, config.class_prompt, config.resolution, config.seed)
    console.print(f"class images for {config.class_prompt!r}: {config.class_images} in {folder}")
    pixels = class_images(pipe, folder, config.class_prompt, config.class_images, config.resolution, config.seed,
                          on_image=lambda i: console.print(f"drew class image {i + 1}/{config.class_images}"))
    return _group(pipe, (config.resolution, config.resolution), pixels, [config.class_prompt] * len(pixels))


def _optimizer(name: str, params: list[Any], lr: float) -> Any:
    """AdamW, or bitsandbytes' 8-bit AdamW (CUDA; the plan offers it only where it runs)."""
    import torch

    if name == "adamw8bit":
        from onecard.core.extras import require

        return require("bitsandbytes", "diffuse").optim.AdamW8bit(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr)


def _validate(pipe: Any, prompts: list[str], config: DiffuseConfig, run: Run, step: int, dtype: Any) -> Path:
    import torch

    from onecard.diffuse.validate import draw_grid

    path = run.dir / VALIDATION_DIR / f"step-{step:06d}.png"
    device = pipe.unet.device
    with run.gpu_phase("validate"):  # generation, not the training job fit planned: its peak is kept apart
        pipe.vae.to(device)
        drawn = draw_grid(pipe, prompts, list(range(config.validation_seeds)), config.resolution, path,
                          None if dtype == torch.float32 else dtype)
        if device.type == "cuda":
            pipe.vae.to("cpu")
            torch.cuda.empty_cache()
    return drawn


def _describe(job: Any) -> str:
    return (f"micro-batch {job.batch}, gradient checkpointing {'on' if job.grad_ckpt else 'off'}, {job.optimizer}, "
            "SDPA attention, latents cached")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
