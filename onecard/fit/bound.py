"""The safe bound beside the point estimate, and the corrections `onecard fit calibrate` fitted on this machine.

Bound: each job kind (`kind_of`: llm-infer, llm-train, tinylm, diffusion-infer, diffusion-train, yolo-infer,
yolo-train, whisper-infer, whisper-train) has a margin and a fixed part, fitted to cover 95% of its scored cases
(development and recorded held-out, each source weighing 1) while lowest at a 12 GB card's budget
(`benchmarks/fit_bounds.py` states the rule and writes bounds.json beside this module). Within a kind, a mechanism
group (`group_of`: the library an LLM training stack builds on, an LLM's runtime, the diffusion offload mode, the
YOLO task) with enough cases of its own has its own margin, since the planner's errors differ by what the job runs
on (torchtune's QLoRA is not TRL's). The first-sight bound (`first_sight`, `onecard fit --strict`) is fitted on how
far the planner missed the held-out splits' jobs when it first saw them, every kind pooled: for a harness unlike the
stacks it models. The upper bound is the process figure times (1 + margin) plus abs_gib (the part
that does not grow with the job: workspaces, buffers, allocator rounding, which dominate small jobs' errors); `fits`
is decided on it. Two runtimes size themselves to the card (`plan.judge`): vLLM's peak is the share it reserves
(`RESERVED`, margin 0), and llama.cpp's GPU layers, when the planner chooses them, are as many as fit on the bound.

Corrections: `onecard fit calibrate` fits a scale per (card, mechanism group: the stack or runtime, `group_of`) from
this machine's observations and saves it to
<ONECARD_HOME>/fit/calibration.json; the planner multiplies its estimate on that card by it (`apply`), unless the
job says `calibration: false` (`--no-calibration`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

from onecard.core.errors import DataError
from onecard.core.paths import data_dir
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob

__all__ = ["Margin", "Correction", "kind_of", "group_of", "margin", "first_sight", "strict", "bounds", "BOUNDS_FILE",
           "FIRST_SIGHT", "RESERVED", "SCALES", "plausible_scale", "calibration_file", "corrections", "correction",
           "apply"]

BOUNDS_FILE = Path(__file__).with_name("bounds.json")
FIRST_SIGHT = "first sight"  # the group a first-sight margin names (`first_sight`)


@dataclasses.dataclass(frozen=True)
class Margin:
    """How far above the point estimate the bound of a job kind sits, and what stands behind the figure."""

    kind: str
    margin: float  # upper = process * (1 + margin) + abs_gib
    cases: int  # scored cases behind it (0: the default for a kind without cases)
    rule: str  # what it covers (benchmarks/fit_bounds.py's rule)
    group: str = ""  # the mechanism group whose own cases set it ("": the kind's, over all its groups)
    abs_gib: float = 0.0  # the part of the bound that does not grow with the job (workspaces, buffers, rounding)

    def upper(self, figure_gib: float) -> float:
        """The bound on a predicted figure (the process figure, or an allocated / reserved one)."""
        return figure_gib * (1 + self.margin) + self.abs_gib


@dataclasses.dataclass(frozen=True)
class Correction:
    """A scale `onecard fit calibrate` fitted for one card and mechanism group (a job kind's stack or runtime:
    `group_of`) from this machine's observations."""

    card: str
    kind: str  # the mechanism group (`group_of`: llm-train/transformers, llm-infer/llama.cpp, whisper-infer...)
    scale: float  # measured / predicted, median over the observations
    observations: int


# vLLM reserves gpu_memory_utilization of the card when it starts and fills what its weights and profiling run leave
# with KV cache blocks: its peak is that reservation, whatever the model's error (which moves the KV pool instead).
RESERVED = Margin("llm-infer", 0.0, 0, "vLLM's peak is the share of the card it reserves (gpu_memory_utilization)")


def kind_of(family: str, arch: Any, job: FitJob) -> str:
    """The job kind a bound and a correction are kept for: family and infer/train; tinylm's training on its own."""
    if family == "llm" and job.job == "train" and getattr(arch, "family", None) == "tinylm":
        return "tinylm"
    return f"{family}-{job.job}"


# The library each LLM training stack builds on: trl, onecard (`tune`: TRL's SFTTrainer) and axolotl are transformers'
# Trainer with PEFT, with their own knobs modelled (onecard.fit.stacks); torchtune, unsloth and litgpt run their own.
_TRAIN_BASE = {"transformers": "transformers", "trl": "transformers", "onecard": "transformers",
               "axolotl": "transformers", "torchtune": "torchtune", "unsloth": "unsloth", "litgpt": "litgpt"}


def group_of(kind: str, arch: Any, job: FitJob, runtime: str | None = None) -> str:
    """The mechanism group within a kind whose errors a margin may be kept for: llm-train by the library the stack
    builds on, llm-infer by runtime (`runtime`: llm_infer.runtime_of), diffusion by offload mode, YOLO by task; other
    kinds are one group."""
    if kind == "llm-train":
        return f"{kind}/{_TRAIN_BASE[job.stack]}"
    if kind == "llm-infer" and runtime is not None:
        return f"{kind}/{runtime}"
    if kind.startswith("diffusion-"):
        return f"{kind}/offload-{job.offload}"
    task = getattr(arch, "task", None)
    if kind.startswith("yolo-") and isinstance(task, str):
        return f"{kind}/{task}"
    return kind


