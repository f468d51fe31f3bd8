"""Entry points of `onecard diffuse` (the CLI and web call these): `check`, `train`, `sample`, `export`.

`train` and `resume_config` live in `onecard.diffuse.training` (the training flow is a module of its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onecard.core.device import select_device, select_dtype
from onecard.core.progress import stderr_console
from onecard.core.records import write_json_atomic
from onecard.diffuse.config import CaptionConfig, CheckConfig, EvalConfig, ExportConfig, SampleConfig
from onecard.diffuse.data import check_images
from onecard.diffuse.runs import LORA_DIR, STATE_FILE, TRAINING_STATE, find_train_run
from onecard.diffuse.training import resume_config, train

__all__ = ["check", "caption", "train", "resume_config", "sample", "evaluate", "export", "LORA_DIR", "STATE_FILE",
           "TRAINING_STATE"]


def check(config: CheckConfig) -> dict[str, Any]:
    """The data check's report: counts, and each problem by file (errors stop training, warnings do not); with
    `config.sheet`, a contact sheet PNG of the images there."""
    from onecard.diffuse.data import contact_sheet

    report = check_images(config.data, config.resolution, config.near_distance)
    if config.sheet:
        report["sheet"] = str(contact_sheet(config.data, config.sheet))
    return report


def sample(config: SampleConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Draw `config.batch` images from a trained run (its base with its LoRA) or a pipeline folder, with any more
    LoRAs at their weights; writes the PNGs and samples.json (prompt, seeds, LoRAs) into `config.out`."""
    from onecard.core.extras import require

    require("diffusers", "diffuse")
    import torch

    from onecard.diffuse.base import looks_like_base, resolve_base
    from onecard.diffuse.plan import apply_sample_settings, plan_sample, sample_ladder
    from onecard.diffuse.sample import generate, load_loras, parse_lora
    from onecard.diffuse.train import LORA_FILE, load_pipeline
    from onecard.fit.retry import OomStep, retry_on_oom

    loras = [parse_lora(spec) for spec in config.lora]
    if looks_like_base(config.source):
        base, run_id = config.source, None
    else:
        record = find_train_run(config.source, runs_root, need=f"{LORA_DIR}/{LORA_FILE}")
        base, run_id = record["config"]["base"], record["id"]
        loras.insert(0, (Path(record["dir"]) / LORA_DIR / LORA_FILE, config.weight))
    device = select_device(config.device)
    dtype = getattr(torch, select_dtype(config.dtype, device))
    on_cuda = device.startswith("cuda")
    knobs: dict[str, Any] = {k: v for k, v in (("vae_slicing", config.vae_slicing), ("vae_tiling", config.vae_tiling),
                                               ("offload", config.offload)) if v != "auto"}
    if config.attention_slicing != "auto":
        knobs["attention"] = "slicing" if config.attention_slicing else "sdpa"
    settings, job = plan_sample(resolve_base(base).family, batch=config.batch, resolution=config.resolution,
                                fp32=dtype == torch.float32, knobs=knobs, gpu=config.gpu, on_cuda=on_cuda)
    pipe = load_pipeline(base, device, dtype, place=False)
    loaded = load_loras(pipe, loras)
    seeds = [config.seed + i for i in range(config.batch)]
    steps: list[dict[str, str]] = []

    def work(job: Any) -> list[Any]:  # the batch in chunks of the planned one (fit's ladder may halve it)
        apply_sample_settings(pipe, job, device)
        return [image for i in range(0, len(seeds), job.batch)
                for image in generate(pipe, config.prompt, negative_prompt=config.negative_prompt, steps=config.steps,
                                      guidance=config.guidance, resolution=config.resolution,
                                      seeds=seeds[i:i + job.batch])]

    def step_down(step: OomStep) -> None:
        steps.append({"change": step.change, "error": step.error})
        stderr_console().print(f"out of memory: {step.change}; drawing again")

    images = retry_on_oom(job, work, ladder=sample_ladder(job, on_cuda), on_step=step_down)
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for seed, image in zip(seeds, images, strict=True):
        files.append(out / f"{run_id or 'base'}-seed{seed}.png")
        image.save(files[-1])
    result = {"source": config.source, "run": run_id, "base": base, "prompt": config.prompt,
              "negative_prompt": config.negative_prompt, "steps": config.steps, "guidance": config.guidance,
              "size": images[0].size[0], "device": device, "dtype": str(dtype)[6:], "loras": loaded,
              "plan": settings.to_json(), "oom_steps": steps,
              "images": [{"file": str(f), "seed": s} for f, s in zip(files, seeds, strict=True)]}
    write_json_atomic(out / "samples.json", result)
    return result


