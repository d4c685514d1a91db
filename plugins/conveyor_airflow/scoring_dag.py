"""The ``score_<name>`` DAG: batch scoring with the production model, one per pipeline
whose YAML has a ``scoring:`` section (see ``dags/conveyor_score.py`` and the README's
"Batch scoring").

Runs at DAG-parse time like :mod:`conveyor_airflow.factory`: ``airflow.sdk`` and
``conveyor.config`` only; the operator and trigger modules are imported by the builder,
so a project without a ``scoring:`` section pays for neither.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import DAG, Asset, AssetWatcher, Param

from conveyor.config import PipelineConfig, load_pipeline_config, pipeline_path
from conveyor.errors import ConfigError
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.factory import DATA_WATCHER, WATCH_POLL_SECONDS, step_defaults

if TYPE_CHECKING:
    from conveyor.settings import Settings


def score_dag_id(name: str) -> str:
    """DAG id of pipeline ``name``'s batch-scoring DAG."""
    return f"score_{name}"


def scoring_asset_name(name: str) -> str:
    """Name of the Asset that stands for pipeline ``name``'s scoring input."""
    return f"conveyor_scoring_input_{name}"


def scoring_asset(config: PipelineConfig, settings: Settings, *, watch: bool = True) -> Asset:
    """The scoring input's Asset, watched for new versions when ``scoring.watch`` is on.

    With no model to take a baseline from, the watcher remembers the current input when it
    starts and fires on each new version after that; score the current one by triggering
    the DAG (``input_rev`` empty: the branch head).
    """
    assert config.scoring is not None
    watchers = []
    if watch and config.scoring.watch:
        from conveyor_airflow.triggers.dvc_update import DvcUpdateTrigger

        trigger = DvcUpdateTrigger(
            repo=config.scoring.input.repo or settings.data_registry,
            path=config.scoring.input.path,
            rev=config.scoring.input.rev,
            poll_interval=WATCH_POLL_SECONDS,
        )
        watchers.append(AssetWatcher(name=f"dvc_watch_score_{config.name}", trigger=trigger))
    return Asset(name=scoring_asset_name(config.name), watchers=watchers)


def build_score_dag(
    name: str,
    *,
    pipelines_dir: str | Path | None = None,
    watch: bool = DATA_WATCHER,
    settings: Settings | None = None,
) -> DAG:
    """Pipeline ``name``'s batch-scoring DAG: one ``score`` task.

    Scheduled by new versions of ``scoring.input`` (asset watcher, ``scoring.watch``) and/or
    ``scoring.schedule``; the ``input_rev`` Param scores a given revision. ``settings``:
    resolved settings to reuse (see :func:`conveyor_airflow.factory.build_per_pipeline`).

    Raises
    ------
    ConfigError
        If the YAML is invalid or has no ``scoring`` section.
    """
    from conveyor_airflow.operators.score import BatchScoreOperator

    settings = settings or conveyor_settings()
    directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
    config = load_pipeline_config(pipeline_path(name, directory))
    spec = config.scoring
    if spec is None:
        raise ConfigError(f"Pipeline {name} has no 'scoring' section: no scoring DAG")
    asset = scoring_asset(config, settings, watch=watch)
    if spec.schedule and spec.watch and watch:
        from conveyor_airflow.compat import schedule_classes

        AssetOrTimeSchedule, CronTriggerTimetable = schedule_classes()
        schedule = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(spec.schedule, timezone="UTC"), assets=[asset]
        )
    elif spec.watch and watch:
        schedule = [asset]
    else:
        schedule = spec.schedule
    common = {"pipeline": config.name}
    if pipelines_dir:
        common["pipelines_dir"] = str(pipelines_dir)
    with DAG(
        dag_id=score_dag_id(config.name),
        description=f"Score {spec.input.path} with {config.name}'s production model",
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=step_defaults(),
        params={
            "input_rev": Param(
                None,
                type=["null", "string"],
                title="Input revision",
                description="Git branch, tag or commit of the input file. Empty: the newest "
                "triggering input event, else the tracked branch's head.",
            )
        },
        tags=["conveyor", "scoring", *config.tags],
        doc_md=build_score_dag.__doc__,
    ) as dag:
        BatchScoreOperator(
            task_id="score",
            input_rev="{{ params.input_rev or '' }}",
            execution_timeout=timedelta(hours=2),
            **common,
        )
    return dag


def build_score_dags(*, pipelines_dir: str | Path | None = None) -> dict[str, DAG]:
    """The ``score_<name>`` DAG of every pipeline with a ``scoring:`` section, by DAG id."""
    from conveyor_airflow.factory import build_per_pipeline

    def if_scored(name: str, *, pipelines_dir: str | Path | None, settings: Settings) -> DAG | None:
        directory = Path(pipelines_dir) if pipelines_dir else settings.pipelines_dir
        if load_pipeline_config(pipeline_path(name, directory)).scoring is None:
            return None
        return build_score_dag(name, pipelines_dir=pipelines_dir, settings=settings)

    return build_per_pipeline(if_scored, kind="scoring DAG", pipelines_dir=pipelines_dir)
