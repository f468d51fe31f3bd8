"""The app's frame: pages, static files, the Start API, and errors as JSON {"error", "fix"}."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from onecard.web.app import PAGES, create_app


@pytest.mark.parametrize("url", list(PAGES))
def test_every_page_is_served_with_the_shell(client: TestClient, url: str) -> None:
    page = client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/shell.css" in page.text and "/static/shell.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text  # offline: nothing fetched from elsewhere


def test_static_files_are_ours(client: TestClient) -> None:
    for name in ("shell.js", "shell.css", "fit.js", "runs.js", "start.js"):
        got = client.get(f"/static/{name}")
        assert got.status_code == 200 and "https://" not in got.text, name
    assert client.get("/static/../app.py").status_code == 404


def test_start_lists_this_machine_its_card_and_the_paths(client: TestClient) -> None:
    start = client.get("/api/start?gpu=4070ti").json()
    assert start["can_run"]["card"] == "rtx-4070-ti" and start["can_run"]["lines"][0].startswith("NVIDIA GeForce")
    assert {"os", "gpus", "torch", "missing"} <= set(start["machine"])
    assert [p["key"] for p in start["paths"]] == ["rag", "qlora", "yolo", "diffusion", "whisper", "vlm", "tinylm"]
    assert all(p["page"].startswith("/") for p in start["paths"])
    bad = client.get("/api/start?gpu=rtx-9999")
    assert bad.status_code == 400 and "unknown GPU" in bad.json()["error"]


def test_unknown_api_route_is_a_json_404(client: TestClient) -> None:
    got = client.get("/api/nothing-here")
    assert got.status_code == 404 and got.json() == {"error": "Not Found", "fix": None}


def test_an_unexpected_error_is_a_short_500_and_the_server_stays_up() -> None:
    app = create_app()

    @app.get("/api/boom")
    def boom() -> None:
        raise ZeroDivisionError("secret detail")

    client = TestClient(app, raise_server_exceptions=False)
    got = client.get("/api/boom")
    assert got.status_code == 500 and "ZeroDivisionError" in got.json()["error"] and "secret" not in got.text
    assert client.get("/api/fit/cards").status_code == 200


def test_openapi_lists_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/fit", "/api/fit/solve", "/api/runs", "/api/runs/compare", "/api/start"} <= set(paths)
    assert "/fit" not in paths  # pages are not API
