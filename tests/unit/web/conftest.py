"""Web API tests: FastAPI's test client over an app whose data directory is the test's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'onecard[web]'")

from fastapi.testclient import TestClient  # noqa: E402

from onecard.web.app import create_app  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402


@pytest.fixture
def make_client(onecard_home: Path) -> Callable[..., TestClient]:
    """make_client(**settings): a test client of an app over the test's data directory."""

    def make(**settings: Any) -> TestClient:
        return TestClient(create_app(WebSettings(data_dir=onecard_home, **settings)))

    return make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A registered folder: a small corpus (about 13 k characters, lines opening with the tinylm recipe's sample
    prompt, ROMEO:) and a corpus too short to train on."""
    data = tmp_path / "texts"
    data.mkdir()
    line = "ROMEO: To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n"
    (data / "corpus.txt").write_text(line * 140, encoding="utf-8")
    (data / "short.txt").write_text("abc", encoding="utf-8")
    return data
