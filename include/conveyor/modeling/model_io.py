"""Saving and loading models in the skops format with one reviewed list of trusted types.

skops refuses to load any type that is not trusted. MLflow reads the trusted list from
the model's own ``MLmodel`` file — so a tampered model could trust anything — and only
loads at all behind ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``. Conveyor instead loads the
``model.skops`` file itself with :data:`SKOPS_TRUSTED_TYPES`, a list that lives in code
and changes only through review. A model that needs a type not on the list is refused
when it is *logged*, with a message naming the type, so the problem shows up at
training time instead of at deployment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from conveyor.errors import RegistryError, TrainingError

log = logging.getLogger(__name__)

#: Non-default types that skops may instantiate when loading our models. Reviewed:
#: each is a plain data holder of scikit-learn or NumPy with no code execution on load.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.tree._tree.Tree",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
)

#: File name MLflow's sklearn flavour uses for a skops-serialised model.
SKOPS_FILE = "model.skops"


def check_serialisable(model: Any) -> None:
    """Fail early if ``model`` needs a skops type outside :data:`SKOPS_TRUSTED_TYPES`."""
    import skops.io as sio

    untrusted = sorted(
        set(sio.get_untrusted_types(data=sio.dumps(model))) - set(SKOPS_TRUSTED_TYPES)
    )
    if untrusted:
        raise TrainingError(
            f"The fitted model uses types skops does not trust: {untrusted}. Review them and, "
            "if they are safe data holders, add them to SKOPS_TRUSTED_TYPES in "
            "include/conveyor/model_io.py; otherwise choose another estimator."
        )


def load_skops_file(path: str | Path) -> Any:
    """Load a ``model.skops`` file with the reviewed trusted types only."""
    import skops.io as sio

    return sio.load(Path(path), trusted=list(SKOPS_TRUSTED_TYPES))


def load_model(model_uri: str, *, dst: str | Path | None = None) -> Any:
    """Download an MLflow sklearn model (``runs:/``, ``models:/``, a path) and load it.

    Raises
    ------
    RegistryError
        If the model cannot be downloaded or is not a skops-serialised sklearn model.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst))
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"Cannot download model {model_uri}: {exc}. Check MLFLOW_TRACKING_URI and that "
            "the version exists (`conveyor models list`)."
        ) from exc
    skops_file = local / SKOPS_FILE
    if not skops_file.is_file():
        raise RegistryError(
            f"Model {model_uri} has no {SKOPS_FILE}: Conveyor only loads models logged in "
            "the skops format (see conveyor.training.log_model)."
        )
    log.info("Loading %s from %s", model_uri, skops_file)
    return load_skops_file(skops_file)
