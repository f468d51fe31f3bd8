"""The web app: `create_app(settings)` builds the FastAPI app, its routers, pages, static files and guards.

Each area's router is a module under `onecard.web.routes` exposing `router = fastapi.APIRouter()`, listed in
`ROUTER_MODULES`. Pages are plain HTML files in `static/`: `/fit` serves `static/fit.html`; a page whose file is
not there yet says so. The JSON API is under /api/<area>/, the OpenAI-compatible one under /v1.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from onecard import __version__
from onecard.web.errors import install_error_handlers
from onecard.web.security import TokenGuard
from onecard.web.settings import WebSettings

__all__ = ["create_app", "ROUTER_MODULES", "PAGES", "STATIC"]

ROUTER_MODULES: tuple[str, ...] = ("start", "fit", "runs", "chat", "jobs", "rag", "openai", "recipe", "detect", "asr",
                                  "diffuse", "vlm")

# URL -> page file in static/ (without .html), in the nav bar's order (shell.js holds the same list).
PAGES = {"/": "start", "/fit": "fit", "/chat": "chat", "/rag": "rag", "/runs": "runs", "/jobs": "jobs",
         "/detect": "detect", "/asr": "asr", "/diffuse": "diffuse", "/vlm": "vlm"}

STATIC = Path(__file__).parent / "static"

NOT_BUILT = """<!doctype html><html><head><meta charset="utf-8"><title>onecard: {name}</title>
<link rel="stylesheet" href="/static/shell.css"><script src="/static/shell.js" defer></script></head>
<body><main><h1>{name}</h1><p class="muted">This page is not built in this version of onecard.</p></main></body></html>
"""


def create_app(settings: WebSettings | None = None) -> FastAPI:
    """The app for these settings (defaults: localhost, no token, no registered folder)."""
    settings = settings or WebSettings()
    app = FastAPI(title="onecard", version=__version__,
                  description="Real AI projects on one consumer GPU: the JSON API behind the pages.")
    app.state.settings = settings
    install_error_handlers(app)
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(f"onecard.web.routes.{name}").router)
    for url, name in PAGES.items():
        app.add_api_route(url, page_route(name), methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.token:
        app.add_middleware(TokenGuard, token=settings.token)  # checked before every route
    if settings.allow_cors:
        from fastapi.middleware.cors import CORSMiddleware

        # outermost: a browser's CORS preflight never carries the token, so CORS answers it (for the allowed origins
        # only; it reaches no route), and a refusal of the token still carries the CORS headers the page reads
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.allow_cors), allow_methods=["*"],
                           allow_headers=["*"])
    return app


def page_route(name: str):  # type: ignore[no-untyped-def]
    def page() -> HTMLResponse:
        file = STATIC / f"{name}.html"
        if file.is_file():
            return HTMLResponse(file.read_text(encoding="utf-8"))
        return HTMLResponse(NOT_BUILT.format(name=name))

    page.__name__ = f"{name}_page"
    return page
