"""Build a training DAG from a pipeline YAML.

A DAG file is two lines::

    from conveyor_airflow.factory import build_pipeline_dag
    dag = build_pipeline_dag("breast_cancer")

This module runs at DAG-parse time, so it imports ``airflow.sdk`` and ``conveyor.config``
only; the operators import pandas, scikit-learn, GX, DVC and MLflow inside ``execute()``.
Each builder imports the operator and trigger modules its DAG uses when it runs (a
sys.modules look-up after the first DAG): the rollback DAG's file does not pay for the
training operators, nor a DAG without approval for the standard provider's HITL operators.
A broken YAML raises here, which Airflow shows as an import error of that DAG file only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, AssetWatcher, BaseOperator, Param, TaskGroup

from conveyor.config import PipelineConfig, list_pipelines, load_pipeline_config, pipeline_path
from conveyor.errors import ConfigError
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.notifiers import ConveyorNotifier

if TYPE_CHECKING:
    from conveyor.settings import Settings

#: Pool that bounds concurrent training on a small machine (created by `conveyor airflow-init`).
TRAINING_POOL = os.environ.get("CONVEYOR_TRAINING_POOL", "conveyor_training")


def env_number(name: str, default: float) -> float:
    """A number >= 0 from the environment; a clear import error for anything else."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a number >= 0, got {raw!r}: fix it or unset it")
    return value


#: Seconds between polls of the data registry by the asset watcher.
WATCH_POLL_SECONDS = env_number("CONVEYOR_WATCH_POLL_SECONDS", 10)
#: Set to "false" to drop the asset watcher (e.g. when using dags/conveyor_watch.py).
DATA_WATCHER = os.environ.get("CONVEYOR_DATA_WATCHER", "true").lower() not in ("false", "0", "no")


def data_asset_name(name: str) -> str:
    """Name of the Asset that stands for pipeline ``name``'s training data."""
    return f"conveyor_data_{name}"


def data_asset(config: PipelineConfig, settings: Settings, *, watch: bool = DATA_WATCHER) -> Asset:
    """The pipeline's data Asset, watched by :class:`DvcUpdateTrigger` unless disabled.

    Trigger arguments are plain literals from the config and environment: a value computed
    at parse time (such as the file's current md5) would change the trigger's identity on
    every re-parse.
    """
    watchers = []
    if watch and config.triggers.data:
        from conveyor_airflow.triggers.dvc_update import DvcUpdateTrigger

        trigger = DvcUpdateTrigger(
            repo=config.data.repo or settings.data_registry,
            path=config.data.path,
            rev=config.data.rev,
            model_name=config.model_name,
            tracking_uri=settings.mlflow_tracking_uri,
            poll_interval=WATCH_POLL_SECONDS,
        )
        watchers.append(AssetWatcher(name=f"dvc_watch_{config.name}", trigger=trigger))
    watchers.extend(retraining_watchers(config, settings))
    return Asset(name=data_asset_name(config.name), watchers=watchers)


def retraining_watchers(config: PipelineConfig, settings: Settings) -> list[AssetWatcher]:
    """Watchers of the YAML's ``triggers`` section: a message queue (``triggers.message``,
    its provider imported only then) and code/config changes (``triggers.on_change``)."""
    watchers = []
    if config.triggers.message is not None:
        from conveyor_airflow.triggers.message import message_trigger

        spec = config.triggers.message.model_dump()
        watchers.append(
            AssetWatcher(
                name=f"message_watch_{config.name}", trigger=message_trigger(config.name, spec)
            )
        )
    if config.triggers.on_change:
        from conveyor.__about__ import __version__
        from conveyor_airflow.triggers.config_change import ConfigChangeTrigger

        trigger = ConfigChangeTrigger(
            model_name=config.model_name,
            tracking_uri=settings.mlflow_tracking_uri,
            config_hash=config.config_hash(),
            conveyor_version=__version__,
            poll_interval=max(WATCH_POLL_SECONDS, 1.0),
        )
        watchers.append(AssetWatcher(name=f"code_watch_{config.name}", trigger=trigger))
    return watchers


def pipeline_schedule(config: PipelineConfig, asset: Asset):
    """New data always starts a run; a configured cron/preset schedule does too."""
    if not config.schedule:
        return [asset]
    from conveyor_airflow.compat import schedule_classes

    AssetOrTimeSchedule, CronTriggerTimetable = schedule_classes()

    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(config.schedule, timezone="UTC"), assets=[asset]
    )


