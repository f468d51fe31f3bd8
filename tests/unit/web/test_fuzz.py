"""A schema-based fuzz of the core API (schemathesis over the app's OpenAPI): no input gives a 500.

Positive and negative cases (wrong types, out-of-range values, missing fields, other methods) for /api/fit,
/api/fit/solve, /api/runs and /api/start, a bounded number each so the whole fuzz stays under a minute on a 2-core
CPU. Random model names only reach the planner's "unknown model" answer, so a second fuzz draws the model and the
card from the catalogs and every other knob from the schema: the estimators see wild settings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (the test extra)")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from onecard.core.records import start_run  # noqa: E402
from onecard.web.app import create_app  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402

HOME = Path(tempfile.mkdtemp(prefix="onecard-fuzz-"))


class Cfg(BaseModel):
    lr: float


for lr in (0.1, 0.2):  # two runs, so that run ids and files can be found
    with start_run("demo", Cfg(lr=lr), report_to=(), runs_root=HOME / "runs") as run:
        run.log({"train/loss": 1.0}, step=1)

APP = create_app(WebSettings(data_dir=HOME))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/api/(fit|runs|start)")
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
MODELS = ["sdxl", "sd15", "llama-3.1-8b", "qwen2.5-7b", "llava-1.5-7b", "gemma-3-270m", "tinylm-tiny", "yolov8s",
          "yolov8m-seg", "whisper-large-v3", "whisper-tiny"]
CARDS = [None, "4070ti", "rtx-3060", "rtx-4090", "a100-80gb"]


@schema.parametrize()
@FUZZ
def test_no_input_gives_a_500(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])


@pytest.mark.parametrize("path", ["/api/fit", "/api/fit/solve"])
def test_catalog_models_with_any_knobs_give_no_500(path: str) -> None:
    @given(case=schema[path]["POST"].as_strategy(), model=st.sampled_from(MODELS), gpu=st.sampled_from(CARDS))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case, model: str, gpu: str | None) -> None:
        if isinstance(case.body, dict):
            case.body = case.body | {"model": model, "gpu": gpu}
        response = case.call()
        assert response.status_code < 500, (case.body, response.text[:500])

    check()
