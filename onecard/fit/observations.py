"""Measured peaks of real jobs on this machine's card, kept for `onecard fit calibrate`.

One JSON object per line in <ONECARD_HOME>/fit/observations.jsonl, appended by `onecard fit --measure` (`observe`),
by the capabilities' recorded runs on a GPU (`observe_run`), and by `onecard fit MODEL ... --observed GIB` (`report`):
a peak the user read for a job run with other tools, on this machine's card or one named with --gpu / --vram. Each
line holds the card, the job kind, the job (FitJob fields: calibrate plans it again with the planner of the day), the
planner's parts when it was observed (uncalibrated), the measured figure and its kind (allocated:
torch.cuda.max_memory_allocated, reserved: max_memory_reserved, process: nvidia-smi), and where it came from.

Lines are appended with one `write` on a file opened for appending (O_APPEND): each lands whole at the end of the
file, so two runs that finish at once do not cut into each other's lines (local filesystems; not NFS).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from onecard.core.errors import ConfigError, DataError
from onecard.core.gpus import GpuSpec
from onecard.core.paths import data_dir
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob
from onecard.fit.plan import resolve_arch, resolve_card

__all__ = ["Observation", "Figure", "observations_file", "append", "load", "of_estimate", "predicted_figure",
           "observe", "observe_run", "report", "Reported"]

Figure = Literal["allocated", "reserved", "process"]
FIGURES: tuple[Figure, ...] = ("allocated", "reserved", "process")


@dataclass(frozen=True)
class Observation:
    """One measured peak of a job on a card.

    Attributes:
        card: the catalog key of the card it ran on (`GpuSpec.key`; custom-<n>gib for an unlisted card).
        kind: the job kind (`bound.kind_of`): llm-train, diffusion-infer...
        job: the FitJob fields of the job that ran.
        figure: what was measured: allocated, reserved or process.
        measured_gib: the measured peak (GiB).
        predicted_gib: the planner's figure of the same kind when it was observed, uncalibrated.
        parts: the planner's parts then (GiB), with allocator slack and CUDA context.
        source: what measured it: "fit --measure", "tune run <id>"...
        at: when (UTC, ISO 8601).
        group: the job's mechanism group within its kind (`bound.group_of`), which calibrate fits a correction for.
    """

    card: str
    kind: str
    job: dict[str, Any]
    figure: Figure
    measured_gib: float
    predicted_gib: float
    parts: dict[str, float] = field(default_factory=dict)
    source: str = ""
    at: str = ""
    group: str = ""  # the mechanism group (`bound.group_of`: its stack or runtime); "" in lines written before

    def fit_job(self) -> FitJob:
        """The job, planned for the card it ran on, without calibration."""
        fields = {k: v for k, v in self.job.items() if k not in ("gpu", "vram", "calibration")}
        return FitJob(**fields, gpu=None if self.card.startswith("custom-") else self.card,
                      vram=float(self.card.removeprefix("custom-").removesuffix("gib"))
                      if self.card.startswith("custom-") else None, calibration=False)


def observations_file() -> Path:
    """<ONECARD_HOME>/fit/observations.jsonl."""
    return data_dir() / "fit" / "observations.jsonl"


def predicted_figure(est: Estimate, figure: Figure, usable_gib: float | None = None) -> float:
    """The estimate's figure that matches one measured on a card that lets a process have `usable_gib` (None: a
    card with room): a reserved or nvidia-smi reading also holds the cache the card keeps (`Estimate.held_gib`)."""
    if figure == "allocated":
        return est.peak_allocated_gib
    held = est.held_gib(usable_gib)
    return {"reserved": est.peak_reserved_gib + held, "process": est.process_gib + held}[figure]


def of_estimate(card: str, kind: str, job: FitJob, est: Estimate, figure: Figure, measured_gib: float,
                source: str, usable_gib: float | None = None, group: str = "") -> Observation:
    """An observation of `job` (of mechanism group `group`) measured at `measured_gib` on a card with `usable_gib`,
    beside the planner's uncalibrated estimate `est`."""
    parts = {k: round(v, 4) for k, v in est.parts.items()} | {
        "allocator_slack": round(est.slack_gib, 4), "cuda_context": round(est.context_gib, 4),
        "cache": round(est.held_gib(usable_gib), 4)}
    predicted = predicted_figure(est, figure, usable_gib)
    return Observation(card=card, kind=kind, job=job.model_dump(mode="json", exclude={"calibration"}), figure=figure,
                       measured_gib=round(measured_gib, 4), predicted_gib=round(predicted, 4),
                       parts=parts, source=source, at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       group=group or kind)


