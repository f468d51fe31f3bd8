"""Configs: every shipped YAML loads, model and data have no default, unknown keys name the closest one."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.core.config import load_config
from onecard.core.errors import ConfigError
from onecard.tune.config import TuneConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs" / "tune").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads_and_starts_with_its_command(path: Path) -> None:
    assert path.read_text().startswith(f"# onecard tune train --config configs/tune/{path.name}")
    config = load_config(TuneConfig, path, {"data": "my_pairs.jsonl"})
    assert config.model


def test_model_and_data_are_required_and_bad_keys_are_named() -> None:
    with pytest.raises(ConfigError, match="key 'model': Field required"):
        load_config(TuneConfig, None, {"data": "x"})
    with pytest.raises(ConfigError, match="did you mean 'lora_rank'"):
        load_config(TuneConfig, None, {"model": "tiny", "data": "x", "lora_rnak": "8"})
    config = load_config(TuneConfig, None, {"model": "tiny", "data": "x", "micro_batch_size": "4",
                                            "gradient_checkpointing": "false"})
    assert config.micro_batch_size == 4 and config.gradient_checkpointing is False
    assert load_config(TuneConfig, None, {"model": "tiny", "data": "x"}).micro_batch_size == "auto"


@pytest.mark.parametrize(("key", "value", "least"), [("max_seq_length", "0", 8), ("micro_batch_size", "0", 1),
                                                     ("max_seq_length", "7", 8), ("micro_batch_size", "-2", 1)])
def test_lengths_and_batch_sizes_below_their_floor_name_the_key(key: str, value: str, least: int) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}': Value error, should be at least {least}, or auto"):
        load_config(TuneConfig, None, {"model": "tiny", "data": "x", key: value})
    assert load_config(TuneConfig, None, {"model": "tiny", "data": "x", key: str(least)}).model_dump()[key] == least
