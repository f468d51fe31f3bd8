"""/api/start: placeholder until built."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/start", tags=["start"])
