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
