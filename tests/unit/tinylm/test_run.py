"""The entry points in-process: a folder of code with byte-level BPE, and the CUDA path where there is a GPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from onecard.tinylm import run  # noqa: E402
from onecard.tinylm.config import EvalConfig, SampleConfig, TinyLMConfig  # noqa: E402

CODE = '''def add(a, b):
    """Return the sum of a and b."""
    return a + b


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def increment(self, by: int = 1) -> int:
        self.count += by
        return self.count
'''


@pytest.fixture
def code_folder(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for i in range(40):
        (root / f"pkg{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"pkg{i % 4}" / f"mod{i}.py").write_text(CODE.replace("add", f"add_{i}").replace("Counter", f"C{i}"))
    (root / "README.md").write_text("not read: the glob asks for Python files")
    return root


def test_bpe_on_a_folder_of_code(code_folder: Path, tmp_path: Path) -> None:
    config = TinyLMConfig(data=str(code_folder), glob="**/*.py", tokenizer="bpe", vocab_size=300, preset="tiny",
                          max_iters=60)
    trained = run.train(config, runs_root=str(tmp_path / "runs"), report_to=())
    m, plan = trained.record["metrics"], trained.record["plan"]
    assert plan["vocab_size"] == 300 and plan["train_tokens"] + plan["val_tokens"] < 40 * len(CODE) / 2
    assert m["val_loss"] < math.log(300) - 1.0
    # BPE tokens span several characters, so bits per character is below bits per token.
    assert m["val_bits_per_char"] < m["val_loss"] / math.log(2) / 2
    pieces: list[str] = []
    texts = run.sample(SampleConfig(run=str(trained.dir), prompt="def ", max_new_tokens=30),
                       on_text=pieces.append)
    assert texts[0].startswith("def ") and "".join(pieces) == texts[0]
    result = run.evaluate(EvalConfig(run=str(trained.dir), data=str(code_folder / "pkg0" / "mod0.py")))
    assert result["tokens"] % 32 == 0 and result["tokens"] < result["chars"] < len(CODE)  # whole windows of 32
    assert result["bits_per_char"] == pytest.approx(
        result["loss"] * result["tokens"] / result["chars"] / math.log(2))


@pytest.mark.gpu
def test_cuda_bf16_compiled_training_and_cached_generation(tmp_path: Path) -> None:
    import torch

    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 400)
    config = TinyLMConfig(data=str(text), preset="tiny", device="cuda", compile=True)
    trained = run.train(config, runs_root=str(tmp_path / "runs"), report_to=())
    plan = trained.record["plan"]
    assert plan["device"] == "cuda" and plan["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert trained.record["metrics"]["val_loss"] < 1.5
    cached, uncached = (run.sample(SampleConfig(run=str(trained.dir), prompt="To be", max_new_tokens=80,
                                                cache=cache, device="cuda")) for cache in (True, False))
    assert cached == uncached
