"""/api/recipe: the recipe as Markdown and JSON; bad input is a clear 4xx that names the field."""

from __future__ import annotations

from typing import get_args

from fastapi.testclient import TestClient

from onecard.recipes import PATHS
from onecard.recipes.install import OSES
from onecard.web.routes.recipe import Os, RecipePath


def test_the_schema_lists_the_recipe_paths_and_oses() -> None:
    assert get_args(RecipePath) == PATHS and get_args(Os) == OSES


def test_recipe_as_markdown_and_parts(client: TestClient) -> None:
    r = client.get("/api/recipe", params={"path": "qlora", "gpu": "4070ti", "os": "linux"})
    assert r.status_code == 200
    data = r.json()
    assert data["card"]["key"] == "rtx-4070-ti" and data["os"] == "linux"
    assert data["markdown"].startswith("# onecard recipe: ")
    assert "onecard tune train --config qlora.yaml" in data["markdown"]
    assert data["configs"][0]["file"] == "qlora.yaml" and data["configs"][0]["config_class"] == "TuneConfig"
    assert data["configs"][0]["values"]["micro_batch_size"] >= 1
    assert data["oom_ladder"][0]["steps"]


def test_an_unlisted_card_by_its_memory(client: TestClient) -> None:
    data = client.get("/api/recipe", params={"path": "yolo", "vram": 10, "os": "windows"}).json()
    assert data["card"]["key"] == "custom-10gib" and "--vram 10" in data["markdown"]
    assert client.get("/api/recipe", params={"path": "yolo", "vram": -1}).status_code == 422


def test_paths(client: TestClient) -> None:
    data = client.get("/api/recipe/paths").json()
    assert [p["key"] for p in data["paths"]] == list(PATHS)
    assert data["default_os"] in OSES


def test_bad_path_and_os_name_the_field(client: TestClient) -> None:
    r = client.get("/api/recipe", params={"path": "chess"})
    assert r.status_code == 422 and "path" in r.text
    r = client.get("/api/recipe", params={"path": "rag", "os": "beos"})
    assert r.status_code == 422 and "os" in r.text
    assert client.get("/api/recipe").status_code == 422  # path is required


def test_unknown_card_is_a_400_with_the_fix(client: TestClient) -> None:
    r = client.get("/api/recipe", params={"path": "rag", "gpu": "gtx-9999"})
    assert r.status_code == 400
    body = r.json()
    assert "unknown GPU 'gtx-9999'" in body["error"] and "Known cards" in body["fix"]


def test_fuzzed_queries_never_give_a_500(client: TestClient) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    def valid_or_not(*valid: str) -> st.SearchStrategy[str | None]:
        return st.one_of(st.sampled_from(valid), st.none(), st.text(max_size=80))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(path=valid_or_not(*PATHS), gpu=valid_or_not("auto", "4070ti", "h100"), os=valid_or_not(*OSES))
    def check(path: str | None, gpu: str | None, os: str | None) -> None:
        params = {k: v for k, v in (("path", path), ("gpu", gpu), ("os", os)) if v is not None}
        r = client.get("/api/recipe", params=params)
        assert r.status_code < 500, r.text
        assert r.status_code == 200 or "error" in r.json()

    check()
