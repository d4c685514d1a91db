"""``GET /health`` and ``GET /version``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from conveyor.serving.dependencies import HolderDep, PredictionLogDep, SettingsDep
from conveyor.serving.schema import RequestRejected

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(
    holder: HolderDep, prediction_log: PredictionLogDep, serving: SettingsDep
) -> JSONResponse:
    """200 while a model is loaded, 503 before; reports the last reload error."""
    status = holder.status()
    body = {
        "status": "ok" if status["model_loaded"] else "unavailable",
        **status,
        "alias": serving.alias,
        "prediction_log": prediction_log.stats(),
    }
    if not status["model_loaded"]:
        body["detail"] = (
            f"No model loaded: waiting for a complete version with alias "
            f"{serving.model_name}@{serving.alias}"
        )
    return JSONResponse(body, status_code=200 if status["model_loaded"] else 503)


@router.get("/version")
async def version(holder: HolderDep, serving: SettingsDep) -> JSONResponse:
    """The served version and its lineage (data md5, code revision, input columns)."""
    loaded = holder.current
    if loaded is None:
        raise RequestRejected(503, f"No model loaded for {serving.model_name}@{serving.alias}")
    return JSONResponse(loaded.info())
