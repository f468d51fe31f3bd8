"""Entry points of `onecard diffuse` (the CLI and web call these): `check`, `train`, `sample`, `export`."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from onecard.core.device import select_device, select_dtype
from onecard.core.errors import DataError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, StopFlag, start_run, stop_after_step, write_json_atomic
from onecard.diffuse.config import CheckConfig, DiffuseConfig, ExportConfig, SampleConfig
from onecard.diffuse.data import check_images, load_images

__all__ = ["check", "train", "resume_config", "sample", "export", "LORA_DIR", "STATE_FILE", "TRAINING_STATE"]

LORA_DIR = "lora"  # the run's LoRA folder: pytorch_lora_weights.safetensors, what `load_lora_weights(dir)` reads
STATE_FILE = "state.json"  # beside it: the step the LoRA was saved at
TRAINING_STATE = "training_state.pt"  # and what `--resume` continues from: LoRA, optimizer, RNGs, losses


def check(config: CheckConfig) -> dict[str, Any]:
    """The data check's report: counts, and each problem by file (errors stop training, warnings do not)."""
    return check_images(config.data, config.resolution)


def train(config: DiffuseConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
          resume: str | None = None) -> Run:
    """Train a LoRA on `config.base`'s UNet with the images of `config.data`, as a recorded run; with `resume`,
    continue that run's last checkpoint (its LoRA, optimizer, random state and losses) in a new run."""
    from onecard.core.extras import require

    diffusers = require("diffusers", "diffuse")
    import torch

    from onecard.diffuse.train import LORA_FILE, add_lora, cache_latents, encode_prompts, load_pipeline, noise_loss

    report = check_images(config.data, config.resolution)
    if report["errors"]:
        shown = "; ".join(f"{p['file']}: {p['message']}" for p in report["problems"] if p["severity"] == "error")
        raise DataError(f"{config.data}: {report['errors']} errors in the training images: {shown[:600]}",
                        f"see them all with `onecard diffuse data check {config.data}`, fix them, then train")
    previous = _find_train_run(resume, runs_root, need=f"{LORA_DIR}/{TRAINING_STATE}") if resume else None
    device = select_device(config.device)
    dtype = getattr(torch, select_dtype(config.dtype, device))
    console = stderr_console()
    with start_run("diffuse", config, inputs={"data": config.data, "base": config.base}, seed=config.seed,
                   runs_root=runs_root, report_to=report_to) as run:
        # -- set up: the frozen pipeline, the LoRA, the latents and caption embeddings cached once
        torch.manual_seed(config.seed)
        pipe = load_pipeline(config.base, device, dtype)
        lora_config = add_lora(pipe.unet, config.rank, config.alpha)
        pixels, captions = load_images(config.data, config.resolution, config.token)
        latents = cache_latents(pipe.vae, pixels)
        embeddings = encode_prompts(pipe.tokenizer, pipe.text_encoder, captions)
        run.set("model", {"base": config.base, "device": device, "dtype": str(dtype)[6:],
                          "prediction_type": pipe.scheduler.config.prediction_type})
        run.set("data", {"images": len(captions), "captions": captions, "warnings": report["warnings"]})
        trainable = [p for p in pipe.unet.parameters() if p.requires_grad]
        console.print(f"diffuse train: LoRA r={config.rank} on {config.base} ({device}, {str(dtype)[6:]}), "
                      f"{len(captions)} images at {config.resolution} px, {sum(p.numel() for p in trainable):,} "
                      "trainable parameters")

        # -- work: the noise-prediction loss on random batches; Ctrl-C saves after the step and stops
        scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)  # the base's training noise schedule
        optimizer = torch.optim.AdamW(trainable, lr=config.lr)
        fp16 = dtype == torch.float16 and device.startswith("cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        generator = torch.Generator(device).manual_seed(config.seed)
        order = random.Random(config.seed)
        losses: list[float] = []
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
        stop = StopFlag(stepping=True)
        started = time.perf_counter()
        pipe.unet.train()
        with stop_after_step(stop):
            while len(losses) < config.max_steps and not stop.requested:
                t0 = time.perf_counter()
                pick = order.sample(range(len(latents)), min(config.batch_size, len(latents)))
                with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                    loss = noise_loss(pipe.unet, scheduler, latents[pick].to(device), embeddings[pick].to(device),
                                      generator)
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                step = len(losses)
                run.log({"loss": losses[-1], "s_per_step": time.perf_counter() - t0}, step=step)
                console.print(f"step {step}/{config.max_steps}: loss {losses[-1]:.4f}")
                if config.save_every and step % config.save_every == 0 and step < config.max_steps:
                    _save(pipe.unet, lora_config, run, losses, optimizer, generator, order)
        train_s = time.perf_counter() - started

        # -- save: the LoRA (also when interrupted), and the losses
        _save(pipe.unet, lora_config, run, losses, optimizer, generator, order)
        run.add_artifact(run.dir / LORA_DIR / LORA_FILE, kind="lora")
        window = max(1, len(losses) // 4)  # one step's loss is noisy (a random timestep): compare quarter means
        metrics = {"first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
                   "first_quarter_loss": _mean(losses[:window]), "last_quarter_loss": _mean(losses[-window:]),
                   "steps": len(losses), "s_per_step": round(train_s / max(1, len(losses)), 3)}
        run.set_metrics(metrics)
        if stop.requested:
            console.print(f"interrupted at step {len(losses)}: the LoRA is saved in {run.dir / LORA_DIR}")
            raise KeyboardInterrupt
        console.print(f"step {len(losses)}: loss (quarter means) {_num(metrics['first_quarter_loss'])} -> "
                      f"{_num(metrics['last_quarter_loss'])}; LoRA in {run.dir / LORA_DIR / LORA_FILE}")
        return run


def sample(config: SampleConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Draw `config.batch` images from a trained run (its base with its LoRA) or a pipeline folder, with any more
    LoRAs at their weights; writes the PNGs and samples.json (prompt, seeds, LoRAs) into `config.out`."""
    from onecard.core.extras import require

    require("diffusers", "diffuse")
    import torch

    from onecard.diffuse.sample import generate, load_loras, parse_lora
    from onecard.diffuse.train import LORA_FILE, load_pipeline

    loras = [parse_lora(spec) for spec in config.lora]
    if (Path(config.source).expanduser() / "model_index.json").is_file():
        base, run_id = config.source, None
    else:
        record = _find_train_run(config.source, runs_root, need=f"{LORA_DIR}/{LORA_FILE}")
        base, run_id = record["config"]["base"], record["id"]
        loras.insert(0, (Path(record["dir"]) / LORA_DIR / LORA_FILE, config.weight))
    device = select_device(config.device)
    dtype = getattr(torch, select_dtype(config.dtype, device))
    pipe = load_pipeline(base, device, dtype)
    loaded = load_loras(pipe, loras)
    seeds = [config.seed + i for i in range(config.batch)]
    images = generate(pipe, config.prompt, negative_prompt=config.negative_prompt, steps=config.steps,
                      guidance=config.guidance, resolution=config.resolution, seeds=seeds)
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for seed, image in zip(seeds, images, strict=True):
        files.append(out / f"{run_id or 'base'}-seed{seed}.png")
        image.save(files[-1])
    result = {"source": config.source, "run": run_id, "base": base, "prompt": config.prompt,
              "negative_prompt": config.negative_prompt, "steps": config.steps, "guidance": config.guidance,
              "size": images[0].size[0], "device": device, "dtype": str(dtype)[6:], "loras": loaded,
              "images": [{"file": str(f), "seed": s} for f, s in zip(files, seeds, strict=True)]}
    write_json_atomic(out / "samples.json", result)
    return result


def export(config: ExportConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Write the run's LoRA as one .safetensors file in the kohya or the diffusers layout; returns where and what."""
    import shutil

    import torch

    from onecard.diffuse.export import kohya_metadata, save_safetensors, to_kohya
    from onecard.diffuse.train import LORA_FILE

    record = _find_train_run(config.run, runs_root, need=f"{LORA_DIR}/{TRAINING_STATE}")
    folder = Path(record["dir"]) / LORA_DIR
    out = Path(config.out or Path(record["dir"]) / "export" / f"{record['id']}-{config.format}.safetensors")
    trained = record["config"]
    alpha = trained["alpha"] or trained["rank"]
    if config.format == "kohya":
        state = torch.load(folder / TRAINING_STATE, weights_only=True)
        tensors = to_kohya(state["lora"], alpha)
        save_safetensors(tensors, out, kohya_metadata(trained["rank"], alpha, trained["base"]))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / LORA_FILE, out.with_name(out.name + ".tmp"))
        out.with_name(out.name + ".tmp").replace(out)
    return {"run": record["id"], "format": config.format, "file": str(out), "rank": trained["rank"], "alpha": alpha}


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> DiffuseConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_steps."""
    from onecard.core.config import load_config

    saved = _find_train_run(ref, runs_root, need=f"{LORA_DIR}/{TRAINING_STATE}")["config"]
    return load_config(DiffuseConfig, None, {**saved, **overrides})


def _find_train_run(ref: str, runs_root: str | None, need: str) -> dict[str, Any]:
    from onecard.core.runs import find_run

    return find_run(ref, runs_root, capability="diffuse", has=need,
                    how_to_make="train one: `onecard diffuse train --base PIPELINE_DIR --data IMAGES_DIR`")


def _save(unet: Any, lora_config: Any, run: Run, losses: list[float], optimizer: Any, generator: Any,
          order: random.Random) -> None:
    """The LoRA for diffusers, and what `--resume` needs; each file replaced whole (Ctrl-C cannot leave half of one)."""
    import os

    import torch
    from peft.utils import get_peft_model_state_dict

    from onecard.diffuse.train import save_lora

    folder = Path(run.dir) / LORA_DIR
    save_lora(unet, lora_config, folder)
    state = {"lora": get_peft_model_state_dict(unet), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "order": order.getstate(), "losses": losses}
    torch.save(state, folder / f"{TRAINING_STATE}.tmp")
    os.replace(folder / f"{TRAINING_STATE}.tmp", folder / TRAINING_STATE)
    write_json_atomic(folder / STATE_FILE, {"step": len(losses)})


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
