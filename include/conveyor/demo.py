"""The demo: a DVC data registry holding scikit-learn's datasets, an MLflow store, an
``AIRFLOW_HOME`` — everything under ``CONVEYOR_HOME`` and nothing downloaded.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from conveyor.settings import Settings

log = logging.getLogger(__name__)

#: Datasets scikit-learn ships (no download) and where the registry keeps them.
DATASETS = {
    "breast_cancer": "data/breast_cancer.csv",
    "diabetes": "data/diabetes.csv",
}


def dataset_frame(name: str):
    """The named scikit-learn dataset as a DataFrame with a ``target`` column."""
    from sklearn import datasets

    if name == "breast_cancer":
        return datasets.load_breast_cancer(as_frame=True).frame
    if name == "diabetes":
        return datasets.load_diabetes(as_frame=True, scaled=False).frame
    raise KeyError(f"unknown demo dataset {name!r}; known: {sorted(DATASETS)}")


def init_data_registry(
    registry: Path, remote: Path, names: list[str] | None = None
) -> dict[str, str]:
    """Create (or reuse) a DVC registry at ``registry`` with a local remote and publish
    the demo datasets; returns {dataset: commit sha}."""
    from conveyor.data_registry import init_registry, publish_file

    init_registry(registry, str(remote))
    shas: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-demo-") as tmp:
        for name in names or list(DATASETS):
            csv = Path(tmp) / f"{name}.csv"
            dataset_frame(name).to_csv(csv, index=False)
            shas[name] = publish_file(registry, DATASETS[name], csv, message=f"Add {name} dataset")
            log.info("Published %s at %s", DATASETS[name], shas[name][:10])
    return shas


def init_demo(settings: Settings) -> dict[str, str]:
    """Create the demo's data registry and MLflow store under ``settings.home``."""
    from conveyor import tracking

    settings.home.mkdir(parents=True, exist_ok=True)
    registry = Path(settings.data_registry)
    shas = init_data_registry(registry, settings.home / "dvc-remote")
    client = tracking.configure(settings)
    for name in DATASETS:
        tracking.ensure_experiment(client, name, settings)
    (settings.home / "airflow").mkdir(parents=True, exist_ok=True)
    return shas