#: Seconds before the first retry of a failed step (doubling after that).
RETRY_DELAY_SECONDS = env_number("CONVEYOR_RETRY_DELAY_SECONDS", 30)


def step_defaults() -> dict:
    """Task defaults of the training and monitoring DAGs: retries with backoff (for the
    registry or a remote coming back), a timeout, and a notification on failure (logged
    always; POSTed to the ``conveyor_webhook`` connection when defined)."""
    return {
        "owner": "conveyor",
        "retries": 2,
        "retry_delay": timedelta(seconds=RETRY_DELAY_SECONDS),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": ConveyorNotifier(event="task_failed"),
    }


def training_dag_id(name: str) -> str:
    """DAG id of pipeline ``name``'s training DAG."""
    return f"train_{name}"


def pipeline_params() -> dict[str, Param]:
    """Typed Params shown in the Airflow UI's trigger form."""
    return {
        # "null" in the type keeps the UI field optional (an empty string field is required).
        "data_rev": Param(
            None,
            type=["null", "string"],
            title="Data revision",
            description="Git branch, tag or commit of the data registry. Empty: the newest "
            "triggering data event, else the tracked branch's head.",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Force retraining",
            description="Retrain even when data, config and code equal production's.",
        ),
        "gate_override": Param(
            False,
            type="boolean",
            title="Override the gate",
            description="Register even if the gate rejects the model (needs a reason).",
        ),
        "override_reason": Param(
            None,
            type=["null", "string"],
            title="Override reason",
            description="Why the gate is overridden; recorded on the model version.",
        ),
    }


def _doc(config: PipelineConfig, source: Path) -> str:
    return (
        f"### {config.name} ({config.task})\n\n{config.description}\n\n"
        f"Data: `{config.data.path}` at `{config.data.rev}` · estimator "
        f"`{config.model.estimator}` · gate on `{config.metrics.primary}`.\n\n"
        f"Config: `{source}`"
    )


def _load(name: str, pipelines_dir: str | Path | None) -> tuple[PipelineConfig, Path, Settings]:
    settings = conveyor_settings()
    directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
    source = pipeline_path(name, directory)
    return load_pipeline_config(source), source, settings


def add_training_tasks(
    config: PipelineConfig, *, pipelines_dir: str | Path | None = None
) -> dict[str, BaseOperator]:
    """The training pipeline's tasks, added to the DAG or task group being defined.

    resolve inputs (pin data rev, skip unchanged) → pull → validate → train → evaluate →
    gate → register → (approval) → deploy. Returns them by task name.
    """
    from conveyor_airflow.operators.deploy import DeployModelOperator
    from conveyor_airflow.operators.evaluate import EvaluateModelOperator
    from conveyor_airflow.operators.gate import ModelGateOperator
    from conveyor_airflow.operators.pull import DvcPullOperator, ResolveInputsOperator
    from conveyor_airflow.operators.register import RegisterModelOperator
    from conveyor_airflow.operators.train import TrainModelOperator
    from conveyor_airflow.operators.validate import DataValidationOperator

    common: dict[str, Any] = {"pipeline": config.name}
    if pipelines_dir:  # operators read the YAML at run time from the same folder
        common["pipelines_dir"] = str(pipelines_dir)
    inputs = ResolveInputsOperator(
        task_id="resolve_inputs",
        data_rev="{{ params.data_rev or '' }}",
        force="{{ params.force }}",
        gate_override="{{ params.gate_override }}",
        override_reason="{{ params.override_reason or '' }}",
        execution_timeout=timedelta(minutes=5),
        **common,
    )
    pull = DvcPullOperator(task_id="pull_data", inputs=inputs.output, **common)
    validate = DataValidationOperator(
        task_id="validate_data", data=pull.output, retries=0, **common
    )
    train = TrainModelOperator(
        task_id="train_model",
        data=pull.output,
        validation=validate.output,
        pool=TRAINING_POOL,
        execution_timeout=timedelta(hours=2),
        **common,
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate_model", validation=validate.output, training=train.output, **common
    )
    gate = ModelGateOperator(
        task_id="gate",
        evaluation=evaluate.output,
        override="{{ params.gate_override }}",
        override_reason="{{ params.override_reason or '' }}",
        retries=0,
        **common,
    )
    register = RegisterModelOperator(
        task_id="register_model",
        data=pull.output,
        validation=validate.output,
        training=train.output,
        evaluation=evaluate.output,
        gate=gate.output,
        promote=False,  # only a verified deployment moves production
        **common,
    )
    deploy = DeployModelOperator(
        task_id="deploy_model",
        registration=register.output,
        validation=validate.output,
        execution_timeout=timedelta(minutes=20),
        **common,
    )
    tasks: dict[str, BaseOperator] = {
        "resolve_inputs": inputs,
        "pull_data": pull,
        "validate_data": validate,
        "train_model": train,
        "evaluate_model": evaluate,
        "gate": gate,
        "register_model": register,
        "deploy_model": deploy,
    }
    if config.deploy.require_approval:
        from conveyor_airflow.operators.approval import (
            ConveyorApprovalOperator,
            approval_params,
        )

        register_id = register.task_id  # prefixed inside a task group
        approve = ConveyorApprovalOperator(
            task_id="approve_deployment",
            pipeline=config.name,
            registration=register.output,
            params=approval_params(),
            subject=f"Deploy {config.name} "
            f"v{{{{ ti.xcom_pull(task_ids='{register_id}')['version'] }}}} to production?",
            body=_approval_body(config, register_id),
            defaults="Reject",  # no answer within the response timeout = rejected
            response_timeout=timedelta(days=APPROVAL_TIMEOUT_DAYS),
            execution_timeout=None,
            retries=0,
        )
        register >> approve >> deploy
        tasks["approve_deployment"] = approve
    return tasks


