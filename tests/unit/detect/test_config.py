"""The shipped detect configs validate; "auto" and the model have no hidden defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from onecard.core.config import load_config
from onecard.core.errors import ConfigError
from onecard.detect.config import DetectConfig

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "detect"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates_and_starts_with_its_command(path: Path) -> None:
    config = load_config(DetectConfig, path, {"data": "data.yaml"})
    assert config.model and path.read_text().startswith(f"# onecard detect train --config configs/detect/{path.name}")


def test_model_and_data_have_no_default_and_auto_is_the_planners() -> None:
    with pytest.raises(ConfigError, match="model"):
        load_config(DetectConfig, None, {"data": "data.yaml"})
    config = load_config(DetectConfig, None, {"data": "d.yaml", "model": "yolov8n.yaml", "imgsz": "320"})
    assert config.imgsz == 320 and config.batch == "auto" and config.amp == "auto"
    with pytest.raises(ConfigError, match="batch"):
        load_config(DetectConfig, None, {"data": "d.yaml", "model": "yolov8n.yaml", "batch": "big"})


@pytest.mark.parametrize("imgsz", [100, 650, 16])
def test_an_image_size_ultralytics_would_round_is_refused_with_both_neighbours(imgsz: int) -> None:
    # ultralytics trains any other side at the next multiple of 32: the plan would not be of the size trained
    with pytest.raises(ValidationError, match="is not a multiple of 32"):
        DetectConfig(data="d.yaml", model="yolov8n.yaml", imgsz=imgsz)
    assert DetectConfig(data="d.yaml", model="yolov8n.yaml", imgsz=-(-imgsz // 32) * 32).imgsz % 32 == 0
