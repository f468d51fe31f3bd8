"""--base: catalog names stand for their hub ids and load from the local cache, folders and single checkpoint files
load as themselves, the family (SD 1.5 or SDXL) is read from the files, and a missing base says how to get it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.diffuse.base import hub_id, looks_like_base, resolve_base


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _pipeline(folder: Path, cls: str, parts: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls, **{p: ["x", "y"] for p in parts}}))
    return folder


def test_a_missing_catalog_base_says_how_to_download_it() -> None:
    with pytest.raises(ModelNotFoundError, match="download stable-diffusion-v1-5/stable-diffusion-v1-5"):
        resolve_base("sd15")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download stabilityai/stable-diffusion-xl-base-1.0"):
        resolve_base("sdxl")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_base("missing.safetensors")


def test_a_cached_hub_id_and_a_catalog_name_load_from_the_cache(empty_cache: Path) -> None:
    repo = empty_cache / "models--stabilityai--stable-diffusion-xl-base-1.0"
    _pipeline(repo / "snapshots" / "abc", "StableDiffusionXLPipeline", ("unet", "text_encoder", "text_encoder_2"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    for ref in ("sdxl", "stabilityai/stable-diffusion-xl-base-1.0"):
        base = resolve_base(ref)
        assert (base.path, base.kind, base.family) == (repo / "snapshots" / "abc", "folder", "sdxl")
        assert base.hub_id == "stabilityai/stable-diffusion-xl-base-1.0"


def test_a_folder_and_a_single_file_load_as_themselves(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    folder = _pipeline(tmp_path / "sd", "StableDiffusionPipeline", ("unet", "text_encoder"))
    assert (resolve_base(str(folder)).family, resolve_base(str(folder)).kind) == ("sd15", "folder")
    xl = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.1.model.x": torch.zeros(1)}, str(xl))
    one = tmp_path / "v15.safetensors"
    save_file({"cond_stage_model.transformer.x": torch.zeros(1)}, str(one))
    assert (resolve_base(str(xl)).family, resolve_base(str(xl)).kind, resolve_base(str(xl)).hub_id) == (
        "sdxl", "single-file", hub_id("sdxl"))
    assert resolve_base(str(one)).family == "sd15"
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        resolve_base(str(tmp_path))


def test_a_base_is_told_from_a_run(tmp_path: Path) -> None:
    assert looks_like_base("sd15") and looks_like_base("org/model")
    assert looks_like_base(str(_pipeline(tmp_path / "sd", "StableDiffusionPipeline", ())))
    assert not looks_like_base("last") and not looks_like_base(str(tmp_path))
