"""The Start page's paths are onecard.recipes' paths: the same keys, titles and extras, a page of the app each."""

from __future__ import annotations

from fastapi.testclient import TestClient

from onecard.core.extras import available
from onecard.recipes import PATHS
from onecard.recipes.paths import path_text
from onecard.web.app import PAGES


def test_start_paths_are_the_recipes_paths(client: TestClient) -> None:
    paths = client.get("/api/start?gpu=4070ti").json()["paths"]
    assert [p["key"] for p in paths] == list(PATHS)
    for p in paths:
        text = path_text(p["key"])
        assert (p["title"], p["extra"]) == (text["title"], text["extra"])
        assert p["page"] in PAGES, p  # a page the app serves
        assert p["installed"] == available(text["module"])
    assert client.get("/api/recipe/paths").json()["paths"][0]["title"] == paths[0]["title"]  # the recipe panel's too
