"""The demo: a DVC data registry holding scikit-learn's datasets, an MLflow store, an
``AIRFLOW_HOME`` — everything under ``CONVEYOR_HOME`` and nothing downloaded.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from conveyor.settings import Settings
from conveyor_runtime.datasets import DATASETS, DRIFT_FACTOR, DRIFT_FEATURES, dataset_frame

log = logging.getLogger(__name__)


def init_data_registry(
    registry: Path, remote: Path, names: list[str] | None = None
) -> dict[str, str]:
    """Create (or reuse) a DVC registry at ``registry`` with a local remote and publish
    the demo datasets it does not track yet; returns {dataset: commit sha}.

    Idempotent: a dataset the registry already tracks is left at its newest version (one
    ``conveyor demo new-data`` pushed, say), never reset to the original rows.
    """
    from conveyor.data.registry import init_registry, is_tracked, publish_file

    init_registry(registry, str(remote))
    shas: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-demo-") as tmp:
        for name in names or list(DATASETS):
            csv = Path(tmp) / f"{name}.csv"
            if not is_tracked(registry, DATASETS[name]):
                dataset_frame(name).to_csv(csv, index=False)
            shas[name] = publish_file(
                registry, DATASETS[name], csv, message=f"Add {name} dataset", if_absent=True
            )
            log.info("%s at %s", DATASETS[name], shas[name][:10])
    return shas


def init_demo(settings: Settings) -> dict[str, str]:
    """Create the demo's data registry and MLflow store under ``settings.home``.

    Safe to run again (``make demo`` twice): existing data versions, experiments,
    registered models and their aliases (``production``) are kept as they are.
    """
    from conveyor.registry import tracking

    settings.home.mkdir(parents=True, exist_ok=True)
    registry = Path(settings.data_registry)
    shas = init_data_registry(registry, settings.home / "dvc-remote")
    client = tracking.configure(settings)
    for name in DATASETS:
        tracking.ensure_experiment(client, name, settings)
    (settings.home / "airflow").mkdir(parents=True, exist_ok=True)
    return shas


def new_data_version(
    settings: Settings, name: str = "breast_cancer", *, drift: bool = False, seed: int | None = None
) -> tuple[str, str]:
    """Commit and push a new version of a demo dataset; returns (commit sha, md5).

    The new version is the original rows plus a bootstrap sample with small measurement
    noise (a plausible "more data arrived"); with ``drift`` the first ten features are
    shifted by +60 % so drift monitoring has something to find. Ranges stay within the
    pipeline's expectations, so the data still validates.
    """
    import numpy as np
    import pandas as pd

    from conveyor.data.registry import publish_file
    from conveyor.data.source import read_tracked_md5

    rng = np.random.default_rng(seed)
    frame = dataset_frame(name)
    extra = frame.sample(
        n=max(20, len(frame) // 5), replace=True, random_state=int(rng.integers(1 << 31))
    )
    features = [c for c in frame.columns if c != "target"]
    noise = rng.normal(1.0, 0.02, size=(len(extra), len(features)))
    extra[features] = (extra[features] * noise).clip(lower=0)
    new = pd.concat([frame, extra], ignore_index=True)
    if drift:
        shifted = features[:DRIFT_FEATURES]
        new[shifted] = new[shifted] * DRIFT_FACTOR
    with tempfile.TemporaryDirectory(prefix="conveyor-new-data-") as tmp:
        csv = Path(tmp) / f"{name}.csv"
        new.to_csv(csv, index=False)
        label = "drifted " if drift else ""
        sha = publish_file(
            settings.data_registry,
            DATASETS[name],
            csv,
            message=f"New {label}{name} data: {len(new)} rows",
        )
    return sha, read_tracked_md5(settings.data_registry, DATASETS[name], sha)
