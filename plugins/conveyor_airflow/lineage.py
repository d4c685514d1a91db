"""OpenLineage for Conveyor's operators: what each step read and wrote, as datasets and facets.

Airflow's ``openlineage`` provider emits a START/COMPLETE/FAIL event for every task; it asks
an operator for its inputs, outputs and facets by calling
``get_openlineage_facets_on_complete(task_instance)`` (``..._on_failure`` when the task
failed). :class:`OpenLineageMixin` gives every Conveyor operator those two methods; the
builders below turn the step's result (kept on the operator by ``execute``, else read back
from XCom) into openlineage-python's dataset and facet classes:

======================== =========================================== ==================================
step                     inputs                                      outputs / run facets
======================== =========================================== ==================================
resolve_inputs           DVC file (registry, path) + commit/md5      run: ``conveyor_trigger`` (reason)
pull_data                DVC file + ``conveyor_dvc`` + ``version``   the artifact copy
validate_data            the copy + ``dataQualityAssertions``,       the Parquet snapshot + ``schema``
                         ``schema``
train_model              the snapshot                                the MLflow run's model + params
evaluate_model / gate    the trained model                           run: metrics / gate decision
register_model           the trained model                           ``models:/<name>/<version>`` +
                                                                     ``version``, ``conveyor_model``
deploy / rollback        ``models:/<name>/<version>``                run: ``conveyor_alias_move``
======================== =========================================== ==================================

Naming (OpenLineage's dataset naming): a DVC file is namespace = the registry's git URL
(``file://<path>`` for a local registry), name = the file's path in it; an artifact is
namespace ``file`` (local) or ``s3://<bucket>`` with its path; a model is namespace = the
MLflow tracking URI (credentials removed), name = ``models:/<name>/<version>``.

Nothing here runs unless the provider is installed *and* configured (a transport): only the
provider calls these methods, so lineage is off by default, like Airflow's own integration.
The ``openlineage`` imports happen inside the builders, never at DAG parse time.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

log = logging.getLogger(__name__)

#: Where the JSON schemas of Conveyor's custom facets would live (not served: consumers keep
#: custom facets as opaque JSON; the URL only names them).
FACET_SCHEMA_BASE = "https://conveyor-mlops.invalid/spec/facets/1-0-0"


class OpenLineageMixin:
    """``get_openlineage_facets_on_complete`` / ``_on_failure`` for Conveyor operators.

    The step's result is read from ``self.conveyor_result`` (set by ``execute``) or, when
    the provider hands a different operator object, from the task's XCom.
    """

    #: The dict ``run()`` returned (kept for lineage; XCom holds the same).
    conveyor_result: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        return build_lineage(self, task_instance, failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        return build_lineage(self, task_instance, failed=True)


# -- facets of our own (openlineage-python's base classes; serialized by its Serde) --------


def _facet_classes() -> dict[str, type]:
    """Conveyor's custom facet classes, defined on first use (openlineage is optional)."""
    if _FACETS:
        return _FACETS
    import attr
    from openlineage.client.facet_v2 import DatasetFacet, RunFacet

    @attr.define
    class ConveyorDvcDatasetFacet(DatasetFacet):
        """A DVC-tracked file at one registry commit."""

        repo: str
        path: str
        rev: str | None = attr.field(default=None)
        commit: str | None = attr.field(default=None)
        md5: str | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACET_SCHEMA_BASE}/ConveyorDvcDatasetFacet.json"

    @attr.define
    class ConveyorModelDatasetFacet(DatasetFacet):
        """An MLflow model (a logged model or a registered version) and how it was made."""

        name: str | None = attr.field(default=None)
        version: str | None = attr.field(default=None)
        mlflowRunId: str | None = attr.field(default=None)
        params: dict[str, Any] = attr.field(factory=dict)
        metrics: dict[str, Any] = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACET_SCHEMA_BASE}/ConveyorModelDatasetFacet.json"

    @attr.define
    class ConveyorAliasMoveRunFacet(RunFacet):
        """A move (or a refused move) of a registered model's ``production`` alias."""

        action: str
        model: str
        alias: str
        fromVersion: str | None = attr.field(default=None)
        toVersion: str | None = attr.field(default=None)
        moved: bool = attr.field(default=False)
        verified: bool = attr.field(default=False)
        verification: str | None = attr.field(default=None)
        reason: str | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACET_SCHEMA_BASE}/ConveyorAliasMoveRunFacet.json"

    @attr.define
    class ConveyorTriggerRunFacet(RunFacet):
        """Why this training run started and which inputs it pinned."""

        revSource: str | None = attr.field(default=None)
        triggerReason: str | None = attr.field(default=None)
        codeRev: str | None = attr.field(default=None)
        cacheKey: str | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACET_SCHEMA_BASE}/ConveyorTriggerRunFacet.json"

    @attr.define
    class ConveyorStepRunFacet(RunFacet):
        """A step's verdict: evaluation metrics or the gate's decision."""

        step: str
        passed: bool | None = attr.field(default=None)
        reasons: list[str] = attr.field(factory=list)
        metrics: dict[str, Any] = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACET_SCHEMA_BASE}/ConveyorStepRunFacet.json"

    _FACETS.update(
        dvc=ConveyorDvcDatasetFacet,
        model=ConveyorModelDatasetFacet,
        alias=ConveyorAliasMoveRunFacet,
        trigger=ConveyorTriggerRunFacet,
        step=ConveyorStepRunFacet,
    )
    return _FACETS


