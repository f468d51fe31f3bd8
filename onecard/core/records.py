"""Writing run records: every job opens a run directory whose `run.json` is written atomically and kept current.

`onecard.core.runs` reads them back (list, show, compare).

A run is `running` while it works, then `succeeded`, `failed` (with the error) or `interrupted` (Ctrl-C, SIGTERM).
A run killed outright (SIGKILL, power loss) cannot write its end; readers see its process is gone and mark it
interrupted (see `onecard.core.runs`).
"""

from __future__ import annotations

import _thread
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import resource
import secrets
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import BaseModel

from onecard.core import environment
from onecard.core.errors import ConfigError
from onecard.core.fingerprint import fingerprint, sha256_file
from onecard.core.paths import data_dir, runs_dir

__all__ = ["Run", "start_run", "uninterrupted", "write_json_atomic", "RUN_FILE", "HISTORY_FILE"]

RUN_FILE = "run.json"
LOG_FILE = "log.txt"
HISTORY_FILE = "metrics.jsonl"  # one JSON line per `Run.log` call: {"step": n, metric: value...} (loss curves)
log = logging.getLogger("onecard")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text (UTF-8) so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class Run:
    """An open run: its directory, its record, and where its metrics go."""

    def __init__(self, dir: Path, record: dict[str, Any]) -> None:
        self.dir = dir
        self.record = record
        self._trackers: list[Any] = []
        self._step = 0
        self._phases: list[str] = []  # the open `gpu_phase`s, innermost last
        self._gpu_peak: dict[str, float] = {}  # the run's GPU peaks so far, folded in at each phase change

    @property
    def id(self) -> str:
        return str(self.record["id"])

    def save(self) -> None:
        """Write the record to `run.json` (atomically)."""
        write_json_atomic(self.dir / RUN_FILE, self.record)

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log a point of the metric history (loss per step...) to the trackers and the run's metrics.jsonl."""
        self._step = self._step + 1 if step is None else step
        with (self.dir / HISTORY_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": self._step, **metrics}, default=float) + "\n")
        for tracker in self._trackers:
            with _quiet_stdout():
                tracker.log(dict(metrics), step=self._step)

    def set_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Record final metrics in `run.json` (shown by `runs list/show/compare`); only `log` reaches the trackers."""
        self.record["metrics"].update(metrics)
        self.save()

    def set(self, key: str, value: Any) -> None:
        """Record a run-specific fact (the plan `fit` chose, the OOM steps taken...) under `key`."""
        self.record[key] = value
        self.save()

    @contextlib.contextmanager
    def gpu_phase(self, name: str) -> Iterator[None]:
        """Keep the GPU peak of one phase of the run apart: `record["phase_peaks"][name]` (allocated and reserved
        GiB, torch's counters), its own tensors only, not a phase opened inside it (a validation grid drawn between
        training steps); the run's `peak_memory` is still the peak of the whole run. Nothing on a run without CUDA.
        """
        self._fold()
        self._phases.append(name)
        try:
            yield
        finally:
            self._fold()
            self._phases.pop()

    def _fold(self) -> None:
        """Credit the GPU peak since the last phase change to the open phase, then start the counters afresh."""
        now = _gpu_peak()
        if not now:
            return
        _raise_to(self._gpu_peak, now)
        if self._phases:
            _raise_to(self.record.setdefault("phase_peaks", {}).setdefault(self._phases[-1], {}), now)
        sys.modules["torch"].cuda.reset_peak_memory_stats()

    def add_artifact(self, path: str | Path, kind: str | None = None) -> None:
        """Record an output file with its sha256 (folders: content fingerprint)."""
        p = Path(path).resolve()
        entry: dict[str, Any]
        if p.is_dir():
            fp = fingerprint(p)
            entry = {"path": str(p), "sha256": fp["sha256"], "bytes": fp["bytes"], "files": fp["files"]}
        else:
            entry = {"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
        if kind:
            entry["kind"] = kind
        self.record["artifacts"] = [a for a in self.record["artifacts"] if a["path"] != entry["path"]] + [entry]
        self.save()


@contextlib.contextmanager
def start_run(
    capability: str,
    config: BaseModel,
    *,
    inputs: Mapping[str, str | Path] | None = None,
    seed: int | None = None,
    argv: list[str] | None = None,
    runs_root: str | Path | None = None,
    report_to: tuple[str, ...] | list[str] = ("trackio",),
) -> Iterator[Run]:
    """Open a run record around a job; close it as succeeded, failed or interrupted.

    Args:
        capability: the project ("tune", "rag", "doctor"...): names the run and its tracker project.
        config: the resolved job config, saved as is.
        inputs: named input files or folders, fingerprinted by content.
        seed: the random seed the job uses.
        argv: the command line (default: sys.argv).
        runs_root: where run directories go (default: the data directory's runs/).
        report_to: metric trackers: "trackio" (local, default), "wandb", or both; empty for none.
    """
    started = time.time()
    run_id = f"{capability}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    root = Path(runs_root).expanduser() if runs_root else runs_dir()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"runs folder {root} is a file", "pass a folder to --runs-dir (it is made if missing)")
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    record: dict[str, Any] = {
        "id": run_id,
        "capability": capability,
        "status": "running",
        "command": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "config": config.model_dump(mode="json"),
        "seed": seed,
        "git": environment.git_state(),
        "versions": environment.versions(),
        "hardware": environment.hardware(),
        "inputs": {name: fingerprint(p) for name, p in (inputs or {}).items()},
        "started_at": _now(),
        "ended_at": None,
        "duration_s": None,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "metrics": {},
        "artifacts": [],
        "peak_memory": {},
        "trackers": list(report_to),
        "error": None,
    }
    run = Run(run_dir, record)
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    restore_signals = _interrupt_on_signals()
    try:
        run.save()  # from here on, Ctrl-C or SIGTERM ends the run marked interrupted
        run._trackers = _open_trackers(report_to, capability, run_id, record["config"], run_dir)
        log.info("run %s started: %s", run_id, " ".join(record["command"]))
        yield run
        record["status"] = "succeeded"
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        record["error"] = {"type": "KeyboardInterrupt", "message": "interrupted by the user (Ctrl-C or SIGTERM)"}
        raise
    except BaseException as e:
        record["status"] = "failed"
        record["error"] = {
            "type": type(e).__name__,
            "message": str(e),
            "traceback": traceback.format_exc(limit=20)[-4000:],
        }
        raise
    finally:
        restore_signals()
        record["ended_at"] = _now()
        record["duration_s"] = round(time.time() - started, 3)
        record["peak_memory"] = _peak_memory(run._gpu_peak)
        run.save()
        log.info("run %s %s in %.1f s", run_id, record["status"], record["duration_s"])
        for tracker in run._trackers:
            with contextlib.suppress(Exception), _quiet_stdout():
                tracker.finish()
        log.removeHandler(handler)
        handler.close()


def _interrupt_on_signals() -> Callable[[], None]:
    """Make SIGTERM (`kill PID`) and Ctrl-C raise KeyboardInterrupt, so the run ends marked interrupted; returns the
    function that puts the previous handlers back.

    Ctrl-C too: Python maps SIGINT to KeyboardInterrupt only if SIGINT was not ignored when it started, and a job
    started in the background of a script or non-interactive shell (`onecard tinylm train ... &`, a test runner run
    that way) starts with it ignored: Ctrl-C and `kill -INT` did nothing and the job ran to its end. Python's own
    Ctrl-C handler is replaced too (see `_raise_interrupt`); a SIGINT handler the calling program set is kept. Only the
    main thread can set handlers: elsewhere (a web worker) nothing changes.

    A signal handler can run inside a destructor or a weakref callback (an import's module-lock callback, while torch
    or trackio loads), where Python prints "Exception ignored in ..." and drops the KeyboardInterrupt: the run would go
    on. A dropped KeyboardInterrupt is sent again, from outside it.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signums = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler):
        signums.append(signal.SIGINT)
    deferred_since: list[float] = []
    previous = {signum: signal.signal(signum, functools.partial(_raise_interrupt, deferred_since))
                for signum in signums}
    previous_hook = sys.unraisablehook

    def resend_dropped_interrupt(unraisable: Any) -> None:
        previous_hook(unraisable)
        if unraisable.exc_type is KeyboardInterrupt:
            _send_again(signal.SIGINT)

    sys.unraisablehook = resend_dropped_interrupt

    def restore() -> None:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(signum, handler)

    return restore


# How long an interrupt waits for code run by exec/eval from a string to return before it is raised inside it anyway
# (a whole program run as `exec(open(path).read())` never returns).
_DEFER_S = 1.0


def _raise_interrupt(deferred_since: list[float], signum: int, frame: FrameType | None) -> None:
    """The run's SIGINT/SIGTERM handler: raise KeyboardInterrupt, but not inside code run by exec/eval from a string.

    A KeyboardInterrupt that leaves such code (`dataclasses` and `namedtuple` build their methods that way, so every
    import that defines one runs some: trackio's, huggingface_hub's...) makes CPython note an uncaught Ctrl-C
    (`PyRun_StringFlags`), and the note stays even once the run has caught it: under `python -m onecard.cli`, the
    interpreter then ends by killing itself with SIGINT, whatever status the command returned (130). The signal is
    sent again a moment later, when that code has returned.
    """
    inside_exec = False
    while frame is not None and frame.f_back is not None:  # the outermost frame is `python -c`'s program: not deferred
        inside_exec = inside_exec or frame.f_code.co_filename == "<string>"
        frame = frame.f_back
    now = time.monotonic()
    if inside_exec and now - (deferred_since or [now])[0] < _DEFER_S:
        deferred_since[:] = deferred_since or [now]
        _send_again(signum)
        return
    deferred_since.clear()
    raise KeyboardInterrupt


def _send_again(signum: int) -> None:
    # From another thread, a moment later: the main thread has left the callback or exec'd code when its handler runs.
    # A bare `_thread` thread, not threading.Timer: this runs inside a signal handler, and the interrupted main thread
    # may hold threading's own locks (it may have been starting a thread), which Timer.start takes.
    _thread.start_new_thread(_kill_later, (signum,))


def _kill_later(signum: int) -> None:
    time.sleep(0.01)
    os.kill(os.getpid(), signum)


class StopFlag:
    """Set by Ctrl-C / SIGTERM while a training loop steps (`stop_after_step`): it saves and stops at a step's end.

    `stepping` is whether a step is under way that can be finished and saved: a plain loop starts with it True, a
    trainer's callback sets it when its loop starts and clears it when it ends; while it is False there is nothing to
    save, and Ctrl-C interrupts at once.
    """

    def __init__(self, stepping: bool = False) -> None:
        self.requested = False
        self.stepping = stepping


@contextlib.contextmanager
def stop_after_step(flag: StopFlag) -> Iterator[None]:
    """Ctrl-C / SIGTERM while `flag.stepping`: set `flag.requested`, and the loop finishes its step, saves a checkpoint
    and stops; a second one, or one while not stepping, raises KeyboardInterrupt (as the run's own handler does:
    `_raise_interrupt`). The previous handlers come back at the end. Only the main thread can set handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from onecard.core.progress import stderr_console

    deferred_since: list[float] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.requested or not flag.stepping:
            _raise_interrupt(deferred_since, signum, frame)
            return
        flag.requested = True
        stderr_console().print("stopping after this step (a checkpoint is saved); press Ctrl-C again to abort")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them: for work that must not stop half-way.

    A checkpoint is such work: an interrupt inside its first, lazy imports (matplotlib loads its backend on the first
    plot) leaves a module half-imported, and the checkpoint that Ctrl-C itself saves then fails.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        signal.raise_signal(held[0])  # to the handler now in place: KeyboardInterrupt in a run


def _gpu_peak() -> dict[str, float]:
    """torch's GPU peaks (GiB) since the counters last started, if this process uses CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {"gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 3),
            "gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 3)}


def _raise_to(peaks: dict[str, float], now: Mapping[str, float]) -> None:
    """Keep in `peaks` the larger of each figure and `now`'s."""
    for key, value in now.items():
        peaks[key] = max(peaks.get(key, 0.0), value)


def _peak_memory(earlier: Mapping[str, float] | None = None) -> dict[str, float]:
    """The process's peak RSS and GPU peaks, with `earlier` GPU peaks (counters restarted since) folded in."""
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    peak = {"rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**3, 3)}
    _raise_to(peak, earlier or {})
    _raise_to(peak, _gpu_peak())
    return peak


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Trackers print banners; keep stdout clean for --json by sending them to the log instead."""
    with contextlib.redirect_stdout(_LogWriter()):
        yield


class _LogWriter:
    def write(self, text: str) -> int:
        if text.strip():
            log.debug("%s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


def _open_trackers(
    report_to: tuple[str, ...] | list[str], capability: str, run_id: str, config: dict[str, Any], run_dir: Path
) -> list[Any]:
    from onecard.core.extras import require

    trackers: list[Any] = []
    for name in report_to:
        if name == "trackio":
            # trackio keeps its SQLite database where TRACKIO_DIR says; read at import.
            os.environ.setdefault("TRACKIO_DIR", str(data_dir() / "trackio"))
            import trackio

            with _quiet_stdout():
                trackio.init(project=f"onecard-{capability}", name=run_id, config=config, auto_log_gpu=False,
                             auto_log_cpu=False)
            # The module's log/finish act on its current run, and finish() clears it so nothing flushes at exit.
            trackers.append(trackio)
        elif name == "wandb":
            wandb = require("wandb", "wandb")
            trackers.append(wandb.init(project=f"onecard-{capability}", name=run_id, config=config, dir=str(run_dir)))
        else:
            raise ConfigError(f"unknown tracker '{name}' in --report-to", "use trackio, wandb, or none")
    return trackers
