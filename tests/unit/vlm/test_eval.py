"""`onecard vlm eval`: base against tuned on the synthetic shapes set (answers, loss, the HTML report), and a model
against another on the same rows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")
pytest.importorskip("trl")
pytest.importorskip("PIL")

from onecard.core.errors import ModelNotFoundError, OnecardError  # noqa: E402
from onecard.vlm.config import EvalConfig  # noqa: E402
from onecard.vlm.evaluate import ANSWERS, evaluate  # noqa: E402
from onecard.vlm.synthetic import write_splits  # noqa: E402
from onecard.vlm.tiny import make_tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    written: dict[str, Path] = write_splits(tmp_path_factory.mktemp("shapes"), 30, 8, 0)
    return written


def _report_rows(path: Path) -> list[str]:
    return re.findall(r"<tr><td><img src=\"data:image/jpeg;base64,[A-Za-z0-9+/=]+\"", path.read_text())


def test_a_model_against_another_base(splits: dict[str, Path], tmp_path: Path) -> None:
    one, other = make_tiny_llava(tmp_path / "seed0"), make_tiny_llava(tmp_path / "seed1", seed=1)
    config = EvalConfig(target=str(one), base=str(other), data=str(splits["dev"]), max_rows=4, max_new_tokens=3,
                        show=3)
    result = evaluate(config, str(tmp_path / "runs"))
    assert result["rows"] == 4 and set(result) >= {"base", "model", "report", "run_id"}
    assert result["base"]["loss"] != result["model"]["loss"]  # two different random models, the same rows
    for name in ("base", "model"):
        assert set(result[name]) == {"exact_match", "token_f1", "loss", "perplexity"}
    rows = [json.loads(line) for line in (Path(result["dir"]) / ANSWERS).read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"line", "images", "question", "reference", "base", "model"}
    assert len(_report_rows(Path(result["report"]))) == 3  # `show` rows, each image inlined
    record = json.loads((Path(result["dir"]) / "run.json").read_text())
    assert record["metrics"]["model_loss"] == result["model"]["loss"] and record["compared"]["base"] == str(other)


def test_a_model_needs_data_and_an_unknown_target_is_named(tmp_path: Path) -> None:
    with pytest.raises(OnecardError, match="is a model, not a tune run"):
        evaluate(EvalConfig(target="tiny"), str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="neither a vlm tune run"):
        evaluate(EvalConfig(target="no-such-run-or-model", data="dev.jsonl"), str(tmp_path))


@pytest.mark.slow
def test_after_a_short_tune_tuned_beats_base(splits: dict[str, Path], tmp_path: Path) -> None:
    from onecard.vlm import run
    from onecard.vlm.config import TuneConfig

    # 90 rows, 40 steps of 8 at 3e-3 (about 3.5 epochs): a minute or two on a 2-core CPU
    config = TuneConfig(model="tiny", data=str(splits["train"]), dev_data=str(splits["dev"]), max_steps=40,
                        learning_rate=3e-3, batch_size=8, save_steps=1000)
    tuned = run.tune(config, str(tmp_path), ())
    result: dict[str, Any] = evaluate(EvalConfig(target=tuned.id, max_new_tokens=4), str(tmp_path))
    assert result["data"] == str(tuned.dir / "dev.jsonl") and result["rows"] == 24  # the run's own dev rows
    base, after = result["base"], result["tuned"]
    assert after["loss"] < base["loss"] - 0.5  # nats per answer token
    assert after["token_f1"] > base["token_f1"]
    html = Path(result["report"]).read_text()
    assert "<th>base</th><th>tuned</th>" in html and len(_report_rows(Path(result["report"]))) == 8
