"""Assemble the model service: routers, the body limit, error handlers and the lifespan.

A service serves one model (``conveyor serve --pipeline NAME``) or several (``--pipeline a
--pipeline b``). Every per-model route exists under ``/models/{name}`` (``POST
/models/{name}/predict``, ``GET /models/{name}/version``, ``POST
/models/{name}/admin/reload``, ``GET /models/{name}/health``); the same routes at the
root act on the only model of a one-model service, as they always did. ``GET /models``
lists what is served; ``GET /health`` reports every model.

On start-up the service loads the version each alias points to (or serves 503 for that
model until there is one), starts polling the aliases and starts the prediction log
writers; on shutdown it stops polling and writes every queued prediction before exiting.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.errors import ConfigError
from conveyor.serving.dependencies import ServedModel
from conveyor.serving.middleware import BodySizeLimit
from conveyor.serving.model_holder import HolderGroup, ModelHolder
from conveyor.serving.prediction_log import PredictionLog
from conveyor.serving.routers import admin, health, models, predict
from conveyor.serving.schema import RequestRejected
from conveyor.serving.settings import ServingSettings
from conveyor.settings import Settings, disable_telemetry

log = logging.getLogger(__name__)

#: Prefix of the per-model routes.
MODEL_PREFIX = "/models/{name}"


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    return JSONResponse(exc.payload(), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal error in the model service; see its log"}, 500)


async def _model_name(
    name: Annotated[str, Path(description="Pipeline (registered model) name")],
) -> None:
    """Declares ``{name}`` of the per-model routes (resolved by ``get_served``)."""


def _log_for(serving: ServingSettings, *, shared_process: bool) -> PredictionLog:
    return PredictionLog(
        serving.prediction_log_dir,
        flush_seconds=serving.log_flush_seconds,
        flush_records=serving.log_flush_records,
        max_queued=serving.log_queue_batches,
        # Several logs of one process may share a directory (CONVEYOR_PREDICTION_LOG_DIR).
        part_tag=serving.pipeline if shared_process else None,
    )


def create_app(
    serving_settings: ServingSettings | Sequence[ServingSettings],
    settings: Settings | None = None,
    *,
    holder: ModelHolder | None = None,
    prediction_log: PredictionLog | None = None,
) -> FastAPI:
    """The FastAPI app serving ``serving_settings.pipeline`` (or each of several).

    Parameters
    ----------
    serving_settings : ServingSettings or sequence of ServingSettings
        What to serve and the service's limits: one per model, distinct pipelines, the
        same host, port and tokens (they are the service's).
    settings : Settings, optional
        MLflow and pipeline locations; default ``Settings.from_env()``.
    holder, prediction_log : optional
        Replacements for tests (one-model services only); by default built from the settings.

    Raises
    ------
    ConfigError
        No model, a pipeline listed twice, or models that disagree on the service's tokens.
    """
    disable_telemetry()
    settings = settings or Settings.from_env()
    many = list(serving_settings) if not isinstance(serving_settings, ServingSettings) else None
    all_serving = many if many is not None else [serving_settings]
    if not all_serving:
        raise ConfigError("The model service needs at least one pipeline to serve")
    names = [s.pipeline for s in all_serving]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"Pipelines listed more than once: {twice}; list each once")
    first = all_serving[0]
    for other in all_serving[1:]:
        if (other.admin_token, other.predict_token) != (first.admin_token, first.predict_token):
            raise ConfigError(
                "Every model of one service must have the same admin and predict tokens"
            )
    single = len(all_serving) == 1
    if not single and (holder is not None or prediction_log is not None):
        raise ConfigError("holder and prediction_log replace those of a one-model service only")
    served: dict[str, ServedModel] = {}
    for serving in all_serving:
        served[serving.pipeline] = ServedModel(
            serving=serving,
            holder=(holder if single and holder else ModelHolder(serving, settings)),
            prediction_log=(
                prediction_log
                if single and prediction_log
                else _log_for(serving, shared_process=not single)
            ),
        )
    group = None if single else HolderGroup([m.holder for m in served.values()])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for model in served.values():
            model.prediction_log.start()
        for model in served.values():
            serving = model.serving
            result = await run_in_threadpool(model.holder.check_now)
            if result.model is None:
                log.warning(
                    "No model to serve yet for %s@%s%s; its /predict answers 503 and the "
                    "alias is polled every %g s",
                    serving.model_name,
                    serving.alias,
                    f" ({result.error})" if result.error else "",
                    serving.poll_seconds,
                )
        if group is None:
            next(iter(served.values())).holder.start()
        else:
            group.start()
        # Everything alive now (MLflow, scikit-learn, pandas, the models: ~200k objects)
        # lives as long as the process: keep it out of the garbage collector's full
        # passes, which took ~200 ms each and landed on whichever request triggered them.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if group is None:
                next(iter(served.values())).holder.stop()
            else:
                group.stop()
            for model in served.values():
                model.prediction_log.close()

    summary = (
        f"Serves {first.model_name}@{first.alias}"
        if single
        else f"Serves {len(served)} models by name under /models/{{name}}"
    )
    app = FastAPI(title="Conveyor model service", summary=summary, lifespan=lifespan)
    app.state.models = served
    app.state.default = next(iter(served.values())) if single else None
    app.state.admin_token = first.admin_token
    app.state.predict_token = first.predict_token
    app.state.settings = settings
    if single:  # what a one-model service always exposed
        only = next(iter(served.values()))
        app.state.serving = only.serving
        app.state.holder = only.holder
        app.state.prediction_log = only.prediction_log
    # Body limit: the service's (the first model's; from the same environment).
    app.add_middleware(BodySizeLimit, max_bytes=max(s.max_body_bytes for s in all_serving))
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(models.router)
    per_model = [Depends(_model_name)]
    app.include_router(predict.router, prefix=MODEL_PREFIX, dependencies=per_model)
    app.include_router(health.model_router, prefix=MODEL_PREFIX, dependencies=per_model)
    app.include_router(admin.router, prefix=MODEL_PREFIX, dependencies=per_model)
    return app
