"""The model service: FastAPI app serving ``models:/NAME@production`` with hot reload.

Start it with ``conveyor serve --pipeline NAME`` (or ``python -m conveyor.serving.server``).
Routes: ``POST /predict``, ``GET /health``, ``GET /version``, ``POST /admin/reload``, and
each of them under ``/models/{name}``; ``GET /models``. One process can serve several
models by name (``--pipeline a --pipeline b``).
Layout: :mod:`.settings` (ServingSettings), :mod:`.schema` (request parsing and checks),
:mod:`.predictor` (fast predictions), :mod:`.model_holder` (loading and atomic swaps),
:mod:`.prediction_log` (JSONL log and its reader), :mod:`.dependencies`, :mod:`.routers`,
:mod:`.app` (``create_app``), :mod:`.server` (``main``).

Importing this package is light (no FastAPI, MLflow or scikit-learn): the names below
load their module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.serving.app import create_app
    from conveyor.serving.prediction_log import read_prediction_log
    from conveyor.serving.settings import ServingSettings

__all__ = ["ServingSettings", "create_app", "read_prediction_log"]

_WHERE = {
    "ServingSettings": "conveyor.serving.settings",
    "create_app": "conveyor.serving.app",
    "read_prediction_log": "conveyor.serving.prediction_log",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'conveyor.serving' has no attribute {name!r}")
