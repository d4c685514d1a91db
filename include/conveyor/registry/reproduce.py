"""Reproduce a registered model version from its lineage and compare the metrics.

Everything comes from what the version recorded, nothing from today's files: the data
registry, path and git commit (``conveyor.data_*`` tags), the pipeline config the run
logged (``conveyor/pipeline.yaml`` in its MLflow run, so a YAML edited since does not
matter) and, inside that config, the split seed and estimator parameters. The data is
fetched with DVC at that commit and checked against the recorded md5; the model is trained
and scored exactly as the pipeline does (same parquet round trip, same split, same
functions). Nothing is logged or registered: reproducing is read-only.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import DataError, RegistryError
from conveyor.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Reproduction:
    """Registered vs reproduced metrics of one version."""

    name: str
    version: str
    data_git_sha: str
    data_md5: str
    registered: dict[str, float]
    reproduced: dict[str, float]

    @property
    def differences(self) -> dict[str, float]:
        """Absolute difference per metric recorded at registration."""
        return {
            k: abs(self.reproduced.get(k, float("nan")) - v) for k, v in self.registered.items()
        }

    @property
    def identical(self) -> bool:
        """Whether every registered metric came out exactly the same."""
        return all(self.reproduced.get(k) == v for k, v in self.registered.items())


def reproduce(settings: Settings, name: str, version: str) -> Reproduction:
    """Retrain ``name`` v``version`` from its recorded lineage and score it again.

    Raises
    ------
    RegistryError
        If the version or its lineage (data tags, logged config) is missing.
    DataError
        If the recorded data cannot be fetched or its md5 differs from the recorded one.
    """
    import json

    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from conveyor.config import PipelineConfig
    from conveyor.data.source import fetch
    from conveyor.data.splits import split_frame
    from conveyor.modeling.evaluation import compute_metrics
    from conveyor.modeling.training import train_model
    from conveyor.registry import tracking
    from conveyor.validation.expectations import read_dataset

    client = tracking.configure(settings)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} v{version} is not in the registry: {exc}") from exc
    tags = mv.tags
    needed = [
        "conveyor.data_repo",
        "conveyor.data_path",
        "conveyor.data_git_sha",
        "conveyor.data_md5",
    ]
    missing = [t for t in needed if not tags.get(t)]
    if missing or not mv.run_id:
        raise RegistryError(
            f"{name} v{version} lacks lineage {missing or ['run id']}: it was not registered "
            "by a Conveyor pipeline, so it cannot be reproduced"
        )
    try:
        raw = yaml.safe_load(
            mlflow.artifacts.load_text(f"runs:/{mv.run_id}/conveyor/pipeline.yaml")
        )
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"{name} v{version}: the run's logged config is missing: {exc}"
        ) from exc
    config = PipelineConfig.model_validate(raw)
    sha, md5 = tags["conveyor.data_git_sha"], tags["conveyor.data_md5"]
    with tempfile.TemporaryDirectory(prefix="conveyor-reproduce-") as tmp:
        snapshot = fetch(tags["conveyor.data_repo"], tags["conveyor.data_path"], sha, tmp)
        if snapshot.md5 != md5:
            raise DataError(
                f"Data of {name} v{version} changed: md5 {snapshot.md5} at {sha}, recorded {md5}"
            )
        # the same parquet round trip as the validation task's snapshot
        parquet = Path(tmp) / "snapshot.parquet"
        read_dataset(snapshot.local_path, config.data.format).to_parquet(parquet, index=False)
        frame = pd.read_parquet(parquet)
    train, test = split_frame(frame, config)
    log.info("Retraining %s v%s on %d rows at %s", name, version, len(train), sha[:10])
    result = train_model(train, config)
    reproduced = compute_metrics(result.model, test, config)
    registered: dict[str, Any] = json.loads(tags.get("conveyor.metrics") or "{}")
    return Reproduction(
        name=name,
        version=str(version),
        data_git_sha=sha,
        data_md5=md5,
        registered={k: float(v) for k, v in registered.items()},
        reproduced=reproduced,
    )
