"""The `conveyor` CLI as a user runs it: a real subprocess, real DVC, GX, Airflow's dag.test()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.data.registry import publish_file
from conveyor_runtime.datasets import DATASETS, dataset_frame
from conveyor_runtime.demo import init_data_registry

pytestmark = pytest.mark.e2e

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def conveyor(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [CONVEYOR, *args],
        env={**os.environ, "COLUMNS": "100", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_run_shows_every_broken_expectation_without_verbose(
    airflow_db, demo_registry, tmp_path
):
    """Issue 16: a run stopped by bad data printed only `error  Task failed with exception`;
    the broken expectations appeared only with `conveyor -v` (multi-line log records were
    dropped by the console filter)."""
    registry = tmp_path / "registry"
    init_data_registry(registry, tmp_path / "remote", names=["breast_cancer"])
    bad = dataset_frame("breast_cancer")
    bad["worst area"] = bad["worst area"].astype(object)
    bad.loc[5, "worst area"] = "?"
    bad.loc[7, "target"] = 3
    csv = tmp_path / "bad.csv"
    bad.to_csv(csv, index=False)
    sha = publish_file(registry, DATASETS["breast_cancer"], csv, message="corrupted data")

    done = conveyor("demo", "run", "--data-rev", sha, env={"CONVEYOR_DATA_REGISTRY": str(registry)})
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "Data validation failed: 3 of 96 expectations broken for breast_cancer" in out, (
        out + done.stderr
    )
    for line in (
        "  - expect_column_values_to_be_in_type_list on 'worst area' [type=float]: 1 unexpected",
        "  - expect_column_values_to_be_between on 'worst area' [min_value=0.0, "
        "max_value=12762.0]: could not be evaluated",
        "  - expect_column_values_to_be_in_set on 'target' [value_set=[0, 1]]: 1 unexpected "
        "(0.18%), e.g. [3]",
    ):
        assert out.count(line) == 1, f"{line!r} not shown exactly once:\n{out}"
    # the error line carries the reason; no traceback frames, no duplicate of the list
    assert "error   Task failed with exception: AirflowFailException: ValidationFailed" in out
    assert "Traceback" not in out and 'File "' not in out


def test_models_list_is_readable_at_80_columns(settings):
    """Issue 16: `conveyor models list` was unreadable at 80 columns (the metrics JSON and
    the run id squeezed every column into a few characters a line)."""
    import json

    from conveyor.registry import tracking

    client = tracking.configure(settings)
    name = "listing_demo"
    client.create_registered_model(name)
    metrics = {
        "roc_auc": 0.99612,
        "accuracy": 0.97203,
        "f1": 0.97765,
        "precision": 0.96703,
        "recall": 0.98876,
        "log_loss": 0.08123,
    }
    for i in range(1, 4):
        client.create_model_version(
            name,
            source=f"file:///models/{i}",
            tags={
                "conveyor.complete": "true" if i < 3 else "false",
                "conveyor.data_md5": f"{i}f7e1a0c2b9d4e6f8a1b3c5d7e9f0a2b{i}",
                "conveyor.metrics": json.dumps(metrics),
                "conveyor.run_id": f"manual__2026-11-30T06:4{i}:02.523708+00:00",
            },
        )
    client.set_registered_model_alias(name, "production", "2")
    client.set_registered_model_alias(name, "candidate", "2")

    done = conveyor("models", "list", name, env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    rows = {line.split()[0]: line for line in lines if line.strip()[:1].isdigit()}
    assert set(rows) == {"1", "2", "3"}, done.stdout
    # each version's facts on its one line, unbroken
    assert "production,candidate" in rows["2"]
    assert "1f7e1a0c" in rows["1"] and "roc_auc 0.996" in rows["1"]
    assert "(incomplete)" in rows["3"]


def test_demo_run_gate_override_needs_a_reason():
    """`demo run --gate-override` without --reason is refused before anything runs."""
    done = subprocess.run(
        [sys.executable, "-m", "conveyor_runtime.cli", "demo", "run", "--gate-override"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "--gate-override needs --reason" in done.stdout + done.stderr
    assert "Running train_" not in done.stdout


def test_demo_run_of_a_pipeline_without_its_dag_file_says_how_to_create_it(settings):
    import yaml

    raw = yaml.safe_load(
        (
            Path(__file__).resolve().parents[2] / "include" / "pipelines" / "breast_cancer.yaml"
        ).read_text()
    )
    raw["name"] = "nodag_bc"
    (settings.pipelines_dir / "nodag_bc.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "conveyor_runtime.cli", "demo", "run", "--pipeline", "nodag_bc"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "'nodag_bc' has a YAML but no DAG file" in out
    assert 'build_pipeline_dag("nodag_bc")' in out and "not serialized" not in out
