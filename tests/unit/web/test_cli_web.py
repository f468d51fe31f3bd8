"""`onecard web`: flags to settings, a token printed for any host but localhost, uvicorn started on the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onecard.cli import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    return seen


def test_localhost_needs_no_token(served: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--port", "8123"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    assert served["app"].state.settings.token is None
    assert "open http://127.0.0.1:8123/\n" in capsys.readouterr().out


def test_another_host_gets_a_printed_token(served: dict[str, Any], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--host", "0.0.0.0", "--folder", str(tmp_path), "--allow-cors", "http://a.example"]) == 0
    settings = served["app"].state.settings
    assert settings.token and settings.folders == (tmp_path.resolve(),) and settings.allow_cors == ("http://a.example",)
    out = capsys.readouterr().out
    assert f"?token={settings.token}" in out and f"token: {settings.token}" in out


def test_a_missing_folder_is_an_error_that_says_so(served: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--folder", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err and not served
