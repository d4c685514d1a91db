"""``GET /models``: the models this service serves, by name, with their served version."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(request: Request) -> JSONResponse:
    """Every served model: name, alias and the version loaded now (null before one is)."""
    out = []
    for name, served in request.app.state.models.items():
        loaded = served.holder.current
        out.append(
            {
                "name": name,
                "alias": served.serving.alias,
                "version": loaded.version if loaded is not None else None,
                "predict": f"/models/{name}/predict",
            }
        )
    return JSONResponse({"models": out})
