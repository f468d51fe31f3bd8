"""`onecard chat` and `onecard llm` as a user runs them, with the shipped SmolLM2-135M model, offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
pytest.importorskip("llama_cpp")

ONECARD = [sys.executable, "-m", "onecard.cli"]
FAST = ["--ctx", "1024", "--temperature", "0", "--threads", "2"]


def _run(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ONECARD, *args], input=stdin, capture_output=True, text=True, timeout=300,
                            env=os.environ.copy())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_one_shot_json_answers_with_counts_and_the_fitted_settings() -> None:
    result = _run("chat", "--prompt", "Name the capital of France.", "--json", *FAST)
    data = json.loads(result.stdout)
    assert "Paris" in data["text"] and data["backend"] == "llamacpp"
    assert data["prompt_tokens"] > 0 and data["completion_tokens"] > 0 and data["tokens_per_s"] > 0
    assert data["settings"]["gpu_layers"] == 0 and data["settings"]["ctx"] == 1024
    assert "no GPU found: all 30 layers on the CPU" in result.stderr


def test_stdin_is_appended_to_the_prompt() -> None:
    question = ["--prompt", "Name the capital of France.", "--json", *FAST]
    alone = json.loads(_run("chat", *question).stdout)
    notes = "Paris is also known as the City of Light. " * 5
    piped = json.loads(_run("chat", *question, stdin=notes).stdout)
    assert piped["prompt_tokens"] >= alone["prompt_tokens"] + 50


def test_json_schema_gives_valid_json(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    out = _run("chat", "--prompt", "What is the capital of France? Answer in JSON.", "--json-schema",
               str(tmp_path / "schema.json"), *FAST).stdout
    value = json.loads(out)
    assert set(value) == {"city", "country"} and "Paris" in value["city"]


def test_json_schema_that_cannot_be_met_is_an_error_and_prints_nothing(tmp_path: Path) -> None:
    (tmp_path / "true.json").write_text("true")
    (tmp_path / "story.json").write_text(json.dumps({"type": "object", "properties": {"story": {"type": "string"}}}))
    ask = ["chat", "--prompt", "Tell a long story about a dragon, as JSON.", *FAST]
    unusable = _run(*ask, "--json-schema", str(tmp_path / "true.json"), check=False)
    assert unusable.returncode == 2 and "true.json: the schema is true, not an object" in unusable.stderr
    cut = _run(*ask, "--json-schema", str(tmp_path / "story.json"), "--max-tokens", "6", check=False)
    assert cut.returncode == 2 and "cut off at the token limit (6 tokens)" in cut.stderr and cut.stdout == ""
    assert "Traceback" not in unusable.stderr + cut.stderr


def test_repl_from_stdin_with_reset_and_save(tmp_path: Path) -> None:
    lines = ["Name the capital of France.", f"/save {tmp_path / 'one.json'}", "/reset",
             "Name the capital of France.", f"/save {tmp_path / 'two.json'}", "/exit"]
    result = _run("chat", *FAST, stdin="\n".join(lines) + "\n")
    assert result.stdout.count("Paris") == 2
    assert result.stderr.count("tokens/s") == 2 and "conversation reset" in result.stderr
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert [m["role"] for m in one["messages"]] == ["system", "user", "assistant"]
    assert two["messages"] == one["messages"]  # after /reset the same question gets the same answer at temperature 0


def test_errors_a_user_understands(tmp_path: Path) -> None:
    missing = _run("chat", "--prompt", "hi", "--model", str(tmp_path / "llama-8b.gguf"), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "page.gguf").write_text("<html>")
    bad = _run("chat", "--prompt", "hi", "--model", str(tmp_path / "page.gguf"), check=False)
    assert bad.returncode == 2 and "not a GGUF file" in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    ollama = _run("chat", "--prompt", "hi", "--backend", "ollama", "--model", "llama3.1:8b", "--base-url", url,
                  check=False)
    assert ollama.returncode == 2 and "ollama serve" in ollama.stderr and url in ollama.stderr
    vllm = _run("chat", "--prompt", "hi", "--backend", "openai", "--model", "m", "--base-url", f"{url}/v1",
                check=False)
    assert vllm.returncode == 2 and f"{url}/v1" in vllm.stderr


def test_llm_list_and_pull_offline() -> None:
    models = json.loads(_run("llm", "list", "--json", "--ollama-url", "http://127.0.0.1:9").stdout)["models"]
    assert any(m["ref"] == "smollm2-135m-instruct" for m in models)
    pulled = _run("llm", "pull", "HuggingFaceTB/SmolLM2-360M-Instruct", check=False)  # conftest: HF_HUB_OFFLINE=1
    assert pulled.returncode == 2 and "HF_HUB_OFFLINE" in pulled.stderr
