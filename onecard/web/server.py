"""`onecard web`: check the settings (a token beyond localhost, folders that exist), print the address, serve."""

from __future__ import annotations

from dataclasses import replace

from onecard.core.errors import ConfigError
from onecard.core.extras import require
from onecard.web.security import new_token
from onecard.web.settings import LOCALHOSTS, WebSettings

__all__ = ["prepare", "serve"]


def prepare(settings: WebSettings) -> WebSettings:
    """The settings to serve with: a generated token when the host is not localhost and none was given.

    Raises:
        ConfigError: a --folder that is not a directory.
    """
    for folder in settings.folders:
        if not folder.is_dir():
            raise ConfigError(f"--folder {folder} is not a directory", "name a folder that exists")
    if settings.host not in LOCALHOSTS and not settings.token:
        settings = replace(settings, token=new_token())
    return settings


def address(settings: WebSettings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}/" + (f"?token={settings.token}" if settings.token else "")


def serve(settings: WebSettings) -> None:
    """Serve the app with uvicorn until Ctrl-C."""
    uvicorn = require("uvicorn", "web")
    require("fastapi", "web")
    from onecard.web.app import create_app

    settings = prepare(settings)
    print(f"onecard web: open {address(settings)}", flush=True)
    if settings.token:
        print(f"token: {settings.token} (pages: ?token=...; API: Authorization: Bearer ...)", flush=True)
    if settings.folders:
        print("folders the app may read: " + ", ".join(str(f) for f in settings.folders), flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
