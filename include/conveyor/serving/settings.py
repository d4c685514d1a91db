"""Settings of one model service process, read once from the environment.

A plain pydantic model with a ``from_env`` constructor, like :class:`conveyor.settings.Settings`
(pydantic-settings is not a declared dependency and would add nothing here). Every
value can be overridden by a keyword argument, which is how ``conveyor serve`` passes
its ``--host`` and ``--port`` options.

================================== ===============================================
variable                           default
================================== ===============================================
``CONVEYOR_SERVE_HOST``            ``127.0.0.1`` (localhost unless configured)
``CONVEYOR_SERVE_PORT``            ``8000``
``CONVEYOR_SERVE_MAX_BODY_BYTES``  ``1048576`` (1 MiB)
``CONVEYOR_SERVE_MAX_BATCH_ROWS``  ``10000``
``CONVEYOR_SERVE_POLL_SECONDS``    ``5.0``
``CONVEYOR_ADMIN_TOKEN``           unset: admin endpoints answer 401
``CONVEYOR_PREDICT_TOKEN``         unset: ``/predict`` needs no token (the demo)
``CONVEYOR_PREDICT_TOKEN_FILE``    a file holding that token instead (a mounted secret)
``CONVEYOR_PREDICTION_LOG_DIR``    ``$CONVEYOR_ARTIFACT_ROOT/predictions/<pipeline>``
================================== ===============================================

With a predict token set, ``POST /predict`` needs ``Authorization: Bearer <token>`` (the
admin token is accepted too, so a deployment's verification keeps working). Tokens are
``SecretStr``: never in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from conveyor.errors import ConfigError
from conveyor.settings import Settings

#: Environment variable of each setting that can come from the environment.
ENV_VARS: dict[str, str] = {
    "host": "CONVEYOR_SERVE_HOST",
    "port": "CONVEYOR_SERVE_PORT",
    "max_body_bytes": "CONVEYOR_SERVE_MAX_BODY_BYTES",
    "max_batch_rows": "CONVEYOR_SERVE_MAX_BATCH_ROWS",
    "poll_seconds": "CONVEYOR_SERVE_POLL_SECONDS",
    "admin_token": "CONVEYOR_ADMIN_TOKEN",
    "predict_token": "CONVEYOR_PREDICT_TOKEN",
    "prediction_log_dir": "CONVEYOR_PREDICTION_LOG_DIR",
}

#: A file holding the predict token (a Docker/Kubernetes secret), instead of the variable.
PREDICT_TOKEN_FILE_ENV = "CONVEYOR_PREDICT_TOKEN_FILE"
#: Settings whose value never appears in an error message.
SECRET_FIELDS = frozenset({"admin_token", "predict_token"})
MIN_TOKEN_CHARS = 16


def _read_token_file(path: str, env: dict[str, str]) -> str:
    """The token in ``path`` (surrounding whitespace removed); errors never show its content."""
    if env.get(ENV_VARS["predict_token"]):
        raise ConfigError(
            f"Both {ENV_VARS['predict_token']} and {PREDICT_TOKEN_FILE_ENV} are set: keep one"
        )
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the predict token file {path} ({PREDICT_TOKEN_FILE_ENV}): "
            f"{exc.strerror or exc}"
        ) from None
    if not token:
        raise ConfigError(f"The predict token file {path} ({PREDICT_TOKEN_FILE_ENV}) is empty")
    return token


class ServingSettings(BaseModel):
    """What one service process serves, where it listens and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="Pipeline name; the registered model of the same name is served.",
    )
    alias: str = Field(default="production", description="Registry alias to serve.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_batch_rows: int = Field(default=10_000, ge=1)
    max_abs_value: float = Field(
        default=1e15,
        gt=0,
        description="Numbers larger than this in magnitude are rejected as input errors "
        "(beyond 2**53 a float64 no longer holds every integer).",
    )
    poll_seconds: float = Field(default=5.0, gt=0)
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of /admin/*; unset disables them."
    )
    predict_token: SecretStr | None = Field(
        default=None,
        description="Bearer token /predict requires (the admin token works too); unset: "
        "/predict is open to whoever reaches the service.",
    )
    prediction_log_dir: str = Field(description="Local directory of the prediction log.")
    log_flush_seconds: float = Field(default=1.0, gt=0)
    log_flush_records: int = Field(default=1000, ge=1)
    log_queue_batches: int = Field(
        default=100_000,
        ge=1,
        description="Requests the log may hold before it drops (and counts) records.",
    )

    @field_validator("predict_token")
    @classmethod
    def _strong_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None:
            value = token.get_secret_value()
            if len(value) < MIN_TOKEN_CHARS or any(c.isspace() for c in value):
                raise ValueError(
                    f"the token must be at least {MIN_TOKEN_CHARS} characters without "
                    "whitespace (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
                )
        return token

    @property
    def model_name(self) -> str:
        """Registered model name in MLflow (the pipeline name)."""
        return self.pipeline

    @classmethod
    def from_env(
        cls,
        pipeline: str,
        *,
        settings: Settings | None = None,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> ServingSettings:
        """Build the settings of the service for ``pipeline``.

        Parameters
        ----------
        pipeline : str
            Pipeline (and registered model) name.
        settings : Settings, optional
            Locations; default ``Settings.from_env(env)``. Supplies the default log dir.
        env : dict, optional
            Environment to read; default ``os.environ``.
        **overrides
            Field values that win over the environment; ``None`` values are ignored, so
            unset command-line options can be passed straight through.

        Raises
        ------
        ConfigError
            Naming the setting (and its environment variable) that has an invalid value.
        """
        env = dict(os.environ if env is None else env)
        settings = settings or Settings.from_env(env)
        values: dict[str, Any] = {
            "pipeline": pipeline,
            "prediction_log_dir": f"{settings.artifact_root.rstrip('/')}/predictions/{pipeline}",
        }
        values.update({field: env[var] for field, var in ENV_VARS.items() if env.get(var)})
        token_file = env.get(PREDICT_TOKEN_FILE_ENV)
        if token_file:
            values["predict_token"] = _read_token_file(token_file, env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "<settings>"
                var = ENV_VARS.get(field)
                where = f" (environment variable {var})" if var else ""
                given = "" if field in SECRET_FIELDS else f"; got {err.get('input')!r}"
                problems.append(f"{field}{where}: {err['msg']}{given}")
            raise ConfigError(
                f"Invalid model service settings for pipeline {pipeline!r}: " + "; ".join(problems)
            ) from None
