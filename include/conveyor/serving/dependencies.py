"""Shared request dependencies: the served model, its settings, holder and log, the token checks.

A service serves one or several models (:class:`ServedModel`). Routes mounted under
``/models/{name}`` act on the model called ``name``; the same routes at the root act on
the service's only model (a service of several answers 404 there, naming the routes).

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in the thread
pool, and the five of ``/predict`` cost ten thread hand-offs per request (a profile of the
service showed them beside the model itself as the largest cost of a one-row request).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import SecretStr

from conveyor.serving.model_holder import ModelHolder
from conveyor.serving.prediction_log import PredictionLog
from conveyor.serving.schema import RequestRejected
from conveyor.serving.settings import ServingSettings


@dataclass(frozen=True)
class ServedModel:
    """One model a service serves: its settings, the holder of its loaded version, its log."""

    serving: ServingSettings
    holder: ModelHolder
    prediction_log: PredictionLog


async def get_served(request: Request) -> ServedModel:
    """The model a request is about: ``{name}`` of ``/models/{name}/...``, else the only one.

    Raises
    ------
    RequestRejected
        404 for a name the service does not serve, or a root route on a service of several.
    """
    models: dict[str, ServedModel] = request.app.state.models
    name = request.path_params.get("name")
    if name is None:
        served = request.app.state.default
        if served is None:
            raise RequestRejected(
                404,
                f"This service serves {len(models)} models: use /models/{{name}}"
                f"{request.url.path} with name one of {sorted(models)}",
            )
        return served
    served = models.get(name)
    if served is None:
        shown = sorted(models)
        listed = shown if len(shown) <= 20 else [*shown[:20], f"... ({len(shown)} in all)"]
        raise RequestRejected(
            404, f"Unknown model {name!r}: this service serves {listed} (GET /models lists them)"
        )
    return served


ServedDep = Annotated[ServedModel, Depends(get_served)]


async def get_serving_settings(served: ServedDep) -> ServingSettings:
    """The served model's settings (set once by :func:`conveyor.serving.app.create_app`)."""
    return served.serving


async def get_holder(served: ServedDep) -> ModelHolder:
    """The model holder; read ``holder.current`` once per request."""
    return served.holder


async def get_prediction_log(served: ServedDep) -> PredictionLog:
    """The prediction log writer."""
    return served.prediction_log


SettingsDep = Annotated[ServingSettings, Depends(get_serving_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
PredictionLogDep = Annotated[PredictionLog, Depends(get_prediction_log)]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def require_admin(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Allow the request only with ``Authorization: Bearer <CONVEYOR_ADMIN_TOKEN>``.

    Compared in constant time; the token is never logged or echoed. Without a
    configured token every admin request is refused.
    """
    admin_token: SecretStr | None = request.app.state.admin_token
    if admin_token is None:
        raise RequestRejected(
            401,
            "Admin endpoints are disabled: set CONVEYOR_ADMIN_TOKEN for the service and restart it",
            headers=_CHALLENGE,
        )
    scheme, _, given = (authorization or "").partition(" ")
    expected = admin_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise RequestRejected(
            401,
            "Missing or wrong admin token: send 'Authorization: Bearer <token>'",
            headers=_CHALLENGE,
        )


def _bearer_matches(authorization: str | None, *tokens: SecretStr | None) -> bool:
    """``Authorization: Bearer <t>`` with ``t`` one of ``tokens`` (constant-time compares)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    given_bytes = given.strip().encode()
    matches = [
        hmac.compare_digest(given_bytes, token.get_secret_value().encode())
        for token in tokens
        if token is not None
    ]
    return any(matches)


async def require_predict_token(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """With ``CONVEYOR_PREDICT_TOKEN`` set, allow ``/predict`` only with that bearer token (or
    the admin token, which deployments verify with); without it, allow every request."""
    predict_token: SecretStr | None = request.app.state.predict_token
    if predict_token is None:
        return
    if not _bearer_matches(authorization, predict_token, request.app.state.admin_token):
        raise RequestRejected(
            401,
            "Missing or wrong token: this service's /predict needs "
            "'Authorization: Bearer <token>' (CONVEYOR_PREDICT_TOKEN)",
            headers=_CHALLENGE,
        )
