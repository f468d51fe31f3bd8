"""The CLI's shared plumbing: flags, config precedence, --resume, --print-config, and --json output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from onecard.cli.common import emit, job_flags, resolve_config, run_flags, trackers
from onecard.core.config import add_config_flags
from onecard.core.errors import ConfigError


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="training file")
    lr: float = Field(2e-4, description="learning rate")
    max_steps: int = Field(100, description="steps")
    paths: list[str] = Field(default_factory=list, description="inputs")


def _job(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, JobConfig)
    job_flags(parser, resume="--max-steps")
    return parser.parse_args(argv)


def test_defaults_then_file_then_flags_then_overrides(tmp_path: Path) -> None:
    file = tmp_path / "job.yaml"
    file.write_text("data: a.jsonl\nlr: 0.001\nmax_steps: 50\n")
    args = _job(["--config", str(file), "--max-steps", "7"])
    config = resolve_config(args, JobConfig)
    assert (config.data, config.lr, config.max_steps, config.paths) == ("a.jsonl", 0.001, 7, [])
    assert resolve_config(args, JobConfig, {"paths": ["notes/"]}).paths == ["notes/"]


def test_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "job.yaml"
    file.write_text("data: a.jsonl\nmax_stpes: 5\n")
    with pytest.raises(ConfigError) as e:
        resolve_config(_job(["--config", str(file)]), JobConfig)
    assert "max_stpes" in str(e.value) and "did you mean 'max_steps'" in str(e.value)


def test_print_config_prints_the_resolved_config_and_exits_0(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "job.yaml"
    file.write_text("data: a.jsonl\nlr: 0.001\n")
    with pytest.raises(SystemExit) as e:
        resolve_config(_job(["--config", str(file), "--lr", "0.5", "--print-config"]), JobConfig)
    assert e.value.code == 0
    assert json.loads(capsys.readouterr().out) == {"data": "a.jsonl", "lr": 0.5, "max_steps": 100, "paths": []}


def test_resume_takes_the_runs_config_with_the_flags_on_top(tmp_path: Path) -> None:
    saved = {"data": "run.jsonl", "lr": 0.01, "max_steps": 10}
    asked: list[tuple[str, dict[str, Any], str | None]] = []

    def resume(ref: str, flags: dict[str, Any], runs_dir: str | None) -> JobConfig:
        asked.append((ref, flags, runs_dir))
        return JobConfig.model_validate({**saved, **flags})

    config = resolve_config(_job(["--resume", "last", "--max-steps", "20", "--runs-dir", str(tmp_path)]), JobConfig,
                            resume=resume)
    assert asked == [("last", {"max_steps": "20"}, str(tmp_path))]
    assert (config.data, config.lr, config.max_steps) == ("run.jsonl", 0.01, 20)
    # without --resume the same command builds a new config
    assert resolve_config(_job(["--data", "new.jsonl"]), JobConfig, resume=resume).data == "new.jsonl"
    assert len(asked) == 1


def test_job_and_run_flags() -> None:
    args = _job(["--data", "a.jsonl", "--report-to", "trackio", "none", "--json"])
    assert args.json and args.runs_dir is None and args.resume is None and not args.print_config
    assert trackers(args) == ("trackio",)
    assert trackers(_job([])) == ("trackio",)
    reader = argparse.ArgumentParser()
    run_flags(reader)
    assert vars(reader.parse_args(["--runs-dir", "r", "--json"])) == {"config": None, "runs_dir": "r", "json": True}
    with pytest.raises(SystemExit):  # a command that reads a run has no --print-config
        reader.parse_args(["--print-config"])


def test_emit_prints_json_or_calls_the_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"run_id": "abc", "dir": Path("/runs/abc"), "loss": 1.5}
    rendered: list[Any] = []
    render = lambda d, console: rendered.append((d, console))  # noqa: E731

    emit(argparse.Namespace(json=True), data, render)
    assert json.loads(capsys.readouterr().out) == {"run_id": "abc", "dir": "/runs/abc", "loss": 1.5}
    assert rendered == []

    emit(argparse.Namespace(json=False), data, render)
    assert capsys.readouterr().out == ""
    assert len(rendered) == 1 and rendered[0][0] is data and hasattr(rendered[0][1], "print")

    emit(argparse.Namespace(json=False), data)  # a command with nothing to show but its progress
    assert capsys.readouterr().out == ""


class CardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field("d.jsonl", description="training file")
    gpu: str | None = Field(None, description="card")
    vram: float | None = Field(None, description="card memory")


@pytest.mark.parametrize(("saved", "argv", "card"), [
    ({"gpu": "4070ti"}, ["--vram", "2"], (None, 2.0)),  # a run planned for a 4070 Ti resumed on a 2 GiB card
    ({"vram": 6.0}, ["--gpu", "rtx-3060"], ("rtx-3060", None)),
    ({"gpu": "4070ti"}, [], ("4070ti", None)),  # nothing named: the run's own card
])
def test_a_card_named_by_a_flag_replaces_the_resumed_runs(saved: dict[str, Any], argv: list[str],
                                                          card: tuple[str | None, float | None]) -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, CardConfig)
    job_flags(parser, resume="--data")

    def resume(ref: str, flags: dict[str, Any], runs_dir: str | None) -> CardConfig:
        return CardConfig.model_validate({**saved, **flags})

    config = resolve_config(parser.parse_args(["--resume", "last", *argv]), CardConfig, resume=resume)
    assert (config.gpu, config.vram) == card
