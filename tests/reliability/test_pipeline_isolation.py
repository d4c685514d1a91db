"""Broken pipeline YAMLs and concurrent runs: a fault stays in its own DAG and its own run.

* Every kind of YAML mistake is one import error of *that* pipeline's DAG file in a real
  ``DagBag``; the good pipelines in the same folder keep loading (the unknown-key case on
  its own is in ``tests/dags/test_dag_integrity.py``).
* Two runs of one pipeline: serialized by design (``max_active_runs=1``) and, should a
  deployment raise that limit, isolated (every run and attempt has its own prefix).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from conveyor.artifacts import RunArtifacts

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())


def _unknown_key(raw: dict) -> None:
    raw["split"]["sead"] = 1


def _wrong_type(raw: dict) -> None:
    raw["split"]["test_size"] = "a quarter"


def _metric_for_other_task(raw: dict) -> None:
    raw["metrics"]["thresholds"]["rmse"] = 3.0


def _missing_key(raw: dict) -> None:
    del raw["target"]


def _not_a_mapping(raw: dict) -> None:
    raw.clear()


BROKEN = {
    # pipeline name: (mutation, words the import error must contain)
    "bad_unknown_key": (_unknown_key, "unknown key 'split.sead'"),
    "bad_wrong_type": (_wrong_type, "a quarter"),
    "bad_metric": (_metric_for_other_task, "metric 'rmse' is not defined for task"),
    "bad_missing_key": (_missing_key, "missing required key 'target'"),
    "bad_empty": (_not_a_mapping, "bad_empty.yaml"),
}
GOOD = ("good_alpha", "good_beta")


def test_each_broken_yaml_is_one_import_error_of_its_own_dag_file(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    pipelines, dags = tmp_path / "pipelines", tmp_path / "dags"
    pipelines.mkdir()
    dags.mkdir()
    for name in [*GOOD, *BROKEN]:
        raw = yaml.safe_load(yaml.safe_dump(DEMO)) | {"name": name}
        if name in BROKEN:
            BROKEN[name][0](raw)
        (pipelines / f"{name}.yaml").write_text(yaml.safe_dump(raw) if raw else "")
        (dags / f"{name}.py").write_text(
            "from conveyor_airflow.factory import build_pipeline_dag\n\n"
            f'dag = build_pipeline_dag("{name}")\n'
        )
    (pipelines / "bad_not_yaml.yaml").write_text("name: [unclosed\n  task: : :\n")
    (dags / "bad_not_yaml.py").write_text(
        'from conveyor_airflow.factory import build_pipeline_dag\n\ndag = build_pipeline_dag("bad_not_yaml")\n'
    )
    (dags / "bad_missing_yaml.py").write_text(
        'from conveyor_airflow.factory import build_pipeline_dag\n\ndag = build_pipeline_dag("bad_missing_yaml")\n'
    )
    monkeypatch.setenv("CONVEYOR_PIPELINES_DIR", str(pipelines))

    bag = DagBag(dag_folder=str(dags), bundle_path=dags)

    assert sorted(bag.dag_ids) == [f"train_{name}" for name in GOOD]
    errors = {Path(path).stem: text for path, text in bag.import_errors.items()}
    assert sorted(errors) == sorted([*BROKEN, "bad_not_yaml", "bad_missing_yaml"])
    for name, (_, words) in BROKEN.items():
        assert words in errors[name], errors[name]
        assert f"{name}.yaml" in errors[name], errors[name]  # names the file to fix
        # one clear line from our config loader, not a pydantic dump of every field
        assert "ConfigError" in errors[name] and "For further information" not in errors[name]
    assert "bad_not_yaml.yaml" in errors["bad_not_yaml"]
    assert "new-pipeline" in errors["bad_missing_yaml"]  # how to create it


def test_two_runs_of_one_pipeline_are_serialized_and_their_artifacts_isolated(tmp_path):
    from conveyor_airflow.factory import build_pipeline_dag

    dag = build_pipeline_dag("breast_cancer")
    assert dag.max_active_runs == 1  # a second run queues until the first ends

    # Were the limit raised, two runs (and two attempts of one run) still never share files.
    root = str(tmp_path / "artifacts")
    first = RunArtifacts(root, dag.dag_id, "manual__2026-01-01T00:00:00+00:00")
    second = RunArtifacts(root, dag.dag_id, "asset_triggered__2026-01-01T00:00:00.5+00:00")
    assert first.base_url != second.base_url
    with first.step("train", attempt=1) as a, second.step("train", attempt=1) as b:
        a.write_bytes("model.bin", b"first run")
        b.write_bytes("model.bin", b"second run")
    with first.step("train", attempt=2) as retry:
        retry.write_bytes("model.bin", b"first run, retry")
    assert Path(first.manifest("train")["prefix"], "model.bin").read_bytes() == b"first run, retry"
    assert Path(second.manifest("train")["prefix"], "model.bin").read_bytes() == b"second run"
    assert first.manifest("train")["prefix"].endswith("/train/try-2")
    assert Path(first.url("train", "try-1", "model.bin")).read_bytes() == b"first run"
