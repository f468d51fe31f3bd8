"""Every shipped rag YAML validates against its config and starts with the command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.core.config import load_config
from onecard.core.errors import ConfigError
from onecard.rag.config import AskConfig, EvalConfig, IndexConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs" / "rag").glob("*.yaml"))
MODEL = {"index": IndexConfig, "eval": EvalConfig, "ask": AskConfig, "chat": AskConfig}


def test_each_command_that_takes_a_config_has_one_shipped() -> None:
    commands = {path.read_text().split()[3] for path in CONFIGS}  # "# onecard rag COMMAND --config ..."
    assert {"index", "ask", "eval"} <= commands  # chat takes ask's config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# onecard rag ") and f"--config configs/rag/{path.name}" in first
    load_config(MODEL[first.split()[3]], path)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="chunk_token"):
        load_config(IndexConfig, overrides={"chunk_token": 100})


def test_fusion_defaults_to_convex_with_the_development_alpha_and_alpha_is_bounded() -> None:
    from onecard.rag.config import SearchConfig

    config = load_config(SearchConfig, overrides={"query": "q"})
    assert (config.fusion, config.alpha) == ("convex", "auto")
    assert load_config(SearchConfig, overrides={"query": "q", "fusion": "rrf", "alpha": "0.3"}).alpha == 0.3
    assert load_config(EvalConfig, overrides={"fusion": "rrf"}).fusion == "rrf"
    with pytest.raises(ConfigError, match="alpha"):
        load_config(AskConfig, overrides={"alpha": 1.5})
    with pytest.raises(ConfigError, match="fusion"):
        load_config(AskConfig, overrides={"fusion": "max"})
