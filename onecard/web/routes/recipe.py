"""/api/recipe: `onecard recipe` for the Start page, as Markdown and as its parts (JSON)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

router = APIRouter(prefix="/api/recipe", tags=["recipe"])

# onecard.recipes.PATHS and onecard.recipes.install.OSES, spelled out for the schema (a test keeps them equal)
RecipePath = Literal["rag", "qlora", "yolo", "diffusion", "whisper", "vlm", "tinylm"]
Os = Literal["linux", "windows", "macos"]


@router.get("", summary="A path's recipe for a card and an OS: install, commands, fitted configs, troubleshooting")
def recipe(path: Annotated[RecipePath, Query(description="the project")],
           gpu: Annotated[str, Query(max_length=64, description="a catalog card (4070ti...) or auto")] = "auto",
           os: Annotated[Os | None, Query(description="the OS to install on; None: the server's")] = None,
           vram: Annotated[float | None, Query(gt=0, le=1024, description="an unlisted card's memory in GiB, "
                                                                          "instead of gpu")] = None
           ) -> dict[str, Any]:
    from onecard.recipes import build, render

    built = build(path, gpu, os, vram)
    return {**built.to_json(), "markdown": render(built)}


@router.get("/paths", summary="The recipe paths with their titles, the OSes, and the server's OS")
def paths() -> dict[str, Any]:
    from onecard.recipes.install import OSES
    from onecard.recipes.paths import PATHS, path_text
    from onecard.recipes.recipe import this_os

    return {"paths": [{"key": p, "title": path_text(p)["title"], "extra": path_text(p)["extra"]} for p in PATHS],
            "oses": list(OSES), "default_os": this_os()}
