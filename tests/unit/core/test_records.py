"""Run records: complete, atomic, and closed with the right status whatever happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from onecard.core.errors import OnecardError
from onecard.core.records import start_run, uninterrupted, write_json_atomic
from onecard.core.runs import compare, find_run, load_runs


class Cfg(BaseModel):
    lr: float = 0.1
    steps: int = 3


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_succeeded_run_has_everything_needed_to_reproduce(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("hello")
    out = tmp_path / "model.bin"
    with start_run("demo", Cfg(lr=0.5), inputs={"train": data}, seed=7, argv=["onecard", "demo"]) as run:
        assert _record(run.dir)["status"] == "running"  # written at start, not only at the end
        run.log({"loss": 2.0})
        run.log({"loss": 1.0})
        out.write_bytes(b"\x00" * 10)
        run.add_artifact(out)
        run.set_metrics({"loss": 1.0})
    rec = _record(run.dir)
    assert rec["status"] == "succeeded"
    assert rec["config"] == {"lr": 0.5, "steps": 3}
    assert rec["seed"] == 7 and rec["command"] == ["onecard", "demo"]
    # sha256("hello")
    assert rec["inputs"]["train"]["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert rec["artifacts"][0]["bytes"] == 10 and len(rec["artifacts"][0]["sha256"]) == 64
    assert rec["metrics"] == {"loss": 1.0}
    assert rec["versions"]["python"] and "pydantic" in rec["versions"]["libraries"]
    assert rec["hardware"]["cpu_cores"] >= 1
    assert rec["peak_memory"]["rss_gib"] > 0
    assert rec["ended_at"] and rec["duration_s"] >= 0
    assert (run.dir / "log.txt").read_text().count("run ") >= 2


def test_exception_marks_failed_with_the_error() -> None:
    with pytest.raises(ValueError), start_run("demo", Cfg(), report_to=()) as run:
        raise ValueError("bad line 3")
    rec = _record(run.dir)
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "ValueError" and "bad line 3" in rec["error"]["message"]


def test_ctrl_c_marks_interrupted() -> None:
    with pytest.raises(KeyboardInterrupt), start_run("demo", Cfg(), report_to=()) as run:
        raise KeyboardInterrupt
    assert _record(run.dir)["status"] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_interrupts_the_run_even_when_the_process_started_ignoring_it(signum: int) -> None:
    # A job started in the background of a script (`onecard ... &`) starts with SIGINT ignored, and Python keeps it so
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), start_run("demo", Cfg(), report_to=()) as run:
            signal.raise_signal(signum)  # delivered before it returns
        assert signal.getsignal(signum) == signal.SIG_IGN  # the process's own setting is back
    finally:
        signal.signal(signum, previous)
    assert _record(run.dir)["status"] == "interrupted"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_that_python_drops_in_a_destructor_is_sent_again() -> None:
    class Dropping:
        def __del__(self) -> None:
            raise KeyboardInterrupt  # as if Ctrl-C's handler ran here: Python prints "Exception ignored in" and goes on

    with pytest.raises(KeyboardInterrupt), start_run("demo", Cfg(), report_to=()) as run:
        Dropping()
        time.sleep(10)  # the run would go on; the interrupt sent again ends the sleep
    assert _record(run.dir)["status"] == "interrupted" and _record(run.dir)["duration_s"] < 10


def test_ctrl_c_inside_code_run_from_a_string_is_raised_once_it_has_returned() -> None:
    # dataclasses and namedtuple exec their methods from strings, so every import that defines one runs such code
    done = []
    with pytest.raises(KeyboardInterrupt), start_run("demo", Cfg(), report_to=()) as run:
        exec("signal.raise_signal(signal.SIGINT)\nfor _ in range(1000): pass\ndone.append('returned')",
             {"signal": signal, "done": done})
        time.sleep(10)  # the interrupt, sent again, ends the sleep
    assert done == ["returned"]
    assert _record(run.dir)["status"] == "interrupted" and _record(run.dir)["duration_s"] < 10


def test_python_m_exits_130_after_a_ctrl_c_inside_code_run_from_a_string(tmp_path: Path) -> None:
    # A KeyboardInterrupt leaving exec(str) made `python -m` end killed by SIGINT, whatever status it returned (the
    # CLI's Ctrl-C test saw -2 in 1 of 8 runs, when the signal came while trackio's imports built their dataclasses)
    (tmp_path / "job.py").write_text(
        "import signal, sys\n"
        "from pydantic import BaseModel\n"
        "from onecard.core.records import start_run\n"
        "class Cfg(BaseModel): pass\n"
        "try:\n"
        "    with start_run('demo', Cfg(), report_to=()):\n"
        "        exec('signal.raise_signal(signal.SIGINT)\\nfor _ in range(1000): pass', {'signal': signal})\n"
        "        signal.pause()\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "job"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 130, result.stderr


def test_ctrl_c_inside_uninterrupted_waits_for_the_block_to_end() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), start_run("demo", Cfg(), report_to=()) as run:
        with uninterrupted():
            signal.raise_signal(signal.SIGINT)
            done.append("the checkpoint is written whole")
        done.append("not reached")
    assert done == ["the checkpoint is written whole"]
    assert _record(run.dir)["status"] == "interrupted"


def test_killed_run_is_read_back_as_interrupted(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "demo-x"
    import socket

    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    write_json_atomic(run_dir / "run.json", {"id": "demo-x", "status": "running", "pid": dead_pid,
                                             "host": socket.gethostname(), "started_at": "2026-01-01"})
    runs = load_runs(tmp_path / "runs")
    assert runs[0]["status"] == "interrupted"
    assert _record(run_dir)["status"] == "interrupted"  # persisted


def test_git_state_recorded_in_a_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True, env=env)
    (tmp_path / "f").write_text("changed")
    monkeypatch.chdir(tmp_path)
    with start_run("demo", Cfg(), report_to=()) as run:
        pass
    git = _record(run.dir)["git"]
    assert len(git["commit"]) == 40 and git["dirty"] is True


def test_atomic_write_keeps_old_file_when_serialising_fails(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json_atomic(path, {"a": 1})

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("cannot serialise")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"a": Boom()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left


def test_find_and_compare_runs() -> None:
    with start_run("demo", Cfg(lr=0.1), report_to=()) as a:
        a.set_metrics({"loss": 2.0, "acc": 0.5})
    with start_run("demo", Cfg(lr=0.2), report_to=()) as b:
        b.set_metrics({"loss": 1.5, "acc": 0.5})
    assert find_run("last")["id"] == b.id
    with pytest.raises(OnecardError, match="matches 2 runs"):
        find_run("demo-")
    with pytest.raises(OnecardError, match="no run matches"):
        find_run("tune-")
    assert find_run(a.id)["id"] == a.id
    diff = compare(find_run(a.id), find_run(b.id))
    assert diff["config"] == {"lr": [0.1, 0.2]}
    assert diff["metrics"]["loss"]["delta"] == pytest.approx(-0.5)
    assert diff["metrics"]["acc"]["delta"] == 0


def test_find_run_of_a_capability_with_a_file() -> None:
    with start_run("train", Cfg(lr=0.1), report_to=()) as trained:
        (trained.dir / "ckpt.safetensors").write_bytes(b"x")
    with start_run("train", Cfg(lr=0.2), report_to=()) as crashed:
        pass  # no checkpoint
    with start_run("other", Cfg(lr=0.3), report_to=()):
        pass
    assert find_run("last")["capability"] == "other"
    assert find_run("last", capability="train", has="ckpt.safetensors")["id"] == trained.id
    with pytest.raises(OnecardError, match=f"run {crashed.id} is not a train run with ckpt.safetensors"):
        find_run(crashed.id, capability="train", has="ckpt.safetensors")
    with pytest.raises(OnecardError, match="no demo run yet") as info:
        find_run("last", capability="demo", how_to_make="run `onecard demo`")
    assert info.value.fix == "run `onecard demo`"


def test_trackio_receives_the_metric_history_and_not_the_final_metrics() -> None:
    with start_run("demo", Cfg()) as run:
        for i in range(3):
            run.log({"loss": 1.0 / (i + 1)})
        run.set_metrics({"loss": 0.25})  # the record's, not a fourth point of the history
    import sqlite3

    from trackio.sqlite_storage import SQLiteStorage

    # trackio reads TRACKIO_DIR once per process, so ask it where the project's database is.
    db = SQLiteStorage.get_project_db_path("onecard-demo")
    rows = sqlite3.connect(db).execute("select step, metrics from metrics where run_name = ?", (run.id,)).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    assert json.loads(rows[-1][1])["loss"] == pytest.approx(1 / 3)
    assert _record(run.dir)["metrics"] == {"loss": 0.25}


def test_a_damaged_run_json_is_skipped_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """One corrupt record (not UTF-8, not JSON, not a record) must not break `runs list` or every `last` lookup."""
    with start_run("demo", Cfg(), report_to=()) as good:
        good.set_metrics({"loss": 1.0})
    root = Path(good.dir).parent
    damaged = {"zz-binary": b"\xff\xfe\x00", "zz-cut": b'{"id": "zz-cut", "status": "runn', "zz-list": b"[]",
               "zz-no-id": b'{"status": "succeeded"}'}
    for name, content in damaged.items():
        (root / name).mkdir()
        (root / name / "run.json").write_bytes(content)
    assert [r["id"] for r in load_runs(root)] == [good.id]
    assert find_run("last")["id"] == good.id
    err = capsys.readouterr().err
    assert all(f"skipping {root / name / 'run.json'}" in err for name in damaged)
    with pytest.raises(OnecardError, match="is damaged"):
        find_run(str(root / "zz-list"))


def test_logged_points_make_the_metric_history(tmp_path: Path) -> None:
    from onecard.core.runs import history

    with start_run("demo", Cfg(lr=0.1), report_to=(), runs_root=tmp_path) as run:
        run.log({"train/loss": 2.0, "lr": 0.1}, step=10)
        run.log({"val/loss": 1.9}, step=10)
        run.log({"train/loss": 1.5, "lr": 0.05}, step=20)
    (run.dir / "metrics.jsonl").open("a").write('{"step": 30, "train/lo')  # a run killed mid-line
    record = find_run(run.id, tmp_path)
    assert history(record) == {"train/loss": [[10, 2.0], [20, 1.5]], "lr": [[10, 0.1], [20, 0.05]],
                               "val/loss": [[10, 1.9]]}


class _FakeCuda:
    """torch.cuda's peak counters, driven by the test: `use(gib)` allocates, `free(gib)` frees."""

    def __init__(self) -> None:
        self.now = self.peak = 0.0

    def use(self, gib: float) -> None:
        self.now += gib
        self.peak = max(self.peak, self.now)

    def free(self, gib: float) -> None:
        self.now -= gib

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def max_memory_allocated(self) -> float:
        return self.peak * 1024**3

    def max_memory_reserved(self) -> float:
        return (self.peak + 0.5) * 1024**3

    def reset_peak_memory_stats(self) -> None:
        self.peak = self.now


