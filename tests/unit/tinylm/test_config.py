"""Train config: presets under the file and the flags, validation, and every shipped YAML loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from onecard.core.config import load_config
from onecard.core.errors import ConfigError
from onecard.tinylm.config import PRESETS, TinyLMConfig

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
CONFIG_DIR = ROOT / "configs" / "tinylm"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_a_preset_fills_what_the_file_and_flags_leave_out(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("preset: baby\nn_layer: 8\n")
    config = load_config(TinyLMConfig, file, {"data": "x.txt", "batch_size": "32"})
    assert (config.n_layer, config.batch_size) == (8, 32)  # file and flags win
    assert (config.n_head, config.n_embd, config.block_size, config.dropout) == (6, 384, 256, 0.2)  # the preset
    assert config.pos == "rope"  # not part of a preset


def test_nanogpt_cpu_preset_is_the_readme_run() -> None:
    config = TinyLMConfig(data="x", preset="nanogpt-cpu")
    assert (config.n_layer, config.n_head, config.n_embd, config.block_size, config.batch_size) == (4, 4, 128, 64, 12)
    assert (config.max_iters, config.dropout, config.learning_rate, config.min_lr, config.beta2) == (
        2000, 0.0, 1e-3, 1e-4, 0.99)


def test_data_has_no_default_and_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match="key 'data': Field required"):
        load_config(TinyLMConfig, None, {})
    with pytest.raises(ConfigError, match="key 'pos'"):
        load_config(TinyLMConfig, None, {"data": "x", "pos": "sinusoidal"})
    with pytest.raises(ConfigError, match="multiple of 2 \\* n_head"):
        load_config(TinyLMConfig, None, {"data": "x", "n_embd": "100", "n_head": "4"})
    with pytest.raises(ConfigError, match="did you mean 'n_layer'"):
        load_config(TinyLMConfig, None, {"data": "x", "n_layers": "4"})


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_preset_alone_sets_every_key_it_names(preset: str) -> None:
    config = TinyLMConfig(data="x", preset=preset)  # type: ignore[arg-type]
    assert {key: getattr(config, key) for key in PRESETS[preset]} == PRESETS[preset]


def test_the_configs_the_readme_runs_are_shipped() -> None:
    named = set(re.findall(r"configs/tinylm/([\w.-]+\.yaml)", README.read_text(encoding="utf-8")))
    assert named | {"tiny.yaml"} <= {path.name for path in CONFIGS}  # every capability ships a tiny config


def test_the_readme_cpu_config_is_nanogpts_run_with_rope_and_a_3x_learning_rate() -> None:
    config = load_config(TinyLMConfig, CONFIG_DIR / "shakespeare-char-cpu.yaml", {"data": "input.txt"})
    # nanoGPT's README CPU run: 4 layers, 4 heads, 128 wide, context 64, batch 12, 2,000 steps, no dropout.
    assert (config.n_layer, config.n_head, config.n_embd, config.block_size, config.batch_size, config.max_iters,
            config.dropout) == (4, 4, 128, 64, 12, 2000, 0.0)
    assert (config.pos, config.learning_rate, config.min_lr) == ("rope", 3e-3, 3e-4)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_yaml_loads_and_says_how_to_run_it(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# onecard tinylm train --config configs/tinylm/" + path.name)
    data = {} if "data" in (yaml.safe_load(text) or {}) else {"data": "input.txt"}  # the command gives --data
    load_config(TinyLMConfig, path, data)
