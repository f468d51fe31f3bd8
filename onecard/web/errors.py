"""How errors leave the web app: every one as JSON `{"error": what, "fix": how}`, never a stack trace.

onecard's own errors (`OnecardError`, which say what went wrong and the fix) become a 4xx, or a 501 for a capability
whose extra is not installed (its fix the pip line); a request that does not validate a 422 naming the field; anything
unexpected is logged and answered with a short 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from onecard.core.errors import ConfigError, DataError, MissingExtraError, ModelNotFoundError, OnecardError

__all__ = ["RequestError", "install_error_handlers", "error_body"]

log = logging.getLogger("onecard.web")

# The status of each kind of onecard error; any other OnecardError is a 400. A missing extra is 501 Not Implemented:
# "the server does not support the functionality required to fulfill the request" (RFC 9110, 15.6.2): the request is
# sound and this install lacks the capability until `pip install 'onecard[EXTRA]'` (its fix) is run. Not a 4xx, which
# would blame the request; not 503, which says the same request will succeed after a while on its own; not 424,
# which (WebDAV, RFC 4918) is about an earlier action that failed. Every route raises MissingExtraError for it
# (`core.extras.require`, `routes.jobs.installed_kind`), so this is the one place the status is chosen.
STATUS = {ModelNotFoundError: 404, MissingExtraError: 501, ConfigError: 400, DataError: 400}


class RequestError(OnecardError):
    """An error about the request itself, with its HTTP status (403 for a path outside the folders, 413...)."""

    def __init__(self, status_code: int, what: str, fix: str | None = None) -> None:
        super().__init__(what, fix)
        self.status_code = status_code


def error_body(what: str, fix: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON every error answers with."""
    return {"error": what, "fix": fix, **extra}


def status_of(exc: OnecardError) -> int:
    if isinstance(exc, RequestError):
        return exc.status_code
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "seq")` -> `seq`; `("query", "status")` -> `status` (query); nested keys joined by dots."""
    parts = [str(p) for p in loc]
    where = parts[0] if parts and parts[0] in ("body", "query", "path", "header", "cookie") else ""
    name = ".".join(parts[1:] if where else parts) or where
    return name if where in ("", "body") else f"{name} ({where})"


async def onecard_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OnecardError)
    return JSONResponse(error_body(exc.what, exc.fix), status_code=status_of(exc))


JSON_FIX = "send the body as a UTF-8 JSON object with Content-Type: application/json"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [{"field": field_name(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()) and kind != "application/json":
        return JSONResponse(error_body(f"invalid request: the body is not JSON (Content-Type: {kind or 'none'})",
                                       JSON_FIX, fields=fields), status_code=422)
    what = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "the request is not valid"
    return JSONResponse(error_body(f"invalid request: {what}", "correct the named field(s) and send again",
                                   fields=fields), status_code=422)


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    fix = JSON_FIX if exc.status_code == 400 and "parsing the body" in str(exc.detail) else None
    return JSONResponse(error_body(str(exc.detail), fix), status_code=exc.status_code, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body(f"internal error ({type(exc).__name__}); the server is still up",
                                   "see the server's log for the traceback, and report it"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on the app."""
    app.add_exception_handler(OnecardError, onecard_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
