"""The dispatcher: card and model resolution, the fit verdict, the error for unknown names, and its speed."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.core.gpus import custom, lookup
from onecard.fit import llm
from onecard.fit import plan as planning
from onecard.fit.job import FitJob


def test_budget_fits_and_headroom_follow_the_card() -> None:
    p = planning.plan(FitJob(model="llama-3.1-8b", job="train", gpu="4070ti", margin_gib=0.5))
    card = lookup("4070ti")
    assert p.card == card and p.budget_gib == card.usable_gib - 0.5
    # decided on the safe bound: the estimate times (1 + its kind's margin) plus its fixed part, as bounds.json gives
    assert p.margin is not None and p.margin.kind == "llm-train"
    assert p.peak_upper_gib == pytest.approx(p.estimate.process_gib * (1 + p.margin.margin) + p.margin.abs_gib)
    assert p.fits == (p.peak_upper_gib <= p.budget_gib)
    assert p.headroom_gib == pytest.approx(p.budget_gib - p.peak_upper_gib)


@pytest.mark.parametrize(("model", "update", "grows"), [
    ("mistral-7b-v0.1", {"quant": "nf4"}, True),  # transformers: a PyTorch process
    ("llama-3.1-8b", {"job": "train"}, True),
    ("sdxl", {}, True),
    ("yolov8s", {"job": "train"}, True),
    ("whisper-large-v3", {"runtime": "openai-whisper"}, True),
    ("llama-3.1-8b", {"quant": "q4_k_m"}, False),  # llama.cpp: no figure for its kernels
    ("whisper-large-v3", {"runtime": "faster-whisper"}, False),  # CTranslate2, likewise
    ("llama-3.1-8b", {"runtime": "vllm"}, False),  # vLLM's pool shrinks instead
])
def test_eager_module_loading_grows_a_pytorch_context_by_its_measured_kernels(
        model: str, update: dict[str, object], grows: bool) -> None:
    from onecard.fit.overheads import EAGER_MODULES_GIB

    lazy = FitJob(model=model, gpu="a100-80gb", **update)
    eager = lazy.model_copy(update={"cuda_module_loading": "eager"})
    a, b = planning.plan(lazy).estimate, planning.plan(eager).estimate
    assert b.peak_allocated_gib == pytest.approx(a.peak_allocated_gib)  # the tensors are the same
    assert b.context_gib - a.context_gib == pytest.approx(EAGER_MODULES_GIB if grows else 0.0)
    assert round(EAGER_MODULES_GIB * 1024) == 362  # pytorch/pytorch#86509: 666.6 - 287.0 MB
    assert any("eager module loading" in note for note in b.assumptions)  # says what it did, or why not


def test_vram_makes_a_custom_card() -> None:
    assert planning.resolve_card(FitJob(model="llama-3.1-8b", vram=12)) == custom(12)


def test_detected_gpu_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.core import device

    monkeypatch.setattr(device, "local_gpu", lambda: None)
    p = planning.plan(FitJob(model="llama-3.1-8b"))
    assert p.card is None and p.fits is None and p.budget_gib is None and p.headroom_gib is None
    monkeypatch.setattr(device, "local_gpu", lambda: lookup("rtx-3060"))
    assert planning.resolve_card(FitJob(model="llama-3.1-8b")) == lookup("rtx-3060")


@pytest.mark.parametrize(("ref", "family"), [("llama3.1:8b", "llm"), ("sdxl", "diffusion"), ("yolov8s", "yolo"),
                                             ("whisper-large-v3", "whisper")])
def test_names_resolve_to_their_family(ref: str, family: str) -> None:
    assert planning.resolve_arch(ref).family == family


def test_local_paths_resolve(tmp_path: Path) -> None:
    cfg = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    for ref in (str(tmp_path), str(tmp_path / "config.json")):
        resolved = planning.resolve_arch(ref)
        assert resolved.family == "llm" and resolved.estimator is llm.estimate and resolved.arch.n_kv_heads == 8
    est = planning.estimate(FitJob(model=str(tmp_path), quant="nf4"), lookup("4070ti"))
    assert est.peak_allocated_gib > 4


_TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}


def test_a_folder_is_planned_from_its_own_config_not_its_name(tmp_path: Path) -> None:
    # a tiny LLaVA in a folder named `tiny` (as onecard/vlm/tiny.py builds it) is not the Whisper `tiny` entry; a tiny
    # Llama in `whisper-small` is not Whisper small; `sdxl` and `yolov8s` folders are not those catalog entries either
    llava = {"model_type": "llava", "text_config": _TINY_LLAMA,
             "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "image_size": 64,
                               "patch_size": 16}}
    for name, cfg in (("tiny", llava), ("whisper-small", _TINY_LLAMA), ("sdxl", _TINY_LLAMA),
                      ("yolov8s", _TINY_LLAMA), ("llama-3.1-8b", _TINY_LLAMA)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg))
        for ref in (str(folder), str(folder / "config.json")):
            resolved = planning.resolve_arch(ref)
            assert resolved.family == "llm" and resolved.arch.hidden == 64, (name, ref)
            assert (resolved.arch.vision is not None) == (name == "tiny")
    assert planning.resolve_arch(str(tmp_path / "tiny")).arch.vision.image_tokens == 16  # (64 / 16)^2 patches


def test_a_whisper_folder_is_planned_from_its_own_config(tmp_path: Path) -> None:
    # a fine-tuned Whisper whose folder is named like another size keeps its own dimensions; a folder with no
    # config.json still resolves by its name
    folder = tmp_path / "whisper-large-v3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": 768, "encoder_layers": 12,
                                                    "decoder_layers": 12, "encoder_attention_heads": 12}))
    resolved = planning.resolve_arch(str(folder))
    assert resolved.family == "whisper" and resolved.arch.d == 768 and resolved.arch.enc_layers == 12
    bare = tmp_path / "whisper-small"
    bare.mkdir()
    assert planning.resolve_arch(str(bare)).arch.d == 768  # the catalog's whisper-small, by name
    assert planning.resolve_arch("tiny").family == "whisper"  # a name with no such path: the catalog


@pytest.mark.parametrize(("typo", "suggestion"), [("llama-3.1-7b", "llama-3.1-8b"), ("mistral7b", "mistral-7b"),
                                                  ("qwen2.5-coder-8b", "qwen2.5-coder-7b")])
def test_unknown_model_lists_close_names(typo: str, suggestion: str) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        planning.estimate(FitJob(model=typo))
    assert suggestion in str(err.value) and typo in str(err.value)


def test_catalog_plans_answer_in_under_50_ms() -> None:
    job = FitJob(model="llama-3.1-8b", job="train", method="qlora", gpu="4070ti")
    planning.plan(job)  # first call imports the estimator modules
    times = []
    for _ in range(20):
        t = time.perf_counter()
        planning.plan(job)
        times.append(time.perf_counter() - t)
    assert statistics.median(times) < 0.050


def test_planning_imports_no_torch() -> None:
    code = ("import sys; from onecard.fit.plan import plan; from onecard.fit.job import FitJob; "
            "plan(FitJob(model='llama-3.1-8b', job='train', gpu='4070ti')); "
            "plan(FitJob(model='llama-3.1-8b', runtime='llama.cpp', gpu='4070ti')); "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