def append(observations: list[Observation], path: Path | None = None) -> Path:
    """Append observations to the file, each line whole (one O_APPEND write); returns the file."""
    path = observations_file() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(asdict(o), sort_keys=True) + "\n" for o in observations).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load(path: Path | None = None) -> list[Observation]:
    """Every observation in the file (none when it does not exist).

    Raises:
        DataError: a line is not an observation; the error names the file and the line.
    """
    path = observations_file() if path is None else path
    if not path.exists():
        return []
    out = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                obs = Observation(**data)
                if not (isinstance(obs.card, str) and isinstance(obs.kind, str) and isinstance(obs.job, dict)):
                    raise ValueError("card and kind must be strings and job an object")
                if obs.figure not in FIGURES or not (math.isfinite(obs.measured_gib) and obs.measured_gib > 0) \
                        or not (math.isfinite(obs.predicted_gib) and obs.predicted_gib >= 0):
                    raise ValueError(f"figure {obs.figure!r}, measured_gib {obs.measured_gib!r}, "
                                     f"predicted_gib {obs.predicted_gib!r}: a figure and finite GiB")
                obs.fit_job()
            except (ValueError, TypeError, ValidationError) as e:
                reason = str(e).splitlines()[0]
                raise DataError(f"{path}, line {number}: not an observation ({reason})",
                                  f"fix or delete line {number} of {path}") from e
            out.append(obs)
    return out


def observe(job: FitJob, figure: Figure, measured_gib: float, source: str,
            card: GpuSpec | None = None) -> Observation | None:
    """Append an observation of `job` measured on `card` (None: this machine's GPU); None where there is no GPU.

    The planner's uncalibrated estimate of the job on that card is stored beside the measured figure.
    """
    from onecard.core.device import local_gpu

    card = local_gpu() if card is None else card
    return None if card is None else _append_on(card, job, figure, measured_gib, source)


def _append_on(card: GpuSpec, job: FitJob, figure: Figure, measured_gib: float, source: str) -> Observation:
    """Append an observation of `job` on `card`, beside the planner's uncalibrated estimate of it there."""
    resolved = resolve_arch(job.model)
    obs = of_estimate(card.key, resolved.kind(job), job, resolved.estimate(job, card), figure, measured_gib, source,
                      card.usable_gib, resolved.group(job))
    append([obs])
    return obs


def observe_run(record: dict[str, Any], ran: dict[str, Any] | None = None) -> Observation | None:
    """Append the observation a capability's run record holds, if it holds one: the GPU peak of a succeeded run's
    training steps (`phase_peaks.train`, `Run.gpu_phase`; else the whole run's `peak_memory`, class images and
    validation grids aside) beside the fit job it ran (`plan.fit_job`, with `ran`'s fields where the run differs
    from the plan: `tune` trains rows no longer than its longest one, whatever max_seq_length allows).

    The figure is the allocated peak (`torch.cuda.max_memory_allocated`), the reserved one only where a record has
    no other: a run's reserved peak also holds what the caching allocator keeps on a card with room, which the
    planner does not predict for a training run (a sample longer than every one before it leaves the segments of
    the shorter ones cached: reserved memory climbs 0.7-27 GiB above allocated over a run whose lengths vary,
    `benchmarks/fit_variable_length_replay.py`); a correction fitted on it would scale every later plan on the card
    by cache the card gives back when memory runs short. A run that stepped down the out-of-memory ladder is left
    out: its peak may be the failed attempt's.
    """
    peak = record.get("phase_peaks", {}).get("train") or record.get("peak_memory", {})
    figure: Figure = "allocated" if peak.get("gpu_allocated_gib") else "reserved"
    measured = peak.get(f"gpu_{figure}_gib")
    fit_job = (record.get("plan") or {}).get("fit_job")
    if record.get("status") != "succeeded" or not measured or fit_job is None or record.get("oom_steps"):
        return None
    job = FitJob(**fit_job | (ran or {}))
    return observe(job, figure, measured, f"{record['capability']} run {record['id']}")


@dataclass(frozen=True)
class Reported:
    """A peak the user reported (`onecard fit ... --observed`), as stored, and where its correction stands.

    Attributes:
        observation: the line appended to the observations file.
        card_name: the card's name, for the answer.
        in_group: observations of the same card and mechanism group in the file now, this one included.
        path: the observations file.
    """

    observation: Observation
    card_name: str
    in_group: int
    path: str

    @property
    def error(self) -> float:
        """predicted / observed - 1 (negative: the planner under-predicted), uncalibrated."""
        return self.observation.predicted_gib / self.observation.measured_gib - 1


def report(job: FitJob, figure: Figure, measured_gib: float) -> Reported:
    """Store a peak the user measured for `job` with their own tools (`onecard fit ... --observed`): on the card the
    job names, else this machine's GPU.

    Raises:
        ConfigError: no card is named or found, or the figure is not a peak that card could hold (a reading in MiB
            or in another card's memory).
    """
    card = resolve_card(job)
    if card is None:
        raise ConfigError("--observed records a peak measured on a card, and none is named nor found on this machine",
                          "name the card the job ran on: --gpu 4070ti (a catalog card) or --vram 12 (any card, GiB)")
    total = max(card.usable_gib, card.nvml_gib or 0.0, card.vram_gib)
    if not (math.isfinite(measured_gib) and 0 < measured_gib <= total):
        raise ConfigError(f"--observed {measured_gib:g} GiB is not a peak the {card.name} can hold "
                          f"({total:.1f} GiB in all)",
                          "give the peak in GiB: nvidia-smi prints MiB (divide by 1024), torch prints bytes (divide "
                          "by 2**30); name the card it ran on with --gpu or --vram")
    obs = _append_on(card, job, figure, measured_gib, "onecard fit --observed")
    path = observations_file()
    in_group = sum(1 for o in load(path) if o.card == obs.card and (o.group or o.kind) == obs.group)
    return Reported(obs, card.name, in_group, str(path))
