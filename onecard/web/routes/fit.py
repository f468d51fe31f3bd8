"""/api/fit: placeholder until built."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/fit", tags=["fit"])