def export(config: ExportConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Write the run's LoRA as one .safetensors file in the kohya or the diffusers layout; returns where and what."""
    import shutil

    import torch

    from onecard.diffuse.export import kohya_metadata, save_safetensors, to_kohya
    from onecard.diffuse.train import LORA_FILE

    record = find_train_run(config.run, runs_root, need=f"{LORA_DIR}/{TRAINING_STATE}")
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




def evaluate(config: EvalConfig, runs_root: str | None = None) -> dict[str, Any]:
    """CLIP measures of a trained run, its LoRA on against off (the base): the subject prompt's CLIP score and
    similarity to the training images, the class prompt's CLIP score and drift. Writes RUN_DIR/eval/ (the images
    and eval.json)."""
    from onecard.core.extras import require

    require("diffusers", "diffuse")
    import torch
    from PIL import Image

    from onecard.diffuse import evaluate as clip
    from onecard.diffuse.data import list_images
    from onecard.diffuse.sample import generate, load_loras
    from onecard.diffuse.train import LORA_FILE, load_pipeline

    record = find_train_run(config.run, runs_root, need=f"{LORA_DIR}/{LORA_FILE}")
    trained = record["config"]
    device = select_device(config.device)
    dtype = getattr(torch, select_dtype(config.dtype, device))
    model, processor = clip.load_clip(config.clip, device)
    pipe = load_pipeline(trained["base"], device, dtype)
    load_loras(pipe, [(Path(record["dir"]) / LORA_DIR / LORA_FILE, 1.0)])
    token, side = trained["token"], config.resolution or trained["resolution"]
    prompts = {"subject": config.prompt or record["data"]["captions"][0]}
    if trained.get("class_prompt"):
        prompts["class"] = trained["class_prompt"]
    seeds = list(range(config.images))
    folder = Path(record["dir"]) / "eval"
    real = clip.embed_images(model, processor, [Image.open(p).convert("RGB") for p in list_images(trained["data"])])
    result: dict[str, Any] = {"run": record["id"], "clip": config.clip, "prompts": prompts, "seeds": seeds,
                              "size": side, "tuned": {}, "base": {}, "files": {}}
    embedded: dict[str, Any] = {}
    for which, weight in (("tuned", 1.0), ("base", 0.0)):
        pipe.set_adapters(["lora0"], adapter_weights=[weight])
        for kind, prompt in prompts.items():
            images = generate(pipe, prompt, negative_prompt=None, steps=config.steps, guidance=config.guidance,
                              resolution=side, seeds=seeds)
            result["files"][f"{which}_{kind}"] = clip.save_images(images, folder, f"{which}-{kind}")
            emb = embedded[f"{which}_{kind}"] = clip.embed_images(model, processor, images)
            text = clip.embed_texts(model, processor, [clip.without_token(prompt, token)])
            result[which][f"{kind}_clip_score"] = round(clip.clip_score(emb, text), 3)
            if kind == "subject":
                result[which]["subject_similarity"] = round(clip.mean_similarity(emb, real), 4)
    if "class" in prompts:
        result["class_drift_similarity"] = round(clip.paired_similarity(embedded["tuned_class"],
                                                                        embedded["base_class"]), 4)
    write_json_atomic(folder / "eval.json", result)
    return result


def caption(config: CaptionConfig) -> dict[str, Any]:
    """Write a caption for each image without one: the template with the trigger token, or a local VLM's
    description (through onecard.llm) with the token in front."""
    from onecard.diffuse.data import write_captions

    template = config.template.replace("{token}", config.token)
    if config.vlm is None:
        done = write_captions(config.data, lambda _: template, config.overwrite)
        return {"data": config.data, "source": "template", **done}
    from onecard.llm import LLMConfig, load
    from onecard.llm.images import user_message

    backend = load(LLMConfig(model=config.vlm, backend=config.backend,
                             mmproj=Path(config.mmproj) if config.mmproj else None))
    ask = ("Describe this image in one short sentence for an image-generation caption: the subject, its setting, "
           "the light and the style. No preamble.")

    def described(path: Path) -> str:
        return f"{config.token} {backend.chat([user_message(ask, [path])]).text.strip()}"

    try:
        done = write_captions(config.data, described, config.overwrite)
    finally:
        backend.close()
    return {"data": config.data, "source": f"vlm {config.vlm}", **done}
