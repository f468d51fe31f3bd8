"""Safe by default: the token check, request paths kept inside the registered folders, bounded uploads.

Every route calls these; none copies them.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onecard.web.errors import RequestError, error_body
from onecard.web.settings import WebSettings

__all__ = ["TokenGuard", "safe_path", "save_upload", "new_token", "TOKEN_COOKIE"]

TOKEN_COOKIE = "onecard_token"


def new_token() -> str:
    """A token for a server that listens beyond localhost and was given none."""
    return secrets.token_urlsafe(24)


class TokenGuard:
    """ASGI middleware: when a token is set, every request must carry it.

    Accepted as `Authorization: Bearer T`, as `?token=T` (a page opened from the printed link; the answer then sets
    a cookie so the page's own requests carry it), or as that cookie.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        from_query = request.query_params.get("token")
        given = auth[7:] if auth.lower().startswith("bearer ") else from_query or request.cookies.get(TOKEN_COOKIE)
        if not given or not secrets.compare_digest(given.encode(), self.token.encode()):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # policy violation
            else:
                await refused(request)(scope, receive, send)
            return
        if from_query is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def refused(request: Request) -> Any:
    what = "this onecard server needs its token"
    fix = "send `Authorization: Bearer TOKEN`, or open the page as /?token=TOKEN (the token `onecard web` printed)"
    path = request.url.path
    if path.startswith(("/api", "/v1", "/static", "/openapi.json")):
        return JSONResponse(error_body(what, fix), status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return HTMLResponse(f"<!doctype html><title>onecard: token needed</title><p>{what}.</p><p>{fix}.</p>",
                        status_code=401)


def safe_path(requested: str | os.PathLike[str], folders: Sequence[Path], where: str = "the registered folders",
              fix: str = "name a file inside a registered folder, or register its folder with --folder") -> Path:
    """The real path a request names, if it lies inside one of `folders`; else a 400/403 `RequestError`.

    Refused: any `..` component, an absolute path outside the folders, a symlink that leads out of them. A relative
    path is taken inside the folders (the first one where it exists, else the first folder). `folders` are the
    registered folders (`settings.folders`), or one run's directory for its artifacts; `where` and `fix` word the
    refusal for them.
    """
    text = os.fspath(requested)
    if not text or "\x00" in text:
        raise RequestError(400, f"path {text!r} is empty or holds a NUL byte", "name a file inside a registered folder")
    path = Path(text)
    if ".." in path.parts:
        raise RequestError(400, f"path {text!r} contains '..'", "name the file without '..'")
    if not folders:
        raise RequestError(403, f"path {text!r} refused: no folder is registered",
                           "restart with `onecard web --folder DIR` to let the app read DIR")
    candidates = [path] if path.is_absolute() else [Path(f) / path for f in folders]
    inside = [real for real in (c.resolve() for c in candidates) if any(within(real, f) for f in folders)]
    if inside:
        try:
            return next((p for p in inside if p.exists()), inside[0])
        except OSError as e:  # a name the file system cannot hold (ENAMETOOLONG)
            raise RequestError(400, f"path {text[:60]!r}... cannot be looked up: {e.strerror}",
                               "name a file inside a registered folder") from None
    names = ", ".join(str(f) for f in folders)
    lexical = any(within(Path(os.path.abspath(c)), Path(f)) for c in candidates for f in folders)
    what = (f"path {text!r} is a symlink that leads out of {where} ({names})" if lexical
            else f"path {text!r} is outside {where} ({names})")
    raise RequestError(403, what, fix)


def within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


async def save_upload(upload: UploadFile, settings: WebSettings) -> Path:
    """Save an upload to the data directory under a generated name; over the size limit is a 413."""
    limit = int(settings.upload_limit_mib * 2**20)
    suffix = Path(upload.filename or "").suffix
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,12}", suffix):
        suffix = ""
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    dest = settings.uploads_dir / f"{uuid.uuid4().hex}{suffix.lower()}"
    size = 0
    with dest.open("wb") as out:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                dest.unlink()
                raise RequestError(413, f"upload {upload.filename!r} is over the {settings.upload_limit_mib:g} MiB "
                                        "limit", "send a smaller file, or restart with a larger --upload-limit-mib")
            out.write(chunk)
    return dest
