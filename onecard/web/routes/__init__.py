"""One module per area, each exposing `router = fastapi.APIRouter()`; app.py includes those in ROUTER_MODULES."""
