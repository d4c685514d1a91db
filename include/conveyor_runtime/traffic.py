"""Demo traffic: realistic requests to a running model service, drifted on demand.

Rows are drawn (with replacement) from the scikit-learn dataset the demo trains on, with
a little measurement noise; ``drift=True`` shifts the same features by the same factor as
``conveyor demo new-data --drift``, so the monitoring DAG has a real shift to find.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from conveyor_runtime.datasets import DRIFT_FACTOR, DRIFT_FEATURES, dataset_frame

log = logging.getLogger(__name__)


def traffic_rows(
    dataset: str, rows: int, *, drift: bool = False, seed: int = 0
) -> list[dict[str, Any]]:
    """``rows`` feature records for the demo ``dataset`` (no target column)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    frame = dataset_frame(dataset)
    features = [c for c in frame.columns if c != "target"]
    sample = frame[features].sample(n=rows, replace=True, random_state=int(rng.integers(1 << 31)))
    sample = (sample * rng.normal(1.0, 0.01, size=sample.shape)).clip(lower=0)
    if drift:
        shifted = features[:DRIFT_FEATURES]
        sample[shifted] = sample[shifted] * DRIFT_FACTOR
    return sample.to_dict(orient="records")


def send_traffic(
    url: str,
    dataset: str,
    rows: int,
    *,
    drift: bool = False,
    batch_size: int = 20,
    seed: int = 0,
    timeout: float = 30.0,
    progress: Any = None,
) -> dict[str, int]:
    """POST ``rows`` records to ``{url}/predict`` in batches; returns counts.

    Raises
    ------
    ConnectionError
        When no service answers at ``url`` (with the command that starts one).
    """
    import httpx

    records = traffic_rows(dataset, rows, drift=drift, seed=seed)
    sent = failed = 0
    # A service that requires a predict token (CONVEYOR_PREDICT_TOKEN) gets the same one.
    token = os.environ.get("CONVEYOR_PREDICT_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers) as client:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            try:
                response = client.post("/predict", json={"records": batch})
            except httpx.TransportError as exc:
                raise ConnectionError(
                    f"No model service answers at {url} ({exc}): start it with "
                    f"`conveyor serve --pipeline {dataset}` or `make demo`"
                ) from exc
            if response.status_code == 200:
                sent += len(batch)
            else:
                failed += len(batch)
                log.warning("HTTP %s: %s", response.status_code, response.text[:300])
            if progress is not None:
                progress(len(batch))
    return {"sent": sent, "failed": failed, "drift": int(drift)}
