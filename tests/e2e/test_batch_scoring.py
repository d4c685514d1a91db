"""Batch scoring end to end: the ``score_scored_bc`` DAG through ``dag.test()`` with a real
DVC registry, MLflow store and production model; then 1M rows in a separate process with
its peak RSS measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.data.registry import publish_file
from conveyor.data.source import fetch, read_tracked_md5
from conveyor.registry import tracking
from conveyor.registry.models import PRODUCTION, version_by_alias
from conveyor.scoring.runs import find_records
from conveyor_runtime.datasets import dataset_frame

pytestmark = pytest.mark.e2e

NAME = "scored_bc"
INPUT = "data/scored_bc_input.csv"
OUTPUT = "scores/scored_bc.parquet"


def ensure_production(client) -> str:
    """Train scored_bc once per session (dag.test); the version production points to."""
    from conveyor_airflow.factory import build_pipeline_dag

    current = version_by_alias(client, NAME, PRODUCTION)
    if current is None:
        build_pipeline_dag(NAME).test()
        current = version_by_alias(client, NAME, PRODUCTION)
    assert current is not None, "training scored_bc did not reach production"
    return str(current.version)


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings):
    client = tracking.configure(settings)
    return settings, client, ensure_production(client)


def input_frame(rows: int, seed: int) -> pd.DataFrame:
    frame = dataset_frame("breast_cancer").drop(columns=["target"])
    sample = frame.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    sample.insert(0, "customer_id", [f"c{seed}-{i:06d}" for i in range(rows)])
    return sample


def publish_input(settings, tmp_path: Path, frame: pd.DataFrame, label: str) -> str:
    path = tmp_path / f"{label}.csv"
    frame.to_csv(path, index=False)
    return publish_file(settings.data_registry, INPUT, path, message=f"Scoring input: {label}")


def run_scoring(**conf):
    from conveyor_airflow.scoring_dag import build_score_dag

    dag_run = build_score_dag(NAME).test(run_conf=conf)
    ti = dag_run.get_task_instance("score")
    return dag_run, str(getattr(ti.state, "value", ti.state))


def test_new_input_version_is_scored_into_a_dvc_version_with_lineage(env, tmp_path, capsys):
    settings, _, version = env
    publish_input(settings, tmp_path, input_frame(300, seed=1), "first")
    frame = input_frame(1234, seed=2)
    sha = publish_input(settings, tmp_path, frame, "second")
    input_md5 = read_tracked_md5(settings.data_registry, INPUT, sha)

    dag_run, state = run_scoring(input_rev=sha)
    assert state == "success"
    [record] = find_records(settings.artifact_root, NAME, input_md5=input_md5)
    assert record.run_id == dag_run.run_id
    assert record.model_version == version
    assert record.input["git_sha"] == sha and record.input_source == "param"
    assert record.rows == 1234
    # the output is a new DVC version whose md5 is the recorded one
    out = record.output
    assert out["path"] == OUTPUT
    assert read_tracked_md5(settings.data_registry, OUTPUT, out["git_sha"]) == out["md5"]
    local = fetch(settings.data_registry, OUTPUT, out["git_sha"], tmp_path / "out")
    scores = pd.read_parquet(local.local_path)
    assert list(scores.columns) == ["customer_id", "prediction", "proba_0", "proba_1"]
    assert scores["customer_id"].tolist() == frame["customer_id"].tolist()
    assert np.allclose(scores["proba_0"] + scores["proba_1"], 1.0)
    # predictions equal the production model's own on the same rows
    from conveyor.modeling.model_io import load_model

    model = load_model(f"models:/{NAME}/{version}")
    expected = model.predict(frame.drop(columns=["customer_id"]))
    assert (scores["prediction"].to_numpy() == expected).all()
    # lineage the other way: the output md5 leads back to model version and input md5
    [back] = find_records(settings.artifact_root, NAME, output_md5=out["md5"])
    assert (back.model_version, back.input["md5"]) == (version, input_md5)
    # ... and the CLI shows it with the version's lineage
    from conveyor_runtime.cli import main as cli

    assert cli(["models", "lineage", NAME, version]) == 0
    shown = capsys.readouterr().out
    assert f"scored: {INPUT}@{sha[:12]} (md5 {input_md5})" in shown
    assert out["md5"] in shown
    # idempotent per (dag_id, run_id): the same run scores nothing again
    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.scoring.runs import score_with_production

    config = load_pipeline_config(pipeline_path(NAME, settings.pipelines_dir))
    again = score_with_production(config, settings, dag_id=dag_run.dag_id, run_id=dag_run.run_id)
    assert again.output == record.output
    assert len(find_records(settings.artifact_root, NAME, input_md5=input_md5)) == 1


def test_corrupted_input_stops_before_scoring(env, tmp_path, caplog):
    settings, _, _ = env
    frame = input_frame(500, seed=3)
    frame["mean radius"] = frame["mean radius"].astype(object)
    frame.loc[321, "mean radius"] = "?"
    frame.loc[400, "worst area"] = np.nan
    sha = publish_input(settings, tmp_path, frame, "corrupt")
    before = len(find_records(settings.artifact_root, NAME))
    head = read_tracked_md5(settings.data_registry, OUTPUT, "HEAD")

    _, state = run_scoring(input_rev=sha)
    assert state == "failed"
    assert len(find_records(settings.artifact_root, NAME)) == before
    assert read_tracked_md5(settings.data_registry, OUTPUT, "HEAD") == head  # no new output
    text = caplog.text
    assert "does not match the input schema of scored_bc" in text
    assert "row 321, column 'mean radius': expected a number, got string '?'" in text
    assert "row 400, column 'worst area': null is not allowed" in text
    assert "Nothing was scored" in text


RSS_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.INFO)
    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.scoring.runs import score_with_production
    from conveyor.settings import Settings

    settings = Settings.from_env()
    config = load_pipeline_config(pipeline_path("scored_bc", settings.pipelines_dir))
    config = config.model_copy(update={"scoring": config.scoring.model_copy(update={
        "input": config.scoring.input.model_copy(update={"path": sys.argv[1], "format": "parquet"}),
        "output": "artifacts", "probabilities": True})})
    record = score_with_production(config, settings, dag_id="rss_test", run_id=sys.argv[2])
    print(json.dumps(record.to_dict()))
    """
)


def test_a_million_rows_score_within_1gb_peak_rss(env, tmp_path):
    """The whole scoring step (MLflow model load, DVC fetch, schema check, chunked scoring,
    output) in its own process: its peak RSS stays under 1 GB at 1M rows x 30 features."""
    settings, _, version = env
    rows = 1_000_000
    base = dataset_frame("breast_cancer").drop(columns=["target"])
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(base), rows)
    data = {c: base[c].to_numpy()[idx] for c in base.columns}
    table = pd.DataFrame({"customer_id": np.arange(rows, dtype=np.int64), **data})
    big = tmp_path / "big.parquet"
    table.to_parquet(big, index=False, row_group_size=100_000)
    del table, data
    rel = "data/scored_bc_1m.parquet"
    publish_file(settings.data_registry, rel, big, message="1M-row scoring input")
    big.unlink()

    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, rel, f"rss-{os.getpid()}"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print("\n".join(line for line in proc.stderr.splitlines() if "peak RSS" in line))
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["rows"] == rows and record["model_version"] == version
    print(
        f"1M rows: {record['rows_per_second']:,.0f} rows/s scoring, "
        f"peak RSS {record['peak_rss_mb']:.0f} MB"
    )
    assert record["peak_rss_mb"] <= 1024, record
