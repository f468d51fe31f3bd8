"""/ (Start) and /api/start: this machine (`onecard doctor`), what its card runs (`onecard fit`), the guide's paths.

The recipe part of the page (`onecard recipe`) is filled from /api/recipe.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query

router = APIRouter(prefix="/api/start", tags=["start"])

# The guide's paths: recipe key, title, the page that runs it, the capability's module and the import it needs.
PATHS = (
    ("rag", "An assistant over your notes and code", "/rag", "faiss", "rag"),
    ("qlora", "QLoRA fine-tune of an LLM on your data", "/jobs", "peft", "tune"),
    ("yolo", "A YOLO detector on your labelled images", "/detect", "ultralytics", "detect"),
    ("diffusion", "A Stable Diffusion LoRA in your style", "/diffuse", "diffusers", "diffuse"),
    ("whisper", "Transcripts of your meetings", "/asr", "faster_whisper", "asr"),
    ("vlm", "An image chat demo and a light QLoRA", "/vlm", "transformers", "vlm"),
    ("tinylm", "A small Transformer trained from scratch", "/jobs", "torch", "tinylm"),
)
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

    data = machine()
    return {"machine": data, "can_run": can_run(data["gpus"], gpu),
            "paths": [{"key": key, "title": title, "page": page, "extra": extra, "installed": available(module)}
                      for key, title, page, module, extra in PATHS]}
