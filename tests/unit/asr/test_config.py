from __future__ import annotations

from pathlib import Path

import pytest

from onecard.asr.config import EvalConfig, TranscribeConfig
from onecard.core.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "asr"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates_and_names_its_command(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# onecard asr ")
    model = TranscribeConfig if " transcribe " in first else EvalConfig
    extra = {"audio": ["a.wav"]} if model is TranscribeConfig else {}
    load_config(model, path, extra)