def test_a_phase_keeps_its_own_gpu_peak_and_the_run_keeps_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A training phase's peak leaves out a validation grid drawn inside it and the loading before it; the run's
    peak_memory is still the largest of all."""
    torch = pytest.importorskip("torch")
    cuda = _FakeCuda()
    with start_run("demo", Cfg(), report_to=()) as run:
        # torch.cuda's counters stood in once the run has recorded the real machine (versions, hardware)
        for name in ("is_available", "is_initialized", "max_memory_allocated", "max_memory_reserved",
                     "reset_peak_memory_stats"):
            monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
        cuda.use(9.0)  # loading: a 16-bit copy staged on the GPU, then freed
        cuda.free(6.0)
        with run.gpu_phase("train"):
            cuda.use(4.0)  # a training step
            cuda.free(4.0)
            with run.gpu_phase("validate"):  # a grid drawn between steps
                cuda.use(5.0)
                cuda.free(5.0)
            cuda.use(4.5)  # the step that peaked
            cuda.free(4.5)
    rec = _record(run.dir)
    assert rec["phase_peaks"]["train"] == {"gpu_allocated_gib": 7.5, "gpu_reserved_gib": 8.0}
    assert rec["phase_peaks"]["validate"] == {"gpu_allocated_gib": 8.0, "gpu_reserved_gib": 8.5}
    assert rec["peak_memory"]["gpu_allocated_gib"] == 9.0 and rec["peak_memory"]["gpu_reserved_gib"] == 9.5


def test_without_cuda_a_phase_records_nothing() -> None:
    with start_run("demo", Cfg(), report_to=()) as run, run.gpu_phase("train"):
        run.log({"loss": 1.0})
    rec = _record(run.dir)
    assert "phase_peaks" not in rec and "gpu_allocated_gib" not in rec["peak_memory"]


def test_a_runs_folder_that_is_a_file_is_named(tmp_path: Path) -> None:
    from onecard.core.errors import ConfigError

    afile = tmp_path / "runs"
    afile.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"), start_run("fit", {}, runs_root=afile):
        pass
    assert afile.read_text() == "not a folder"