def build_pipeline_dag(name: str, *, pipelines_dir: str | Path | None = None) -> DAG:
    """The training DAG of pipeline ``name``, scheduled by new data (asset watcher) and
    optionally by a cron (see :func:`add_training_tasks` for its tasks)."""
    config, source, settings = _load(name, pipelines_dir)
    with DAG(
        dag_id=training_dag_id(config.name),
        description=config.description or f"Train {config.name}",
        schedule=pipeline_schedule(config, data_asset(config, settings)),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=step_defaults(),
        params=pipeline_params(),
        tags=["conveyor", config.task, *config.tags],
        doc_md=_doc(config, source),
    ) as dag:
        add_training_tasks(config, pipelines_dir=pipelines_dir)
    return dag


def build_pipeline_task_group(
    name: str, *, group_id: str | None = None, pipelines_dir: str | Path | None = None
) -> TaskGroup:
    """The training pipeline as a task group inside a DAG you write (like Cosmos's
    ``DbtTaskGroup``): put it after your own ETL tasks.

        with DAG("nightly", schedule="@daily", ...):
            extract = BashOperator(task_id="extract", bash_command="...")
            extract >> build_pipeline_task_group("churn")

    The group has the same tasks as ``train_<name>``. Your DAG supplies the schedule; its
    optional params ``data_rev``, ``force``, ``gate_override``, ``override_reason`` are read
    if you declare them (:func:`pipeline_params`).
    """
    config, _, _ = _load(name, pipelines_dir)
    with TaskGroup(
        group_id=group_id or f"conveyor_{config.name}",
        tooltip=config.description or f"Train {config.name}",
        default_args=step_defaults(),
    ) as group:
        add_training_tasks(config, pipelines_dir=pipelines_dir)
    return group


#: Days a deployment waits for an approval before it counts as rejected.
APPROVAL_TIMEOUT_DAYS = env_number("CONVEYOR_APPROVAL_TIMEOUT_DAYS", 3)


def _approval_body(config: PipelineConfig, register_id: str = "register_model") -> str:
    """Markdown for the approver, rendered at run time from the register task's XComs.

    The model card link is the one ``register_model``'s "Model card" extra link opens
    (the URL the task pushed under :meth:`ModelCardLink.url_key`: the Conveyor UI's
    ``/conveyor/artifacts/...`` route); no card, no link.
    """
    from conveyor_airflow.links import ModelCardLink

    card = f"ti.xcom_pull(task_ids='{register_id}', key='{ModelCardLink.url_key()}')"
    return (
        f"The candidate of **{config.name}** passed the gate on `{config.metrics.primary}`.\n\n"
        f"Metrics: `{{{{ ti.xcom_pull(task_ids='{register_id}')['metrics'] }}}}`\n\n"
        f"{{% set card = {card} %}}{{% if card %}}"
        "Read the [model card]({{ card }}) first: data, metrics, per-group fairness and "
        "what drives the model.\n\n{% endif %}"
        "Approve to run the contract check and smoke test and move `production` to it "
        "and verify the model service; Reject leaves production unchanged."
    )


