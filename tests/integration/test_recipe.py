"""`onecard recipe qlora --gpu 4070ti --os linux` as a user runs it: the recipe and its config written, and the
printed train command resolving that config, each through the console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ONECARD = [sys.executable, "-m", "onecard.cli"]


def _run(*args: str, cwd: Path) -> str:
    result = subprocess.run([*ONECARD, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_qlora_recipe_runs_as_printed(tmp_path: Path) -> None:
    pytest.importorskip("trl")  # `onecard tune` asks for its extra before it reads a config
    out = _run("recipe", "qlora", "--gpu", "4070ti", "--os", "linux", "--out", "recipe.md", cwd=tmp_path)
    assert out.split() == ["wrote", "recipe.md", "wrote", "qlora.yaml"]
    markdown = (tmp_path / "recipe.md").read_text(encoding="utf-8")
    train = next(line for line in markdown.splitlines() if line.startswith("onecard tune train --config"))
    resolved = json.loads(_run(*train.split()[1:], "--print-config", cwd=tmp_path))
    assert resolved["model"] == "meta-llama/Llama-3.1-8B-Instruct" and resolved["method"] == "qlora"
    assert resolved["max_seq_length"] == 2048 and isinstance(resolved["micro_batch_size"], int)
    assert f"micro_batch_size: {resolved['micro_batch_size']}" in markdown


def test_every_printed_qlora_step_runs_on_the_cpu_with_the_tiny_model(tmp_path: Path) -> None:
    """The recipe's commands in order, each as printed, with what a CPU needs on top: the tiny model for the 8B one
    (fit plans the real one, by name, without weights), LoRA for QLoRA (4-bit needs CUDA), a few steps; the export
    without GGUF and Ollama (they need llama.cpp, not in CI). The user's data file is the recipe's placeholder."""
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    _run("recipe", "qlora", "--gpu", "4070ti", "--os", "linux", "--out", "recipe.md", cwd=tmp_path)
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}."} for i in range(24)]
    (tmp_path / "my_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    markdown = (tmp_path / "recipe.md").read_text(encoding="utf-8")
    block = markdown.split("## 2. The commands, in order", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split()[1:] for line in block.splitlines() if line.startswith("onecard ")]
    assert [c[:2] for c in commands] == [["doctor"], ["tune", "data"], ["fit", "meta-llama/Llama-3.1-8B-Instruct"],
                                         ["tune", "train"], ["tune", "train"], ["tune", "eval"], ["tune", "export"]]
    cpu = {"train": ["--model", "tiny", "--method", "lora", "--max-steps", "4", "--device", "cpu", "--report-to",
                     "none"]}
    for argv in commands:
        if argv[:2] == ["tune", "data"]:
            argv = [a if a != "meta-llama/Llama-3.1-8B-Instruct" else "tiny" for a in argv]
        elif argv[:2] == ["tune", "train"] and "--resume" in argv:
            argv = [*argv, "--max-steps", "6", "--report-to", "none"]
        elif argv[:2] == ["tune", "train"]:
            argv = [*argv, *cpu["train"]]
        elif argv[:2] == ["tune", "export"]:
            argv = [a for a in argv if a not in ("--gguf", "q4_k_m", "--ollama")]
        _run(*argv, cwd=tmp_path)
    runs = sorted((Path(os.environ["ONECARD_HOME"]) / "runs").glob("tune-*/run.json"))
    resumed = json.loads(runs[-1].read_text())
    assert resumed["metrics"]["steps"] == 6 and resumed["resumed_from"]["checkpoint"] == "checkpoint-4"
    assert (runs[-1].parent / "export" / "merged" / "config.json").is_file()
