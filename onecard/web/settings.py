"""What one `onecard web` server is started with: where it listens, its token, the folders requests may read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from onecard.core.paths import data_dir

__all__ = ["WebSettings", "LOCALHOSTS"]

LOCALHOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class WebSettings:
    """Settings of the web app, kept on `app.state.settings`.

    Attributes:
        host: interface uvicorn binds to; anything but localhost needs a token (the CLI enforces it).
        port: TCP port.
        token: when set, every page, /api and /v1 request must carry it; None: no check (localhost only).
        data_dir: onecard's data directory (run records, indexes, uploads).
        folders: the folders the user registered with --folder: the only places a request path may point into.
        upload_limit_mib: largest upload accepted.
        allow_cors: origins allowed by CORS; empty: CORS off.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    data_dir: Path = field(default_factory=data_dir)
    folders: tuple[Path, ...] = ()
    upload_limit_mib: float = 512.0
    allow_cors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Resolved once, so every containment check compares real paths.
        object.__setattr__(self, "folders", tuple(Path(f).expanduser().resolve() for f in self.folders))
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())

    @property
    def runs_dir(self) -> Path:
        """Where run records live (onecard.core.paths.runs_dir for this data directory)."""
        return self.data_dir / "runs"

    @property
    def uploads_dir(self) -> Path:
        """Where uploads are saved, under generated names."""
        return self.data_dir / "uploads"
