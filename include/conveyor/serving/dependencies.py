"""Shared request dependencies: the settings, the model holder, the log, the admin check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from conveyor.serving.model_holder import ModelHolder
from conveyor.serving.prediction_log import PredictionLog
from conveyor.serving.schema import RequestRejected
from conveyor.serving.settings import ServingSettings


def get_serving_settings(request: Request) -> ServingSettings:
    """The service's settings (set once by :func:`conveyor.serving.app.create_app`)."""
    return request.app.state.serving


def get_holder(request: Request) -> ModelHolder:
    """The model holder; read ``holder.current`` once per request."""
    return request.app.state.holder


def get_prediction_log(request: Request) -> PredictionLog:
    """The prediction log writer."""
    return request.app.state.prediction_log


SettingsDep = Annotated[ServingSettings, Depends(get_serving_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
PredictionLogDep = Annotated[PredictionLog, Depends(get_prediction_log)]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_admin(
    serving: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Allow the request only with ``Authorization: Bearer <CONVEYOR_ADMIN_TOKEN>``.

    Compared in constant time; the token is never logged or echoed. Without a
    configured token every admin request is refused.
    """
    if serving.admin_token is None:
        raise RequestRejected(
            401,
            "Admin endpoints are disabled: set CONVEYOR_ADMIN_TOKEN for the service and restart it",
            headers=_CHALLENGE,
        )
    scheme, _, given = (authorization or "").partition(" ")
    expected = serving.admin_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise RequestRejected(
            401,
            "Missing or wrong admin token: send 'Authorization: Bearer <token>'",
            headers=_CHALLENGE,
        )
