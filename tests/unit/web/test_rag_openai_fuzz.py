"""A schema-based fuzz of the RAG and OpenAI-compatible API (schemathesis over the app's OpenAPI): no input gives a
500. /api/chat is left out: a valid body with the default model generates a reply of up to max_tokens, too slow to
draw by the dozen on a CPU; its bad inputs are in test_chat_api.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (the test extra)")

from hypothesis import HealthCheck, settings  # noqa: E402

from onecard.web.app import create_app  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402

HOME = Path(tempfile.mkdtemp(prefix="onecard-fuzz-rag-"))
FOLDER = HOME / "notes"
FOLDER.mkdir()  # empty: an index built by the fuzz holds nothing, so searching it loads no model
APP = create_app(WebSettings(data_dir=HOME, folders=(FOLDER,)))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/(api/rag|v1)/")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_input_gives_a_500(case: schemathesis.Case) -> None:
    if case.path == "/api/rag/ask" and isinstance(case.body, dict):
        case.body["name"] = "nothing"  # the fields are validated; an answer would load the chat model
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])
