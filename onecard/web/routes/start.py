"""/ (Start) and /api/start: this machine (`onecard doctor`), what its card runs (`onecard fit`), the guide's paths
(onecard.recipes' paths: their titles, extras, pages and the import that tells an extra is installed).

The recipe part of the page (`onecard recipe`) is filled from /api/recipe.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query

router = APIRouter(prefix="/api/start", tags=["start"])

PROBE_TTL_S = 60.0  # the machine probe imports torch and asks NVML: seconds, not milliseconds; kept a minute
_probe: dict[str, Any] = {}


def machine() -> dict[str, Any]:
    """`onecard doctor`'s report, probed at most once a minute."""
    from onecard.core.doctor import report

    if not _probe or time.monotonic() - _probe["at"] > PROBE_TTL_S:
        _probe.update(at=time.monotonic(), report=report())
    data: dict[str, Any] = _probe["report"]
    return data


@router.get("", summary="This machine, what its card (or the named one) runs, and the guide's paths")
def start(gpu: str | None = Query(None, max_length=64, description="a catalog card instead of the detected one")
          ) -> dict[str, Any]:
    from onecard.core.extras import available
    from onecard.fit.run import can_run
    from onecard.recipes.paths import PATHS, path_text

    data = machine()
    texts = {key: path_text(key) for key in PATHS}
    return {"machine": data, "can_run": can_run(data["gpus"], gpu),
            "paths": [{"key": key, "title": text["title"], "page": text["page"], "extra": text["extra"],
                       "installed": available(text["module"])} for key, text in texts.items()]}
