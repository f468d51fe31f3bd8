"""/api/vlm: whether the vlm capability is built into this install (the page says so until it is)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from onecard.core.extras import available

__all__ = ["router"]

router = APIRouter(prefix="/api/vlm", tags=["vlm"])


@router.get("/status")
def status() -> dict[str, Any]:
    """`built`: `onecard.vlm` is part of this onecard; `installed`: its extra's libraries are importable."""
    built = available("onecard.vlm")
    installed = built and all(available(m) for m in ("torch", "transformers", "PIL"))
    return {"built": built, "installed": installed,
            "message": None if installed else "not built yet in this install" if not built
            else "not installed: pip install 'onecard[vlm]'"}
