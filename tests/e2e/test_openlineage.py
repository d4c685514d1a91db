"""OpenLineage as a consumer (Marquez, DataHub) receives it: a training run through
``dag.test()`` with Airflow's openlineage provider and its HTTP transport pointed at a local
HTTP receiver; every event parsed into openlineage-python's ``RunEvent`` model; then the graph
a consumer draws: DVC file -> pull -> copy -> validate -> snapshot -> train -> model ->
register -> model version -> deploy, with the md5, assertions, version and alias facets.

The run happens in a child process: the provider decides once per process whether lineage is
on (a transport is configured), and this session's other dag.test() runs have it off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conveyor.registry import tracking
from conveyor.registry.models import PRODUCTION, version_by_alias
from conveyor_airflow.lineage import artifact_dataset_id, registry_namespace, safe_uri

pytestmark = pytest.mark.e2e

PIPELINE = "lineage_bc"
DAG_ID = f"train_{PIPELINE}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def lineage_receiver():
    """An HTTP server on loopback that keeps every JSON body POSTed to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def parse_run_event(raw: dict[str, Any]):
    """One event as openlineage-python's model (its validators check time, run id, URLs)."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )

    def datasets(cls, items, extra_key):
        return [
            cls(
                namespace=d["namespace"],
                name=d["name"],
                facets=d.get("facets") or {},
                **{extra_key: d.get(extra_key) or {}},
            )
            for d in items or []
        ]

    return RunEvent(
        eventType=RunState(raw["eventType"]),
        eventTime=raw["eventTime"],
        producer=raw["producer"],
        run=Run(runId=raw["run"]["runId"], facets=raw["run"].get("facets") or {}),
        job=Job(
            namespace=raw["job"]["namespace"],
            name=raw["job"]["name"],
            facets=raw["job"].get("facets") or {},
        ),
        inputs=datasets(InputDataset, raw.get("inputs"), "inputFacets"),
        outputs=datasets(OutputDataset, raw.get("outputs"), "outputFacets"),
    )


def facet(cls, raw: dict[str, Any]):
    """A facet's JSON as its openlineage-python class (``_producer``/``_schemaURL`` dropped)."""
    return cls(**{k: v for k, v in raw.items() if not k.startswith("_")})


def ids(datasets) -> set[tuple[str, str]]:
    return {(d.namespace, d.name) for d in datasets}


def test_training_run_lineage_graph(airflow_db, demo_registry, settings, lineage_receiver):
    from openlineage.client.facet_v2 import (
        data_quality_assertions_dataset as dq,
    )
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        schema_dataset,
    )

    port = lineage_receiver.server_address[1]
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "http", "url": f"http://127.0.0.1:{port}", "endpoint": "api/v1/lineage"}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "conveyor_test",
    }
    code = (
        "from conveyor_airflow.factory import build_pipeline_dag\n"
        f"run = build_pipeline_dag({PIPELINE!r}).test()\n"
        "print('RUN_STATE', run.state)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert "RUN_STATE success" in out.stdout, out.stdout[-3000:] + out.stderr[-5000:]

    assert {path for path, _ in lineage_receiver.received} == {"/api/v1/lineage"}
    events = [parse_run_event(body) for _, body in lineage_receiver.received]
    complete = {
        e.job.name.removeprefix(f"{DAG_ID}."): e
        for e in events
        if e.eventType.value == "COMPLETE" and e.job.name.startswith(f"{DAG_ID}.")
    }
    assert {"pull_data", "validate_data", "train_model", "register_model", "deploy_model"} <= set(
        complete
    ), sorted(e.job.name + ":" + e.eventType.value for e in events)

    client = tracking.configure(settings)
    version = version_by_alias(client, PIPELINE, PRODUCTION)
    assert version is not None
    tags = version.tags

    # DVC file (registry, path) with commit and md5 -> pull_data -> the artifact copy
    pull = complete["pull_data"]
    [dvc] = pull.inputs
    assert (dvc.namespace, dvc.name) == (
        registry_namespace(settings.data_registry),
        "data/breast_cancer.csv",
    )
    assert dvc.facets["conveyor_dvc"]["md5"] == tags["conveyor.data_md5"]
    assert dvc.facets["conveyor_dvc"]["commit"] == tags["conveyor.data_git_sha"]
    md5 = facet(dataset_version_dataset.DatasetVersionDatasetFacet, dvc.facets["version"])
    assert md5.datasetVersion == tags["conveyor.data_md5"]
    [copy] = pull.outputs
    assert copy.namespace == "file" and copy.name.startswith(settings.artifact_root)

    # the copy -> validate_data (every expectation, pass/fail; schema) -> the snapshot
    validate = complete["validate_data"]
    [checked] = validate.inputs
    assert ids([checked]) == ids([copy])
    assertions = facet(
        dq.DataQualityAssertionsDatasetFacet, checked.inputFacets["dataQualityAssertions"]
    )
    assertions.assertions = [facet(dq.Assertion, a) for a in assertions.assertions]
    validation = json.loads(tags["conveyor.validation"])
    assert len(assertions.assertions) == validation["evaluated"] > 30
    assert all(a.success for a in assertions.assertions)
    assert any(
        a.assertion == "expect_column_values_to_be_between" and a.column == "mean radius"
        for a in assertions.assertions
    )
    schema = facet(schema_dataset.SchemaDatasetFacet, checked.facets["schema"])
    assert [f["name"] for f in schema.fields][-1] == "target"
    [snapshot] = validate.outputs

    # the snapshot -> train_model -> the MLflow run's model (params)
    train = complete["train_model"]
    assert ids(train.inputs) == ids([snapshot])
    [model] = train.outputs
    assert model.namespace == safe_uri(settings.mlflow_tracking_uri)
    assert model.facets["conveyor_model"]["mlflowRunId"] == tags["conveyor.mlflow_run_id"]
    assert model.facets["conveyor_model"]["params"]

    # the model -> register_model -> models:/lineage_bc/<version> (version, metrics)
    register = complete["register_model"]
    assert ids(register.inputs) == ids([model])
    [registered] = register.outputs
    assert (registered.namespace, registered.name) == (
        safe_uri(settings.mlflow_tracking_uri),
        f"models:/{PIPELINE}/{version.version}",
    )
    version_facet = facet(
        dataset_version_dataset.DatasetVersionDatasetFacet, registered.facets["version"]
    )
    assert version_facet.datasetVersion == str(version.version)
    assert registered.facets["conveyor_model"]["metrics"]["roc_auc"] > 0.9

    # the model version -> deploy_model, with the alias move as a run facet
    deploy = complete["deploy_model"]
    assert ids(deploy.inputs) == ids([registered])
    move = deploy.run.facets["conveyor_alias_move"]
    assert move["action"] == "deploy" and move["alias"] == "production"
    assert (move["toVersion"], move["moved"]) == (str(version.version), True)

    # every task event is linked to the DAG run (the consumer's job hierarchy)
    assert all(e.run.facets["parent"]["job"]["name"] == DAG_ID for e in complete.values())
    assert artifact_dataset_id("s3://bucket/a/b.csv") == ("s3://bucket", "a/b.csv")
