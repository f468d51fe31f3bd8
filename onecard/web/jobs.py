"""The job queue behind the Jobs page: each job is the CLI's own command in a subprocess, one at a time.

A job is `python -m onecard.cli CAPABILITY ACTION --config FILE --json` (an argv list, never a shell), with its config
validated by the same pydantic model the CLI uses and written as YAML into the job's folder (its working directory, so
relative outputs land there). Jobs run one after another, so a second GPU job never competes with the first for the
card's memory. The command opens its own run record, as from a terminal: jobs are in the same run records as CLI runs.

Progress: the child's stderr is read as it comes. Rich's progress bar (and tqdm's) redraws its line with a carriage
return; the child is told its stderr is a terminal (`TTY_COMPATIBLE=1`, rich's switch) so that it draws the bar at all,
and each redraw becomes the job's `progress`, every other line a log line. Cancel sends SIGINT, Ctrl-C's equivalent:
the run ends marked interrupted (`onecard.core.records`).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from onecard.core.config import dump_config
from onecard.core.errors import MissingExtraError
from onecard.core.extras import available

__all__ = ["JobKind", "Job", "JobQueue", "KINDS", "find_kind", "FINISHED", "shutdown_all"]

FINISHED = ("succeeded", "failed", "interrupted", "cancelled")
MAX_LINES = 5000  # log lines kept per job (the run's own log.txt keeps everything the run logs)


@dataclass(frozen=True)
class JobKind:
    """A command the Jobs page can start.

    Attributes:
        capability, action: the CLI command (`onecard tinylm train`).
        config: "module:Class" of the pydantic config the CLI resolves for it.
        extra: the onecard extra that installs what it needs.
        needs: import names that must be present for the extra to count as installed.
        paths: config fields naming input files or folders: kept inside the registered folders (or the uploads).
        refs: fields that name a model, a run or a file: a path among them (absolute, or with `.`/`..`) is kept inside
            the registered folders too; a plain name (a run id, a hub id, 'last') is left to the library.
        outputs: fields naming where to write: checked like paths when given; by default outputs go to the job folder.
        globs: file patterns applied inside a path field: no `..` and not absolute, so they stay inside it.
    """

    capability: str
    action: str
    config: str
    extra: str
    needs: tuple[str, ...]
    paths: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.capability} {self.action}"

    @property
    def install(self) -> str:
        return f"pip install 'onecard[{self.extra}]'"

    def installed(self) -> bool:
        return all(available(module) for module in self.needs)

    def model(self) -> type[BaseModel]:
        import importlib

        module, cls = self.config.split(":")
        model: type[BaseModel] = getattr(importlib.import_module(module), cls)
        return model

    def argv(self, config_file: Path, report_to: Sequence[str]) -> list[str]:
        argv = [sys.executable, "-m", "onecard.cli", self.capability, self.action, "--config", str(config_file),
                "--json"]
        if self.action in TRAINING_ACTIONS:
            argv += ["--report-to", *(report_to or ["none"])]
        return argv


# Actions whose command takes --report-to (the recorded jobs of `job_flags`).
TRAINING_ACTIONS = ("train", "transcribe", "finetune", "tune")

KINDS: tuple[JobKind, ...] = (
    JobKind("tinylm", "train", "onecard.tinylm.config:TinyLMConfig", "tinylm", ("torch",), paths=("data",),
            globs=("glob",)),
    JobKind("tune", "train", "onecard.tune.config:TuneConfig", "tune",
            ("torch", "transformers", "peft", "trl", "datasets"), paths=("data", "dev_data"), refs=("model",),
            outputs=("accelerate_config", "deepspeed")),
    JobKind("detect", "train", "onecard.detect.config:DetectConfig", "detect", ("ultralytics",), paths=("data",),
            refs=("model",)),
    JobKind("detect", "predict", "onecard.detect.config:PredictConfig", "detect", ("ultralytics",),
            paths=("source",), refs=("run",), outputs=("out",)),
    JobKind("asr", "transcribe", "onecard.asr.config:TranscribeConfig", "asr", ("faster_whisper", "jiwer"),
            paths=("audio", "glossary"), refs=("model", "diarizer"), outputs=("out",)),
    JobKind("asr", "finetune", "onecard.asr.config:FinetuneConfig", "asr",
            ("faster_whisper", "jiwer", "torch", "peft", "ctranslate2"), paths=("data", "dev_data"), refs=("model",)),
    JobKind("diffuse", "train", "onecard.diffuse.config:DiffuseConfig", "diffuse", ("diffusers", "torch"),
            paths=("data",), refs=("base",)),
    JobKind("diffuse", "sample", "onecard.diffuse.config:SampleConfig", "diffuse", ("diffusers", "torch"),
            refs=("source", "lora"), outputs=("out",)),
    JobKind("vlm", "tune", "onecard.vlm.config:TuneConfig", "vlm",
            ("onecard.vlm", "torch", "transformers", "peft", "trl", "datasets", "PIL"), paths=("data", "dev_data"),
            refs=("model",)),
)


_QUEUES: weakref.WeakSet[JobQueue] = weakref.WeakSet()


def shutdown_all() -> None:
    """The server is stopping: interrupt every running job (its run ends interrupted) and empty the queues, so no
    job goes on holding the card after the server is gone."""
    for queue in list(_QUEUES):
        queue.shutdown()


def find_kind(name: str) -> JobKind | None:
    """The kind named "capability action", or None."""
    return next((k for k in KINDS if k.name == name), None)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    """One job: what it runs, where it stands, what it printed."""

    id: str
    kind: JobKind
    config: dict[str, Any]
    argv: list[str]
    dir: Path
    status: str = "queued"  # queued, running, succeeded, failed, interrupted, cancelled
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    ended_at: str | None = None
    run_id: str | None = None
    returncode: int | None = None
    error: str | None = None
    result: Any = None
    progress: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)
    dropped: int = 0  # log lines let go from the front of `lines` (past MAX_LINES): line n is lines[n - dropped]
    cancel_requested: bool = False
    proc: subprocess.Popen[bytes] | None = None
    # A recipe's step (the Start page): it starts only once `after` succeeded (else it is cancelled, saying why), and
    # each config field of `run_refs` gets the id of the run that job opened (the recipe's `last`) as it starts.
    after: Job | None = None
    run_refs: dict[str, Job] = field(default_factory=dict)

    def summary(self, position: int | None = None) -> dict[str, Any]:
        """The job as the API shows it (without its log lines)."""
        return {
            "id": self.id, "kind": self.kind.name, "status": self.status, "position": position,
            "config": self.config, "argv": self.argv, "created_at": self.created_at, "started_at": self.started_at,
            "ended_at": self.ended_at, "run_id": self.run_id, "run_url": f"/runs?id={self.run_id}" if self.run_id
            else None, "returncode": self.returncode, "error": self.error, "result": self.result,
            "progress": self.progress, "lines": self.dropped + len(self.lines),
        }


class JobQueue:
    """Jobs run one at a time, in the order they came, each as a subprocess; the others wait in the queue.

    Args:
        data_dir: onecard's data directory: the child's ONECARD_HOME (its run records go to `data_dir/runs`), and
            `data_dir/jobs/<id>/` holds each job's config, stdout and working files.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._lock = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="onecard-jobs", daemon=True)
        self._worker.start()
        _QUEUES.add(self)

    # -- the API's actions ---------------------------------------------------------------------------------------

    def submit(self, kind: JobKind, config: BaseModel, report_to: Sequence[str] = ("trackio",),
               after: Job | None = None, run_refs: dict[str, Job] | None = None) -> Job:
        """Queue `kind` with its validated config; returns the queued job.

        `after` and `run_refs` chain a recipe's steps: see `Job`.
        """
        if not kind.installed():
            raise MissingExtraError(f"{kind.name} needs the '{kind.extra}' extra, which is not installed",
                                    f"install it with `{kind.install}`")
        job_id = f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        job_dir = self.data_dir / "jobs" / job_id
        job_dir.mkdir(parents=True)
        job = Job(job_id, kind, dump_config(config), kind.argv(job_dir / "config.yaml", report_to), job_dir,
                  after=after, run_refs=dict(run_refs or {}))
        _write_config(job)
        with self._lock:
            self.jobs[job_id] = job
            self._waiting.append(job)
            self._lock.notify_all()
        return job

    def position(self, job: Job) -> int | None:
        """1 for the next job to start, 2 after it...; None once it has started."""
        with self._lock:
            return next((i + 1 for i, j in enumerate(self._waiting) if j is job), None)

    def summaries(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        return [j.summary(self.position(j)) for j in reversed(list(self.jobs.values()))]

    def cancel(self, job: Job) -> None:
        """A queued job leaves the queue; a running one gets SIGINT (Ctrl-C): its run ends marked interrupted."""
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                job.status, job.ended_at = "cancelled", _now()
                return
            job.cancel_requested = True
            proc = job.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)

    def shutdown(self, wait_s: float = 60) -> None:
        """Cancel everything: queued jobs leave, the running one is interrupted and given `wait_s` to save and close
        its record while its output is still read (a child writing to a closed pipe would fail instead)."""
        for job in list(self.jobs.values()):
            if job.status in ("queued", "running"):
                self.cancel(job)
                if job.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        job.proc.wait(timeout=wait_s)

    # -- the worker ------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._lock.wait()
                job = self._waiting.popleft()
                blocked = _blocked(job)
                if blocked is None:
                    job.status, job.started_at = "running", _now()
                else:
                    job.status, job.error, job.ended_at = "cancelled", blocked, _now()
                    continue
            try:
                self._run(job)
            except Exception as e:  # a job that cannot even start fails alone: the queue and the server go on
                job.status, job.error = "failed", f"could not run {job.argv[:6]}: {type(e).__name__}: {e}"
            job.ended_at = _now()

    def _run(self, job: Job) -> None:
        env = {**os.environ, "ONECARD_HOME": str(self.data_dir), "TTY_COMPATIBLE": "1", "NO_COLOR": "1",
               "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
        with open(job.dir / "stdout.txt", "wb") as stdout:
            proc = subprocess.Popen(job.argv, cwd=job.dir, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                    stderr=subprocess.PIPE)
            with self._lock:
                job.proc = proc
                cancelled_early = job.cancel_requested
            if cancelled_early:
                proc.send_signal(signal.SIGINT)
            assert proc.stderr is not None
            self._read(job, proc.stderr.fileno())
            job.returncode = proc.wait()
        job.result = _last_json((job.dir / "stdout.txt").read_text(encoding="utf-8", errors="replace"))
        if isinstance(job.result, dict) and isinstance(job.result.get("run_id"), str):
            job.run_id = job.result["run_id"]
        record = self._record(job)
        if record is not None and record.get("status") in FINISHED:
            job.status = record["status"]
            error = record.get("error") or {}
            job.error = error.get("message") if job.status != "succeeded" else None
        elif job.returncode == 0:
            job.status = "succeeded"
        else:
            job.status = "interrupted" if job.cancel_requested or job.returncode in (130, -signal.SIGINT) else "failed"
        if job.status != "succeeded" and not job.error:
            job.error = _error_lines(job.lines) or f"the command ended with exit status {job.returncode}"

    def _read(self, job: Job, fd: int) -> None:
        """Read the child's stderr to its end: carriage-return redraws are progress, other lines log lines."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, last_look = "", 0.0
        with open(job.dir / "stderr.txt", "w", encoding="utf-8") as log:
            while chunk := os.read(fd, 65536):
                pending += decoder.decode(chunk)
                *pieces, pending = re.split(r"(\r\n|\r|\n)", pending)
                for text, end in zip(pieces[0::2], pieces[1::2], strict=True):
                    self._piece(job, _ANSI.sub("", text).rstrip(), end == "\r", log)
                if job.run_id is None and time.monotonic() - last_look > 0.5:
                    job.run_id, last_look = self._find_run_id(job), time.monotonic()
            if pending:
                self._piece(job, _ANSI.sub("", pending).rstrip(), False, log)

    def _piece(self, job: Job, text: str, redraw: bool, log: Any) -> None:
        frame = _FRAME.match(text)
        if frame or redraw:
            shown = " ".join((frame[1] if frame else text).translate(_BAR).split())
            count = _COUNT.search(shown)
            job.progress = {"text": shown, "done": int(count[1]) if count else None,
                            "total": int(count[2]) if count else None}
            text = frame[2] if frame else ""  # what another console printed while the bar was drawn
        if not text.strip():
            return
        log.write(text + "\n")
        log.flush()
        job.lines.append(text)
        if len(job.lines) > MAX_LINES:
            del job.lines[0]
            job.dropped += 1

    def _find_run_id(self, job: Job) -> str | None:
        """The run the job's process opened: the run record with its pid, started since the job started."""
        if job.proc is None:
            return None
        for path in (self.data_dir / "runs").glob("*/run.json"):
            try:
                if path.stat().st_mtime < time.time() - 3600:
                    continue
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if record.get("pid") == job.proc.pid and str(record.get("started_at", "")) >= (job.started_at or ""):
                return str(record["id"])
        return None

    def _record(self, job: Job) -> dict[str, Any] | None:
        job.run_id = job.run_id or self._find_run_id(job)
        if job.run_id is None:
            return None
        try:
            record: dict[str, Any] = json.loads((self.data_dir / "runs" / job.run_id / "run.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return record


def _write_config(job: Job) -> None:
    import yaml

    config_file = job.dir / "config.yaml"
    header = f"# onecard {job.kind.name} --config {config_file}  (written by the web app's Jobs queue)\n"
    config_file.write_text(header + yaml.safe_dump(job.config, sort_keys=False), encoding="utf-8")


def _blocked(job: Job) -> str | None:
    """Why a recipe's step cannot start (an earlier step did not succeed), else None, with its run refs filled in."""
    for earlier in (job.after, *job.run_refs.values()):
        if earlier is not None and earlier.status != "succeeded":
            if earlier.started_at is None and earlier.error:  # itself held back: the same cause
                return earlier.error
            return f"not run: an earlier step, {earlier.kind.name} (job {earlier.id}), {earlier.status}"
    for name, earlier in job.run_refs.items():
        if earlier.run_id is None:
            return f"not run: {earlier.kind.name} (job {earlier.id}) opened no run to give as {name}"
        job.config[name] = earlier.run_id
    if job.run_refs:
        _write_config(job)
    return None


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_COUNT = re.compile(r"\b(\d+)\s*/\s*(\d+)\b")
# A frame of `onecard.core.progress.track`'s bar: description, bar, done/total, elapsed, remaining; a line printed by
# another console while the bar is up follows it on the same line.
_FRAME = re.compile(r"^(.*?\b\d+/\d+\s+\d+:\d\d:\d\d\s+(?:\d+:\d\d:\d\d|-:--:--))(.*)$")
_BAR = str.maketrans("━╸╺", "   ")


def _last_json(stdout: str) -> Any:
    """The JSON object `--json` printed (its last one: libraries may have printed lines before it)."""
    starts = [m.start() for m in re.finditer(r"^\{", stdout, flags=re.M)]
    for start in reversed(starts):
        try:
            return json.loads(stdout[start:])
        except ValueError:
            continue
    return None


def _error_lines(lines: list[str]) -> str | None:
    """What the CLI printed as the error (`error: ...` and its fix), else the end of a traceback."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error: "):
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")), len(lines))
            return "\n".join(lines[i:end]).removeprefix("error: ")  # the error and its indented fix
    tail = [line for line in lines[-5:] if line.strip()]
    return tail[-1] if tail else None
