"""Shared request dependencies: the settings, the model holder, the log, the token checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import SecretStr

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


def require_predict_token(
    serving: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """With ``CONVEYOR_PREDICT_TOKEN`` set, allow ``/predict`` only with that bearer token (or
    the admin token, which deployments verify with); without it, allow every request."""
    if serving.predict_token is None:
        return
    if not _bearer_matches(authorization, serving.predict_token, serving.admin_token):
        raise RequestRejected(
            401,
            "Missing or wrong token: this service's /predict needs "
            "'Authorization: Bearer <token>' (CONVEYOR_PREDICT_TOKEN)",
            headers=_CHALLENGE,
        )
