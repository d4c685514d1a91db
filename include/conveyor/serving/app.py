"""Assemble the model service: routers, the body limit, error handlers and the lifespan.

On start-up the service loads the version the alias points to (or serves 503 until
there is one), starts polling the alias and starts the prediction log writer; on
shutdown it stops polling and writes every queued prediction before exiting.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.serving.middleware import BodySizeLimit
from conveyor.serving.model_holder import ModelHolder
from conveyor.serving.prediction_log import PredictionLog
from conveyor.serving.routers import admin, health, predict
from conveyor.serving.schema import RequestRejected
from conveyor.serving.settings import ServingSettings
from conveyor.settings import Settings, disable_telemetry

log = logging.getLogger(__name__)


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    return JSONResponse(exc.payload(), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal error in the model service; see its log"}, 500)


def create_app(
    serving_settings: ServingSettings,
    settings: Settings | None = None,
    *,
    holder: ModelHolder | None = None,
    prediction_log: PredictionLog | None = None,
) -> FastAPI:
    """The FastAPI app serving ``serving_settings.pipeline``.

    Parameters
    ----------
    serving_settings : ServingSettings
        What to serve and the service's limits.
    settings : Settings, optional
        MLflow and pipeline locations; default ``Settings.from_env()``.
    holder, prediction_log : optional
        Replacements for tests; by default built from the settings.
    """
    disable_telemetry()
    settings = settings or Settings.from_env()
    holder = holder or ModelHolder(serving_settings, settings)
    prediction_log = prediction_log or PredictionLog(
        serving_settings.prediction_log_dir,
        flush_seconds=serving_settings.log_flush_seconds,
        flush_records=serving_settings.log_flush_records,
        max_queued=serving_settings.log_queue_batches,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prediction_log.start()
        result = await run_in_threadpool(holder.check_now)
        if result.model is None:
            log.warning(
                "No model to serve yet for %s@%s%s; /predict answers 503 and the alias is "
                "polled every %g s",
                serving_settings.model_name,
                serving_settings.alias,
                f" ({result.error})" if result.error else "",
                serving_settings.poll_seconds,
            )
        holder.start()
        try:
            yield
        finally:
            holder.stop()
            prediction_log.close()

    app = FastAPI(
        title="Conveyor model service",
        summary=f"Serves {serving_settings.model_name}@{serving_settings.alias}",
        lifespan=lifespan,
    )
    app.state.serving = serving_settings
    app.state.settings = settings
    app.state.holder = holder
    app.state.prediction_log = prediction_log
    app.add_middleware(BodySizeLimit, max_bytes=serving_settings.max_body_bytes)
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    return app
