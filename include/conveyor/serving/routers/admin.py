"""``POST /admin/reload``: check the alias now instead of at the next poll (token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.serving.dependencies import HolderDep, SettingsDep, require_admin

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/reload")
async def reload(holder: HolderDep, serving: SettingsDep) -> JSONResponse:
    """Load the version the alias points to now; 200 with the served version.

    503 if that version cannot be loaded (the previous one keeps serving and is
    reported in ``model``) or no version has the alias.
    """
    result = await run_in_threadpool(holder.check_now)
    model = result.model.info() if result.model is not None else None
    if result.error is not None:
        return JSONResponse({"detail": result.error, "changed": False, "model": model}, 503)
    if model is None:
        return JSONResponse(
            {
                "detail": f"No complete version of {serving.model_name} has alias "
                f"{serving.alias!r}: nothing to serve",
                "changed": False,
                "model": None,
            },
            503,
        )
    return JSONResponse({"changed": result.changed, "model": model})
