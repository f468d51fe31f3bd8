"""`onecard vlm chat` on the tiny random LLaVA: the answer is noise, but it streams, is counted with its images'
tokens, takes several images, and leaves a run record with the conversation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("PIL")

from onecard.llm import UnsupportedError  # noqa: E402
from onecard.vlm.chat import chat  # noqa: E402
from onecard.vlm.config import VlmChatConfig  # noqa: E402
from onecard.vlm.synthetic import make_image  # noqa: E402
from onecard.vlm.tiny import make_tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llava(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = [folder / "a.png", folder / "b.png"]
    make_image([("red", "square", "top left")]).save(paths[0])
    make_image([("blue", "circle", "bottom right"), ("green", "triangle", "top left")]).save(paths[1])
    return paths


def test_one_answer_about_two_images_streams_and_is_recorded(tiny: Path, images: list[Path], tmp_path: Path) -> None:
    out, said = io.StringIO(), []
    config = VlmChatConfig(model=str(tiny), image=images, prompt="what colour is the square?", max_tokens=5)
    summary = chat(config, iter([]), out, said.append, runs_root=tmp_path)
    assert out.getvalue().strip() and "no GPU found: fp32 weights on the CPU" in said
    # 2 x 16 image tokens, "USER:" "what colour is the square?" "ASSISTANT:" in the word-level vocabulary
    assert summary["prompt_tokens"] == 2 * 16 + 10 and summary["completion_tokens"] == 5 and summary["turns"] == 1
    record = json.loads((Path(summary["dir"]) / "run.json").read_text())
    assert record["status"] == "succeeded" and set(record["inputs"]) == {"image0", "image1"}
    assert record["backend"]["name"] == "transformers" and record["backend"]["quant"] == "fp32"
    saved = json.loads((Path(summary["dir"]) / "chat.json").read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]  # no system turn, as a tune trains
    assert len(saved["messages"][0]["content"]) == 3  # two images, then the text


def test_repl_with_json_replies(tiny: Path, images: list[Path], tmp_path: Path) -> None:
    out = io.StringIO()
    lines = iter(["what shape is blue?", f"/image {images[0]}", "what colour is the square?", "/exit"])
    summary = chat(VlmChatConfig(model=str(tiny), image=images[1:], max_tokens=3), lines, out, lambda _: None,
                   as_json=True, runs_root=tmp_path)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert summary["turns"] == 2 and [r["completion_tokens"] for r in replies] == [3, 3]
    # the second turn adds one image (16 tokens) to the first turn's prompt, its answer and the new question
    assert replies[1]["prompt_tokens"] > replies[0]["prompt_tokens"] + 16


def test_a_text_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    config = VlmChatConfig(model="smollm2-135m-instruct", backend="llamacpp", prompt="hi", ctx=512, gpu_layers=0)
    with pytest.raises(UnsupportedError, match="cannot read images") as e:
        chat(config, iter([]), io.StringIO(), lambda _: None, runs_root=tmp_path)
    assert "--mmproj" in (e.value.fix or "")


def test_fit_picks_nf4_for_llava_7b_on_a_12_gb_card_and_bf16_on_24_gb() -> None:
    from onecard.llm.fitting import fit_transformers

    assert fit_transformers("llava-hf/llava-1.5-7b-hf", gpu="4070ti").quant == "nf4"
    assert fit_transformers("llava-hf/llava-1.5-7b-hf", gpu="rtx-3090").quant == "bf16"


def test_the_command_answers_as_json(images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # piped and empty: nothing appended to the prompt

    argv = ["vlm", "chat", "--model", "tiny", "--image", *map(str, images), "--prompt", "what shape is blue?",
            "--max-tokens", "2", "--runs-dir", str(tmp_path), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    reply = json.loads(captured.out)
    assert reply["backend"] == "transformers" and reply["completion_tokens"] == 2
    # two images' tokens, then USER : what shape is blue ? ASSISTANT : (9 word-level tokens)
    assert reply["prompt_tokens"] == 2 * 16 + 9 and "recorded as run vlm-" in captured.err