_FACETS: dict[str, type] = {}


# -- dataset names ------------------------------------------------------------------------


def safe_uri(uri: str) -> str:
    """``uri`` without user/password (a tracking URI may carry them)."""
    parts = urlsplit(uri)
    if not parts.scheme or "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def registry_namespace(repo: str) -> str:
    """The DVC registry as a namespace: its git URL, or ``file://<absolute path>``."""
    if "://" in repo or (":" in repo and "@" in repo.split(":", 1)[0]):  # URL or git@host:x
        return safe_uri(repo)
    return f"file://{os.path.abspath(repo)}"


def artifact_dataset_id(uri: str) -> tuple[str, str]:
    """(namespace, name) of an artifact URL: ``file`` + path, or ``scheme://bucket`` + key."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", os.path.abspath(parts.path if parts.scheme else uri)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}", parts.path.lstrip("/")


def model_version_name(name: str, version: Any) -> str:
    return f"models:/{name}/{version}"


# -- builders ---------------------------------------------------------------------------------


def _result(task: Any, task_instance: Any) -> dict[str, Any]:
    result = getattr(task, "conveyor_result", None)
    if isinstance(result, dict):
        return result
    try:
        pulled = task_instance.xcom_pull(task_ids=task.task_id)
    except Exception:  # no XCom (failed task, older Airflow): report what is known
        pulled = None
    return pulled if isinstance(pulled, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tracking_uri(task: Any) -> str:
    return safe_uri(str(task.settings.mlflow_tracking_uri))


def _dvc_dataset(task: Any, source: dict[str, Any], cls: type) -> Any:
    facets = _facet_classes()
    from openlineage.client.facet_v2 import dataset_version_dataset

    repo = source.get("repo") or task.config.data.repo or task.settings.data_registry
    path = source.get("path") or task.config.data.path
    ds_facets: dict[str, Any] = {
        "conveyor_dvc": facets["dvc"](
            repo=safe_uri(str(repo)),
            path=str(path),
            rev=source.get("rev"),
            commit=source.get("git_sha"),
            md5=source.get("md5"),
        )
    }
    if source.get("md5"):
        ds_facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(source["md5"])
        )
    return cls(namespace=registry_namespace(str(repo)), name=str(path), facets=ds_facets)


def _artifact(uri: str | None, cls: type, **kwargs: Any) -> list[Any]:
    if not uri:
        return []
    namespace, name = artifact_dataset_id(str(uri))
    return [cls(namespace=namespace, name=name, **kwargs)]


def _schema_facet(task: Any) -> Any:
    from openlineage.client.facet_v2 import schema_dataset

    columns = task.config.validation.columns
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=name,
                type=spec.type,
                description="target" if name == task.config.target else None,
            )
            for name, spec in columns.items()
        ]
    )


def _assertions_facet(summary: dict[str, Any]) -> Any:
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

    return dq.DataQualityAssertionsDatasetFacet(
        assertions=[
            dq.Assertion(
                assertion=str(item.get("expectation")),
                success=bool(item.get("success")),
                column=item.get("column"),
                severity="error",
            )
            for item in summary.get("expectations") or []
        ]
    )


def _model_dataset(task: Any, name: str, cls: type, **kwargs: Any) -> Any:
    return cls(namespace=_tracking_uri(task), name=name, **kwargs)


def _resolve_inputs(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import InputDataset

    if not result:
        return {}
    return {
        "inputs": [_dvc_dataset(task, result, InputDataset)],
        "run_facets": {
            "conveyor_trigger": _facet_classes()["trigger"](
                revSource=result.get("rev_source"),
                triggerReason=result.get("trigger_reason"),
                codeRev=result.get("code_rev"),
                cacheKey=result.get("cache_key"),
            )
        },
    }


def _pull(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    source = result or _dict(getattr(task, "inputs", None))
    out: dict[str, Any] = {"inputs": [_dvc_dataset(task, source, InputDataset)]}
    out["outputs"] = _artifact(result.get("data_uri"), OutputDataset)
    if result.get("rev_source"):
        out["run_facets"] = {
            "conveyor_trigger": _facet_classes()["trigger"](
                revSource=result.get("rev_source"),
                triggerReason=result.get("trigger_reason"),
                codeRev=result.get("code_rev"),
                cacheKey=result.get("cache_key"),
            )
        }
    return out


def _validate(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    summary = _dict(getattr(task, "validation_summary", None))
    input_facets = {"dataQualityAssertions": _assertions_facet(summary)} if summary else {}
    schema = _schema_facet(task)
    data = _dict(getattr(task, "data", None))
    return {
        "inputs": _artifact(
            data.get("data_uri"), InputDataset, facets={"schema": schema}, inputFacets=input_facets
        ),
        "outputs": _artifact(result.get("snapshot_uri"), OutputDataset, facets={"schema": schema}),
    }


def _train(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    validation = _dict(getattr(task, "validation", None))
    out: dict[str, Any] = {"inputs": _artifact(validation.get("snapshot_uri"), InputDataset)}
    if result.get("model_uri"):
        facet = _facet_classes()["model"](
            name=task.config.model_name,
            mlflowRunId=result.get("mlflow_run_id"),
            params=_dict(result.get("best_params")),
            metrics={"cv_score": result.get("cv_score")} if result.get("cv_score") else {},
        )
        out["outputs"] = [
            _model_dataset(
                task, str(result["model_uri"]), OutputDataset, facets={"conveyor_model": facet}
            )
        ]
    return out


def _trained_model_input(task: Any) -> list[Any]:
    from openlineage.client.event_v2 import InputDataset

    training = _dict(getattr(task, "training", None))
    if not training.get("model_uri"):
        return []
    return [_model_dataset(task, str(training["model_uri"]), InputDataset)]


def _evaluate(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"inputs": _trained_model_input(task)}
    if result:
        out["run_facets"] = {
            "conveyor_step": _facet_classes()["step"](
                step="evaluate", metrics=_dict(result.get("candidate"))
            )
        }
    return out


def _gate(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    if not result:
        return {}
    return {
        "run_facets": {
            "conveyor_step": _facet_classes()["step"](
                step="gate",
                passed=bool(result.get("passed")),
                reasons=[str(r) for r in result.get("reasons") or []],
            )
        }
    }


def _register(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset

    out: dict[str, Any] = {"inputs": _trained_model_input(task)}
    if result.get("version"):
        training = _dict(getattr(task, "training", None))
        name, version = str(result.get("model_name")), str(result["version"])
        facets = {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version),
            "conveyor_model": _facet_classes()["model"](
                name=name,
                version=version,
                mlflowRunId=training.get("mlflow_run_id"),
                params=_dict(training.get("best_params")),
                metrics=_dict(result.get("metrics")),
            ),
        }
        out["outputs"] = [
            _model_dataset(task, model_version_name(name, version), OutputDataset, facets=facets)
        ]
    return out


def _alias_move(task: Any, result: dict[str, Any], *, action: str, version: Any, name: str) -> Any:
    return _facet_classes()["alias"](
        action=action,
        model=name,
        alias="production",
        fromVersion=None
        if result.get("previous_version") is None
        else str(result["previous_version"]),
        toVersion=None if version is None else str(version),
        moved=bool(result.get("moved")),
        verified=bool(result.get("verified")),
        verification=result.get("verification"),
        reason=str(getattr(task, "reason", "") or "") or None,
    )


def _deploy(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import InputDataset

    registration = _dict(getattr(task, "registration", None))
    name = str(result.get("model") or registration.get("model_name") or task.config.model_name)
    version = result.get("version") or registration.get("version")
    if version is None:
        return {}
    return {
        "inputs": [_model_dataset(task, model_version_name(name, version), InputDataset)],
        "run_facets": {
            "conveyor_alias_move": _alias_move(
                task, result, action="deploy", version=version, name=name
            )
        },
    }


def _rollback(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    from openlineage.client.event_v2 import InputDataset

    name = str(result.get("model") or task.config.model_name)
    version = result.get("version") or (str(getattr(task, "version", "") or "").strip() or None)
    out: dict[str, Any] = {
        "run_facets": {
            "conveyor_alias_move": _alias_move(
                task, result, action="rollback", version=version, name=name
            )
        }
    }
    if version is not None:
        out["inputs"] = [_model_dataset(task, model_version_name(name, version), InputDataset)]
    return out


def _score(task: Any, result: dict[str, Any], failed: bool) -> dict[str, Any]:
    """Batch scoring: the input file and the model version in, the scores file out."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    inputs: list[Any] = []
    source = _dict(result.get("input"))
    if source:
        inputs.append(_dvc_dataset(task, source, InputDataset))
    if result.get("model_version"):
        name = str(result.get("model_name") or task.config.model_name)
        inputs.append(
            _model_dataset(task, model_version_name(name, result["model_version"]), InputDataset)
        )
    out = _dict(result.get("output"))
    outputs: list[Any] = []
    if out.get("repo") and out.get("path"):
        outputs.append(_dvc_dataset(task, out, OutputDataset))
    else:
        outputs.extend(_artifact(out.get("uri"), OutputDataset))
    return {"inputs": inputs, "outputs": outputs}


#: Builder per operator class name (subclasses use their nearest Conveyor base's).
BUILDERS = {
    "BatchScoreOperator": _score,
    "ResolveInputsOperator": _resolve_inputs,
    "DvcPullOperator": _pull,
    "DataValidationOperator": _validate,
    "TrainModelOperator": _train,
    "EvaluateModelOperator": _evaluate,
    "ModelGateOperator": _gate,
    "RegisterModelOperator": _register,
    "DeployModelOperator": _deploy,
    "RollbackModelOperator": _rollback,
}


def build_lineage(task: Any, task_instance: Any, *, failed: bool) -> OperatorLineage:
    """The :class:`OperatorLineage` of one finished Conveyor task."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    builder = next(
        (BUILDERS[c.__name__] for c in type(task).__mro__ if c.__name__ in BUILDERS), None
    )
    if builder is None:
        return OperatorLineage()
    parts = builder(task, _result(task, task_instance), failed)
    return OperatorLineage(
        inputs=parts.get("inputs") or [],
        outputs=parts.get("outputs") or [],
        run_facets=parts.get("run_facets") or {},
    )
