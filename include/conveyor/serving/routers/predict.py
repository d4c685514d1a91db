"""``POST /predict`` (and ``POST /models/{name}/predict``): check a batch of records against
the model and predict."""

from __future__ import annotations

import os
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from conveyor.serving.dependencies import ServedDep, require_predict_token
from conveyor.serving.model_holder import LoadedModel
from conveyor.serving.schema import RequestRejected, parse_records
from conveyor.serving.settings import ServingSettings

router = APIRouter(tags=["predict"])

#: Bodies up to this size (about 170 rows of 30 numbers, ~2 ms of work) are handled on the
#: event loop; larger ones in a worker thread so a 10,000-row batch does not stall
#: /health. Was 16 KiB: a 100-row batch then paid a thread hand-off (and GIL ping-pong
#: with the loop) costing more than its own checks.
INLINE_BODY_BYTES = 128 * 1024

_REQUEST_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["records"],
                    "additionalProperties": False,
                    "properties": {
                        "records": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "description": "column -> value; exactly the model's "
                                "input columns (GET /version lists them)",
                            },
                        }
                    },
                },
                "example": {"records": [{"mean radius": 14.1, "mean texture": 19.3}]},
            }
        },
    }
}


def _predict(
    loaded: LoadedModel, body: bytes, content_type: str | None, serving: ServingSettings
) -> tuple[bytes, dict[str, Any]]:
    records = parse_records(body, content_type=content_type, max_rows=serving.max_batch_rows)
    rows = loaded.schema.check_batch(records, max_abs=serving.max_abs_value)
    try:
        predictions, probabilities = loaded.predictor.predict(rows)
    except (ValueError, TypeError) as exc:
        raise RequestRejected(422, f"The model rejected the input: {exc}") from exc
    ids = new_ids(len(records))
    if probabilities is None:
        out = [{"id": i, "prediction": p} for i, p in zip(ids, predictions, strict=True)]
    else:
        out = [
            {"id": i, "prediction": p, "probabilities": q}
            for i, p, q in zip(ids, predictions, probabilities, strict=True)
        ]
    payload = {"model": {"name": loaded.name, "version": loaded.version}, "predictions": out}
    entry = {
        "model": loaded.name,
        "version": loaded.version,
        "ids": ids,
        "inputs": records,
        "predictions": predictions,
        "probabilities": probabilities,
    }
    return orjson.dumps(payload), entry


def new_ids(n: int) -> list[str]:
    """``n`` random 128-bit ids as 32 hex digits: one ``urandom`` call for the batch
    (``uuid4()`` per row was 5 us each, a sixth of a 100-row request's own work)."""
    text = os.urandom(16 * n).hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


@router.post(
    "/predict", openapi_extra=_REQUEST_SCHEMA, dependencies=[Depends(require_predict_token)]
)
async def predict(request: Request, served: ServedDep) -> Response:
    """Predict a batch: ``{"records": [{column: value, ...}, ...]}``.

    Every prediction gets an id (returned and logged) so labels delivered later can be
    joined to it. Input problems are 4xx responses naming the row and the column.
    """
    serving = served.serving
    loaded = served.holder.current  # one read: this request uses this model to the end
    if loaded is None:
        raise RequestRejected(
            503,
            f"No model to serve: {serving.model_name}@{serving.alias} has no complete "
            "version yet. Train and promote one; the service picks it up within "
            f"{serving.poll_seconds:g} s.",
            headers={"Retry-After": str(max(1, round(serving.poll_seconds)))},
        )
    body = await request.body()
    content_type = request.headers.get("content-type")
    if len(body) <= INLINE_BODY_BYTES:
        content, entry = _predict(loaded, body, content_type, serving)
    else:
        content, entry = await run_in_threadpool(_predict, loaded, body, content_type, serving)
    served.prediction_log.submit(**entry)
    return Response(content, media_type="application/json")
