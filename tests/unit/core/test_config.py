"""Config precedence (defaults < file < flags) and errors that name the bad key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from onecard.core.config import add_config_flags, config_from_args, load_config
from onecard.core.errors import ConfigError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="training file")
    lora_rank: int = Field(16, ge=1, description="LoRA rank")
    lr: float = Field(2e-4, description="learning rate")
    grad_ckpt: bool = Field(True, description="gradient checkpointing")
    precision: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="precision")
    max_steps: int | None = Field(None, description="stop after this many steps")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_flags(parser, TrainConfig)
    return parser.parse_args(argv)


def test_defaults_then_file_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("data: a.jsonl\nlora_rank: 32\nlr: 0.001\n")
    config = config_from_args(TrainConfig, _parse(["--config", str(file), "--lora-rank", "8", "--no-grad-ckpt"]))
    assert config.data == "a.jsonl"  # from the file
    assert config.lr == 0.001  # from the file
    assert config.lora_rank == 8  # the flag wins over the file
    assert config.grad_ckpt is False
    assert config.precision == "bf16"  # default


def test_flag_none_clears_an_optional_field(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("data: a.jsonl\nmax_steps: 100\n")
    assert config_from_args(TrainConfig, _parse(["--config", str(file), "--max-steps", "none"])).max_steps is None


def test_unknown_key_in_file_names_key_and_closest(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("data: a.jsonl\nlora_rnak: 8\n")
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, file)
    assert "lora_rnak" in str(e.value) and "lora_rank" in str(e.value) and str(file) in str(e.value)


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, None, {"data": "x", "lora_rank": "sixteen"})
    assert "lora_rank" in str(e.value) and "sixteen" in str(e.value)


def test_bad_choice_lists_it() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, None, {"data": "x", "precision": "int3"})
    assert "precision" in str(e.value) and "int3" in str(e.value)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("data: a.jsonl\nlr: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, file)
    assert f"{file}:" in str(e.value)


def test_missing_required_input_is_named() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig)
    assert "'data'" in str(e.value)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_bytes(b"data: notes.txt\nlr: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"train\.yaml:2: not UTF-8 text \(byte 20 is b'\\xff'\)"):
        load_config(TrainConfig, path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.dictionaries(st.sampled_from(["data", "lora_rank", "lr", "grad_ckpt", "precision",
                                                       "max_steps", "other"]),
                                      st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=10),
                                                st.lists(st.integers(), max_size=3)), max_size=6)
                      .map(lambda d: yaml.safe_dump(d))),
       raw=st.booleans())
def test_fuzz_config_file(tmp_path: Path, text: str, raw: bool) -> None:
    """Any file given to --config loads or raises a ConfigError that names it; never another exception."""
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text.encode("latin-1", errors="replace") if raw else text.encode())
    try:
        load_config(TrainConfig, path)
    except ConfigError as e:
        assert "fuzz.yaml" in str(e) or "flags" in str(e)
