"""``GET /health`` and ``GET /version`` (at the root and under ``/models/{name}``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from conveyor.serving.dependencies import HolderDep, ServedDep, ServedModel, SettingsDep
from conveyor.serving.schema import RequestRejected

router = APIRouter(tags=["health"])
model_router = APIRouter(tags=["health"])


def model_health(served: ServedModel) -> dict[str, Any]:
    """Health of one served model: loaded or not, versions, last reload error, its log."""
    serving = served.serving
    status = served.holder.status()
    body = {
        "status": "ok" if status["model_loaded"] else "unavailable",
        **status,
        "alias": serving.alias,
        "prediction_log": served.prediction_log.stats(),
    }
    if not status["model_loaded"]:
        body["detail"] = (
            f"No model loaded: waiting for a complete version with alias "
            f"{serving.model_name}@{serving.alias}"
        )
    return body


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 while a model is loaded, 503 before; reports the last reload error.

    A service of several models answers 200 when every one is loaded and lists each
    under ``models`` (``GET /models/{name}/health`` for one).
    """
    default: ServedModel | None = request.app.state.default
    if default is not None:
        body = model_health(default)
        return JSONResponse(body, status_code=200 if body["model_loaded"] else 503)
    models = {name: model_health(m) for name, m in request.app.state.models.items()}
    waiting = sorted(name for name, body in models.items() if not body["model_loaded"])
    out: dict[str, Any] = {
        "status": "unavailable" if waiting else "ok",
        "models_loaded": len(models) - len(waiting),
        "models_total": len(models),
        "models": models,
    }
    if waiting:
        out["detail"] = f"No model loaded yet for {waiting}"
    return JSONResponse(out, status_code=503 if waiting else 200)


@model_router.get("/health")
async def one_model_health(served: ServedDep) -> JSONResponse:
    """200 while this model is loaded, 503 before; reports its last reload error."""
    body = model_health(served)
    return JSONResponse(body, status_code=200 if body["model_loaded"] else 503)


async def _version(holder: HolderDep, serving: SettingsDep) -> JSONResponse:
    loaded = holder.current
    if loaded is None:
        raise RequestRejected(503, f"No model loaded for {serving.model_name}@{serving.alias}")
    return JSONResponse(loaded.info())


@router.get("/version")
async def version(holder: HolderDep, serving: SettingsDep) -> JSONResponse:
    """The served version and its lineage (data md5, code revision, input columns)."""
    return await _version(holder, serving)


@model_router.get("/version")
async def model_version(holder: HolderDep, serving: SettingsDep) -> JSONResponse:
    """This model's served version and its lineage (data md5, code revision, input columns)."""
    return await _version(holder, serving)