ROLLBACK_DAG_ID = "conveyor_rollback"


def build_rollback_dag(*, pipelines_dir: str | Path | None = None) -> DAG:
    """Manual rollback: move ``production`` back to a version that served before, and pin it.

    Triggered from the UI (or REST) with Params: the pipeline, the action (``rollback`` or
    ``release``), the target version (empty: the previous production version per the audit
    trail) and a reason (required). A rollback validates the target, moves the alias,
    verifies the service, pins production there and audits; ``release`` lifts the pin.
    """
    from conveyor_airflow.operators.deploy import RollbackModelOperator

    settings = conveyor_settings()
    directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
    names = list_pipelines(directory)
    pipeline_param = (
        Param(names[0], type="string", enum=names, title="Pipeline")
        if names
        else Param("", type="string", title="Pipeline")
    )
    with DAG(
        dag_id=ROLLBACK_DAG_ID,
        description="Move a model's production alias back to an earlier version",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["conveyor", "rollback"],
        default_args={"owner": "conveyor", "retries": 1, "retry_delay": timedelta(seconds=10)},
        # Triggered on demand only: paused, a REST trigger would wait in `queued` forever.
        is_paused_upon_creation=False,
        params={
            "pipeline": pipeline_param,
            "action": Param(
                "rollback",
                type="string",
                enum=["rollback", "release"],
                title="Action",
                description="rollback: move production back and pin it there (later runs "
                "register candidates but do not deploy them); release: lift that pin.",
            ),
            "version": Param(
                "",
                type="string",
                title="Target version",
                description="Version number to restore. Empty: the version that was in "
                "production before the current one (per the audit trail).",
            ),
            "reason": Param(
                None,
                type="string",
                minLength=3,
                title="Reason",
                description="Why production is rolled back (required; audited).",
            ),
        },
        doc_md=build_rollback_dag.__doc__,
    ) as dag:
        RollbackModelOperator(
            task_id="rollback_model",
            pipeline="{{ params.pipeline }}",
            version="{{ params.version }}",
            reason="{{ params.reason }}",
            action="{{ params.action or 'rollback' }}",
            execution_timeout=timedelta(minutes=10),
        )
    return dag


def _config_and_asset(
    name: str, pipelines_dir: str | Path | None, settings: Settings | None = None
) -> tuple[PipelineConfig, Asset]:
    """Pipeline ``name``'s config and its data Asset, for DAGs that emit events on it.

    The same Asset definition as the training DAG's, watcher included: Airflow syncs an
    asset's watchers from every file that mentions it, so an outlet-only copy without the
    watcher would remove the trigger on each parse of that file and re-add it on the next.
    """
    settings = settings or conveyor_settings()
    directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
    config = load_pipeline_config(pipeline_path(name, directory))
    return config, data_asset(config, settings)


def watch_dag_id(name: str) -> str:
    """DAG id of pipeline ``name``'s optional sensor-based data watcher."""
    return f"conveyor_watch_{name}"


def build_watch_dag(
    name: str, *, pipelines_dir: str | Path | None = None, settings: Settings | None = None
) -> DAG:
    """A continuous, deferrable sensor DAG that updates the pipeline's data Asset.

    The alternative to the asset watcher for teams that prefer a sensor they can see in
    the grid view. It emits the same payload shape (repo, path, rev, md5) in the asset
    event's extra, so the training run pins the same revision either way. Paused at
    creation: unpause it *and* set ``CONVEYOR_DATA_WATCHER=false`` to switch over.
    ``settings``: resolved settings to reuse (see :func:`build_per_pipeline`).
    """
    from conveyor_airflow.sensors.dvc_update import AnnounceDataOperator, DvcUpdateSensor

    config, asset = _config_and_asset(name, pipelines_dir, settings)
    with DAG(
        dag_id=watch_dag_id(config.name),
        description=f"Watch {config.data.path} for new versions (sensor alternative to the asset watcher)",
        schedule="@continuous",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        tags=["conveyor", "watch"],
        default_args={"owner": "conveyor", "retries": 1, "retry_delay": timedelta(seconds=30)},
    ) as dag:
        wait = DvcUpdateSensor(
            task_id="wait_for_new_data", pipeline=config.name, poll_interval=WATCH_POLL_SECONDS
        )

        AnnounceDataOperator(
            task_id="announce_new_data",
            payload=wait.output,
            outlets=[asset],
            execution_timeout=timedelta(minutes=2),
        )
    return dag