@functools.cache
def bounds() -> dict[str, Any]:
    """bounds.json as written by `python benchmarks/fit_bounds.py`."""
    return dict(json.loads(BOUNDS_FILE.read_text(encoding="utf-8")))


def margin(kind: str, group: str = "") -> Margin:
    """The bound's margin for a job kind, or for its mechanism group when bounds.json keeps one (a group with enough
    cases of its own); a kind without scored cases gets its family's (see bounds.json's rule); a kind the file does
    not list gets its default."""
    data = bounds()
    entry = data.get("groups", {}).get(group)
    if entry is not None:
        return Margin(kind, entry["margin"], entry["cases"], entry["rule"], group, entry.get("abs_gib", 0.0))
    entry = data["kinds"].get(kind)
    if entry is None:
        entry = data["default"] | {"cases": 0}
    return Margin(kind, entry["margin"], entry["cases"], entry["rule"], "", entry.get("abs_gib", 0.0))


def first_sight(kind: str) -> Margin:
    """The first-sight bound (`--strict`): how far the planner missed jobs from sources it had never seen, fitted on
    every held-out split's one scoring with every job kind pooled (bounds.json's `first_sight`); for a harness unlike
    the stacks the planner models. `kind` names the job's kind in the answer; the margin is the same for all."""
    entry = bounds().get("first_sight")
    if entry is None:  # a bounds.json written before any held-out split was scored: the widest of any kind
        entry = bounds()["default"] | {"cases": 0}
    return Margin(kind, entry["margin"], entry["cases"], entry["rule"], FIRST_SIGHT, entry.get("abs_gib", 0.0))


def strict(margin: Margin) -> Margin:
    """What `--strict` puts in place of a job's margin: the first-sight bound of its kind; vLLM's reservation
    (`RESERVED`) stays, since its peak is the share it reserves whatever the estimate."""
    return margin if margin is RESERVED else first_sight(margin.kind)


# The corrections a calibration may hold. Measured / planned runs from x0.15 to x16 over every public case
# (benchmarks/fit_accuracy.py); far beyond that a figure is in another unit (MB read as GiB is x1000) or of another
# job, not the planner's error.
SCALES = (0.05, 20.0)


def plausible_scale(scale: float) -> bool:
    """Whether a measured / predicted ratio can be a correction (finite, within `SCALES`)."""
    return math.isfinite(scale) and SCALES[0] <= scale <= SCALES[1]


def calibration_file() -> Path:
    """Where `onecard fit calibrate` saves the corrections: <ONECARD_HOME>/fit/calibration.json."""
    return _calibration_file(data_dir())


@functools.lru_cache(maxsize=8)
def _calibration_file(home: Path) -> Path:  # every plan looks it up: pathlib's joins cached per data folder
    return home / "fit" / "calibration.json"


def corrections() -> dict[tuple[str, str], Correction]:
    """The saved corrections by (card key, mechanism group); none when `onecard fit calibrate` was never run."""
    path = calibration_file()
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    return _read(path, stamp)


@functools.lru_cache(maxsize=4)
def _read(path: Path, stamp: int) -> dict[tuple[str, str], Correction]:
    # cached by modification time: --solve asks for every candidate, and a new calibration is read at once
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = {(c["card"], c["kind"]): Correction(c["card"], c["kind"], float(c["scale"]), int(c["observations"]))
                 for c in data["corrections"]}
        for fix in found.values():
            if not plausible_scale(fix.scale):
                raise ValueError(f"scale {fix.scale} for {fix.kind} on {fix.card} is outside {SCALES[0]}-{SCALES[1]}")
        return found
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a calibration file written by `onecard fit calibrate` ({e})",
                          f"run `onecard fit calibrate` again to rewrite it, or delete {path}") from e


def correction(card_key: str, group: str, kind: str | None = None) -> Correction | None:
    """The saved correction for a card and a job's mechanism group (`group_of`: its stack or runtime), if any; else,
    with `kind`, one a calibration written before corrections were kept per group saved for the whole kind."""
    found = corrections()
    return found.get((card_key, group)) or (found.get((card_key, kind)) if kind is not None else None)


def apply(est: Estimate, fix: Correction) -> Estimate:
    """The estimate scaled by a correction: every part, the slack and the context alike (a scale on the whole
    figure, as it was fitted on whole measured figures), with an assumption line that says so."""
    s = fix.scale
    return dataclasses.replace(
        est, parts={k: v * s for k, v in est.parts.items()}, slack_gib=est.slack_gib * s,
        context_gib=est.context_gib * s, cache_gib=est.cache_gib * s,
        assumptions=[*est.assumptions, f"calibrated on this machine: x{s:.3f} for {fix.kind} on {fix.card}, the median "
                     f"measured/predicted of {fix.observations} observations (`onecard fit calibrate`; "
                     "--no-calibration plans without it)"])
