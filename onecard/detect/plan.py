"""Turn the "auto" knobs of a detect job (batch, image size, AMP) into numbers with `onecard.fit`.

fit's YOLO estimator (`onecard.fit.yolo`) walks the model's graph at the image size; its solver gives the settings
whose upper bound fits the card, and the largest batch among the fastest (AutoBatch's goal, without its profile run:
ultralytics #1451, #4679 report batches that run out of memory after the first epoch). Without a card to plan for (a
CPU run, no --gpu/--vram), or for a model fit does not know, the knobs take ultralytics' defaults and the record says
so. On an out-of-memory error, the run steps down fit's ladder for YOLO: AMP on, then half the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from onecard.core.errors import OnecardError
from onecard.core.extras import release
from onecard.detect.config import DetectConfig
from onecard.fit.job import FitJob
from onecard.fit.ladder import describe_changes, oom_ladder
from onecard.fit.plan import plan
from onecard.fit.solve import solve
from onecard.fit.yolo import amp_trains_correctly, find

__all__ = ["Settings", "choose", "labels_of", "settings_of", "ladder", "amp_runs_correctly"]

DEFAULT_BATCH, DEFAULT_IMGSZ = 16, 640  # ultralytics' defaults (cfg/default.yaml)


@dataclass
class Settings:
    """The batch, image size and AMP a run trains with, where they came from, and the fit job they stand for."""

    batch: int
    imgsz: int
    amp: bool
    source: str
    card: str | None = None
    predicted_gib: float | None = None  # the planner's process peak (what nvidia-smi would show)
    upper_gib: float | None = None  # its safe bound, which decided the fit
    budget_gib: float | None = None
    fit_job: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"batch {self.batch}, imgsz {self.imgsz}, AMP {'on' if self.amp else 'off'}"


def amp_runs_correctly(device: str, gpu_name: str | None = None) -> bool:
    """Whether mixed precision trains correctly here: a CUDA card of compute capability 7.0+ not in ultralytics'
    list of cards that give NaN losses (fit.yolo.amp_trains_correctly)."""
    if not device.startswith("cuda"):
        return False  # ultralytics trains in fp32 on CPU and MPS
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    name = gpu_name or torch.cuda.get_device_name(index)
    return amp_trains_correctly(torch.cuda.get_device_capability(index), name)


def settings_of(job: FitJob, source: str, planned: Any = None) -> Settings:
    """The Settings a fit job stands for, with the plan's figures when it was planned for a card."""
    est = planned.estimate if planned is not None else None
    return Settings(
        batch=job.batch, imgsz=job.imgsz, amp=job.amp, source=source,
        card=planned.card.name if planned is not None and planned.card is not None else None,
        predicted_gib=round(est.process_gib, 3) if est is not None else None,
        upper_gib=round(planned.peak_upper_gib, 3) if planned is not None and planned.peak_upper_gib else None,
        budget_gib=round(planned.budget_gib, 3) if planned is not None and planned.budget_gib is not None else None,
        fit_job=job.model_dump(mode="json"),
    )


def labels_of(train: dict[str, int], mosaic: float) -> dict[str, Any]:
    """fit's label knobs from the data check's train split: labels per labelled image, and the most in one training
    image (a mosaic joins four: the four most-labelled images; without mosaic the most-labelled one)."""
    per_image = round(train["instances"] / train["labelled"], 2) if train.get("labelled") else 0.0
    most = train.get("max4_instances", 0) if mosaic > 0 else train.get("max_instances", 0)
    return {"labels_per_image": per_image, "max_labels": most}


def choose(config: DetectConfig, arch: str | None, device: str,
           labels: dict[str, Any] | None = None) -> tuple[Settings, FitJob | None]:
    """Resolve batch, image size and AMP; returns the settings and the fit job (None: fit does not know `arch`).
    `labels`: fit's label knobs from the data check (`labels_of`); unset, fit's defaults (COCO's)."""
    on_gpu = device.startswith("cuda")
    amp_ok = amp_runs_correctly(device)
    amp = amp_ok if config.amp == "auto" else config.amp
    batch = DEFAULT_BATCH if config.batch == "auto" else config.batch
    imgsz = DEFAULT_IMGSZ if config.imgsz == "auto" else config.imgsz
    known = arch is not None and find(arch) is not None
    if not known:
        return Settings(batch, imgsz, amp, f"defaults: fit has no memory estimator for {arch or 'this model'}"), None
    assert arch is not None
    # ultralytics' "auto" optimizer is AdamW for short runs, SGD for long ones: plan for AdamW's two states, the larger
    optimizer = "sgd" if config.optimizer == "SGD" else "adamw"
    job = FitJob.model_validate({"model": arch, "job": "train", "batch": batch, "imgsz": imgsz, "amp": amp,
                                 "optimizer": optimizer, "gpu": config.gpu, "vram": config.vram,
                                 "ultralytics_version": release("ultralytics"), **(labels or {})})
    if not on_gpu and config.gpu is None and config.vram is None:
        return settings_of(job, "defaults: no GPU to plan for (pass --gpu NAME to plan for a card)"), job
    base = plan(job)
    if base.card is None:
        return settings_of(job, "defaults: no card detected (pass --gpu NAME or --vram GIB)", base), job
    fixed = {k for k, v in (("batch", config.batch), ("imgsz", config.imgsz)) if v != "auto"}
    if config.amp != "auto" or not amp_ok:
        fixed.add("amp")
    found = solve(job, top=20, fixed=fixed, request_first=False)
    if not found:
        given = config.batch != "auto"
        card = f" --gpu {config.gpu}" if config.gpu else f" --vram {config.vram:g}" if config.vram else ""
        raise OnecardError(
            f"{f'batch {batch}' if given else 'no batch'} of {arch} at imgsz {imgsz} "
            f"{'does not fit' if given else 'fits'} {base.card.name} ({base.card.vram_gib} GiB) for training by fit's "
            f"bound ({base.peak_upper_gib:.1f} GiB at batch {batch})",
            f"see the budget with `onecard fit {arch} --job train --imgsz {imgsz}{card} --solve`, then "
            f"{'lower --batch (or leave it auto)' if given else 'lower --imgsz or use a smaller model'}")
    best = found[0]
    return settings_of(best.job, f"fit: the fastest plan that fits {base.card.name}", best), best.job


def ladder(job: FitJob, amp_ok: bool) -> Iterator[tuple[FitJob, str]]:
    """fit's out-of-memory ladder for YOLO (AMP on, then half the batch), less AMP where the card cannot run it."""
    previous = job
    for new, reason in oom_ladder(job):
        if new.amp and not amp_ok:
            new = new.model_copy(update={"amp": job.amp})
            if new == previous:
                continue
            reason = describe_changes(previous, new)
        yield new, reason
        previous = new