def monitor_dag_id(name: str) -> str:
    """DAG id of pipeline ``name``'s monitoring DAG."""
    return f"conveyor_monitor_{name}"


def build_monitor_dag(
    name: str, *, pipelines_dir: str | Path | None = None, settings: Settings | None = None
) -> DAG:
    """Drift and live-performance monitoring of pipeline ``name``'s production model.

    check_drift → request_retraining. The check reads the prediction log window, writes
    the drift report and notifies on drift; ``request_retraining`` records an event on the
    pipeline's data asset (which starts the training DAG) only when there is drift *and*
    data production was not trained on. Scheduled by ``monitor.schedule`` (manual if none).
    ``settings``: resolved settings to reuse (see :func:`build_per_pipeline`).
    """
    from conveyor_airflow.operators.monitor import DriftCheckOperator, RequestRetrainingOperator

    config, asset = _config_and_asset(name, pipelines_dir, settings)
    with DAG(
        dag_id=monitor_dag_id(config.name),
        description=f"Drift and live performance of {config.name}'s production model",
        schedule=config.monitor.schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["conveyor", "monitoring", *config.tags],
        default_args=step_defaults(),
        doc_md=build_monitor_dag.__doc__,
    ) as dag:
        check = DriftCheckOperator(task_id="check_drift", pipeline=config.name)
        RequestRetrainingOperator(
            task_id="request_retraining",
            pipeline=config.name,
            outcome=check.output,
            outlets=[asset],
            retries=0,
        )
    return dag


def build_per_pipeline(
    builder: Callable[..., DAG | None],
    *,
    kind: str,
    pipelines_dir: str | Path | None = None,
) -> dict[str, DAG]:
    """One DAG per pipeline YAML by ``builder``, keyed by DAG id; a DAG file publishes them
    with ``globals().update(build_per_pipeline(build_monitor_dag, kind="monitor"))``.

    The settings are resolved (environment and Airflow's ``[conveyor]`` section) and the
    folder listed once for all pipelines, and each YAML is parsed once per process
    (:func:`conveyor.config.load_pipeline_config`). ``builder(name, pipelines_dir=...,
    settings=...)`` may return ``None`` for a pipeline that has no such DAG. A pipeline
    whose YAML is broken gets no DAG here, only a warning: its own DAG file shows the error.
    """
    settings = conveyor_settings()
    directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
    dags: dict[str, DAG] = {}
    for name in list_pipelines(directory):
        try:
            dag = builder(name, pipelines_dir=pipelines_dir, settings=settings)
        except ConfigError as exc:
            logging.getLogger(__name__).warning("No %s for %s: %s", kind, name, exc)
            continue
        if dag is not None:
            dags[dag.dag_id] = dag
    return dags


HOUSEKEEPING_DAG_ID = "conveyor_housekeeping"


def build_housekeeping_dag(*, pipelines_dir: str | Path | None = None) -> DAG:
    """Daily housekeeping: each pipeline's ``retention`` policy applied by one task.

    Paused at creation like every Conveyor DAG: unpause it to start deleting (trigger it
    with ``dry_run: true`` first to see the list). A pipeline whose YAML is broken gets
    no task (its own DAG file shows the error).
    """
    from conveyor_airflow.operators.housekeeping import HousekeepingOperator

    settings = conveyor_settings()
    directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
    with DAG(
        dag_id=HOUSEKEEPING_DAG_ID,
        description="Delete old run artifacts, prediction logs and candidates per retention",
        schedule="@daily",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["conveyor", "housekeeping"],
        default_args=step_defaults(),
        params={
            "dry_run": Param(
                False,
                type="boolean",
                title="Dry run",
                description="Only list what the retention policy would delete.",
            )
        },
        doc_md=build_housekeeping_dag.__doc__,
    ) as dag:
        for name in list_pipelines(directory):
            try:
                load_pipeline_config(pipeline_path(name, directory))
            except ConfigError:
                continue
            HousekeepingOperator(
                task_id=f"housekeeping_{name}",
                pipeline=name,
                pipelines_dir=str(directory) if pipelines_dir else None,
                dry_run="{{ params.dry_run }}",
            )
    return dag
