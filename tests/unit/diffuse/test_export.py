"""Export: the kohya file has A1111/ComfyUI's key names and the trained alpha, and diffusers' `load_lora_weights`
reads it back to the same images as the run's own LoRA; the diffusers export is the run's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402

from onecard.cli import main  # noqa: E402
from onecard.diffuse.config import DiffuseConfig  # noqa: E402
from onecard.diffuse.run import LORA_DIR, train  # noqa: E402
from onecard.diffuse.tiny import make_tiny_pipeline  # noqa: E402
from onecard.diffuse.train import LORA_FILE  # noqa: E402


@pytest.mark.slow
def test_kohya_export_has_ui_keys_and_loads_to_the_same_images(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from diffusers import StableDiffusionPipeline

    base = make_tiny_pipeline(tmp_path / "base")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (200 * i, 40, 90)).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text("a square")
    runs = tmp_path / "runs"
    trained = train(DiffuseConfig(base=str(base), data=str(images), resolution=32, max_steps=3, batch_size=2,
                                  lr=1e-2, rank=4, alpha=8, dtype="fp32", device="cpu"), str(runs), report_to=())
    files = {}
    for fmt in ("kohya", "diffusers"):
        assert main(["diffuse", "export", trained.id, "--format", fmt, "--runs-dir", str(runs), "--json"]) == 0
        files[fmt] = Path(json.loads(capsys.readouterr().out)["file"])
    assert files["diffusers"].read_bytes() == (trained.dir / LORA_DIR / LORA_FILE).read_bytes()

    with safe_open(str(files["kohya"]), "pt") as f:
        keys = set(f.keys())
        alphas = {k: float(f.get_tensor(k)) for k in keys if k.endswith(".alpha")}
        assert f.metadata()["ss_network_dim"] == "4" and f.metadata()["ss_network_alpha"] == "8"
    # kohya/A1111 names: lora_unet_<diffusers module path with _>.lora_down.weight / .lora_up.weight / .alpha
    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert {f"{q}.lora_down.weight", f"{q}.lora_up.weight", f"{q}.alpha"} <= keys
    assert all(k.startswith("lora_unet_") for k in keys)
    assert len(alphas) == len(keys) // 3 and set(alphas.values()) == {8.0}

    def draw(lora: Path | None) -> np.ndarray:
        pipe = StableDiffusionPipeline.from_pretrained(str(base))
        pipe.set_progress_bar_config(disable=True)
        if lora is not None:
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
        return pipe("sks a square", num_inference_steps=2, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    plain, own, kohya = draw(None), draw(files["diffusers"]), draw(files["kohya"])
    assert np.abs(own - plain).max() > 1e-3
    np.testing.assert_allclose(kohya, own, atol=1e-5)
