"""Orchestration overhead: the training pipeline through Airflow vs one plain Python process.

Generated data (N rows x 30 float features + a 0/1 target) is published to a temporary
DVC data registry; a pipeline YAML like ``include/pipelines/breast_cancer.yaml`` (same
estimator, no grid search) trains on it. The same steps then run two ways:

(a) **plain**: one fresh Python process calls the core functions in a row: resolve the
    inputs, fetch from DVC, read the CSV, ``validate_frame`` (with Data Docs), split,
    ``train_model``, log the model to MLflow, ``compute_metrics`` + plots, the gate,
    register, deploy (contract check, smoke test in a separate process, switch of
    ``production``; no model service runs, so ``verify: never``). Wall time from process launch to the end of the last step, so
    interpreter start and imports count, once.
(b) **Airflow**: the training DAG (``conveyor_airflow.factory``) on a real LocalExecutor:
    scheduler, dag-processor, triggerer and api-server under
    ``conveyor_runtime.supervisor.AirflowSupervisor``, triggered through the REST API; wall time
    from the trigger request to the run's observed end. Components are started (and a
    warm-up run made) before timing, as in a long-lived deployment. ``--airflow dagtest``
    measures ``dag.test()`` in a fresh process instead: labelled as such, because it
    imports everything once and hides the per-task costs. ``--airflow none`` runs only (a).

All plain runs come first, with no Airflow running; each size uses its own pipeline
name, so both ways start with no production model and do the same work.

Where the time goes, per Airflow task: the plain process's time for the same step
(compute), the handoff I/O a split into tasks adds (copy into the run's artifacts,
Parquet snapshot write/reads, model reload; measured in the plain worker after its timed
region), the cold import cost of that task's modules (measured by forking a process that
has ``airflow.sdk`` and the DAG's modules loaded, as a LocalExecutor worker does), and
the rest (task process start, DAG parse in the task, XCom, logging). Between tasks: the
scheduling gaps.

    uv run python bench/orchestration.py [--sizes 10k,100k,1M] [--airflow local|dagtest|none]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import _common as c

NAME = "orchestration"
DEFAULT_SIZES = "10k,100k,1M"
#: Airflow / the plain process *without* its interpreter start and imports (warm vs warm:
#: what a team with a running Airflow pays per run; the headline, issue 19).
WARM_GOALS = {10_000: 1.5, 1_000_000: 1.2}
#: Airflow / the plain process as launched (it pays its imports every run; issue 9).
GOALS = {10_000: 1.6, 1_000_000: 1.25}
WARMUP_ROWS = 500
#: Airflow task -> the plain steps that do its work.
TASK_STEPS = {
    "resolve_inputs": ["resolve"],
    "pull_data": ["pull"],
    "validate_data": ["read", "validate"],
    "train_model": ["split", "train", "log_model"],
    "evaluate_model": ["evaluate"],
    "gate": ["gate"],
    "register_model": ["register"],
    "deploy_model": ["deploy"],
}
#: Airflow task -> handoff I/O measured in the plain worker (see ``handoff_io``).
TASK_IO = {
    "pull_data": ["copy_data"],
    "validate_data": ["copy_docs", "write_parquet"],
    "train_model": ["read_parquet"],
    "evaluate_model": ["read_test_part", "load_model"],
    "deploy_model": ["sample_snapshot"],
}
#: Airflow task -> modules it imports in ``execute()``, read from
#: plugins/conveyor_airflow/operators (resolve_inputs imports the estimator's module to
#: fail fast on a wrong dotted path). Keep in step with the operators. MLflow's SQLAlchemy
#: stores are imported by the first client call on a ``sqlite:`` tracking URI (~1.5 s).
TASK_IMPORTS = {
    "resolve_inputs": [
        "conveyor.registry.caching",
        "conveyor.modeling.training",
        "sklearn.ensemble",
    ],
    "pull_data": ["conveyor.data.source", "dvc.repo", "dvc.api"],
    "validate_data": [
        "conveyor.artifacts",
        "conveyor.validation.expectations",
        "pandas",
        "great_expectations",
        "pyarrow.parquet",
    ],
    "train_model": [
        "mlflow",
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
        "mlflow.sklearn",
        "mlflow.models",
        "conveyor.registry.tracking",
        "conveyor.registry.models",
        "conveyor.data.splits",
        "conveyor.modeling.training",
        "conveyor.modeling.model_io",
        "pandas",
        "pyarrow.parquet",
        "sklearn.compose",
        "sklearn.ensemble",
        "sklearn.impute",
        "sklearn.model_selection",
        "sklearn.pipeline",
        "sklearn.preprocessing",
        "skops.io",
        "threadpoolctl",
    ],
    "evaluate_model": [
        "mlflow",
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
        "conveyor.registry.tracking",
        "conveyor.modeling.evaluation",
        "conveyor.modeling.model_io",
        "conveyor.registry.models",
        "conveyor.data.splits",
        "pandas",
        "pyarrow.parquet",
        "sklearn.metrics",
        "sklearn.model_selection",
        "skops.io",
        "matplotlib.pyplot",
        "conveyor.cards.analysis",
        "sklearn.inspection",
        "sklearn.calibration",
        "fairlearn.metrics",
    ],
    "gate": ["conveyor.modeling.gate"],
    "register_model": [
        "mlflow",
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
        "conveyor.registry.tracking",
        "conveyor.registry.lineage",
        "conveyor.registry.models",
        "conveyor.registry.candidates",
        "conveyor.cards.card",
    ],
    "deploy_model": [
        "mlflow",
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
        "conveyor.registry.tracking",
        "conveyor.deploy.rollout",
        "conveyor.deploy.candidate",
        "conveyor.registry.pin",
        "conveyor.registry.models",
        "pandas",
        "pyarrow.parquet",
    ],
}


def dt(text: str | None) -> float | None:
    """ISO timestamp from the REST API -> POSIX seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- plain worker


def plain_worker(pipeline: str) -> None:
    """The whole pipeline in this process; prints BENCH_DONE when the last step ends."""
    started = time.time()
    launched = float(os.environ.get("BENCH_LAUNCHED_AT", started))
    steps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = now - t
        t = now

    # The imports a plain script would have at its top: every module the Airflow tasks
    # import (so the steps below time work, not lazy imports), each once.
    import importlib
    import importlib.util

    import matplotlib

    matplotlib.use("Agg")
    import mlflow
    import yaml

    from conveyor.data.source import import_dvc
    from conveyor.validation.expectations import _import_gx

    _import_gx()
    import_dvc()
    for modules in TASK_IMPORTS.values():
        for name in modules:
            if name != "great_expectations":
                importlib.import_module(name)

    from conveyor.cards.analysis import analyze
    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.data.source import fetch
    from conveyor.data.splits import split_frame
    from conveyor.deploy.rollout import check_contract, deploy, sample_rows, smoke_test
    from conveyor.modeling.evaluation import compute_metrics, write_plots
    from conveyor.modeling.gate import decide
    from conveyor.modeling.training import log_model, train_model
    from conveyor.monitoring.drift import PROFILE_ARTIFACT, build_profile
    from conveyor.registry import tracking
    from conveyor.registry.caching import check_inputs
    from conveyor.registry.candidates import register_candidate
    from conveyor.registry.lineage import TAG_PREFIX, code_identity
    from conveyor.registry.models import (
        PRODUCTION,
        lineage_tags,
        tag_value,
        version_by_alias,
    )
    from conveyor.registry.pin import current_pin
    from conveyor.settings import Settings
    from conveyor.validation.expectations import read_dataset, validate_frame

    lap("imports")

    settings = Settings.from_env()
    cfg = load_pipeline_config(pipeline_path(pipeline, settings.pipelines_dir))
    run_id = f"plain__{int(started)}"
    run_dir = Path(settings.artifact_root) / "plain" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    repo = cfg.data.repo or settings.data_registry
    inputs = check_inputs(
        cfg,
        repo=repo,
        rev=cfg.data.rev,
        rev_source="branch",
        tracking_uri=settings.mlflow_tracking_uri,
        code_rev=code_identity(c.REPO),
    )
    lap("resolve")
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-plain-"))
    snapshot = fetch(repo, cfg.data.path, inputs.git_sha, tmp)
    lap("pull")
    frame = read_dataset(snapshot.local_path, cfg.data.format)
    lap("read")
    summary = validate_frame(
        frame, cfg.validation, suite_name=cfg.name, docs_dir=run_dir / "data_docs"
    )
    (run_dir / "summary.json").write_text(json.dumps(summary))
    lap("validate")
    train, test = split_frame(frame, cfg)
    lap("split")
    client = tracking.configure(settings)
    experiment_id = tracking.ensure_experiment(client, cfg.name, settings)
    tags = lineage_tags(
        pipeline=cfg.name,
        dag_id="plain",
        run_id=run_id,
        data_md5=snapshot.md5,
        data_git_sha=snapshot.git_sha,
        config_hash=cfg.config_hash(),
        project_git_rev=code_identity(c.REPO),
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_id, tags=tags) as run:
        result = train_model(train, cfg, n_jobs=1)
        lap("train")
        model_uri = log_model(
            result,
            cfg,
            input_example=train[cfg.feature_columns],
            config_yaml=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        )
        mlflow.log_metric("train_rows", result.train_rows)
        mlflow.log_metric("fit_seconds", result.fit_seconds)
        mlflow.log_dict(build_profile(train, cfg, seed=cfg.split.seed), PROFILE_ARTIFACT)
        lap("log_model")
        # As EvaluateModelOperator: metrics, plots and the model card's analyses.
        metrics = compute_metrics(result.model, test, cfg)
        version_by_alias(client, cfg.model_name, PRODUCTION)
        plots = write_plots(result.model, test, cfg, run_dir / "evaluation")
        card = analyze(result.model, test, cfg, run_dir / "evaluation" / "card")
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        for plot in plots:
            mlflow.log_artifact(str(plot), artifact_path="evaluation")
        evaluation = {
            "candidate": metrics,
            "production": None,
            "test_rows": len(test),
            "plots": [str(p) for p in plots],
            "card": card.to_dict() | {"prefix": str(run_dir / "evaluation" / "card")},
            "fairness": card.worst_fairness(),
        }
        (run_dir / "metrics.json").write_text(json.dumps({"candidate": metrics}))
        lap("evaluate")
    decision = decide(
        metrics, cfg, production=None, production_version=None, fairness=evaluation["fairness"]
    )
    assert decision.passed, decision.summary()
    lap("gate")
    # As RegisterModelOperator: the version with its lineage, and its model card.
    code_rev = code_identity(c.REPO)
    registration = register_candidate(
        cfg,
        settings,
        data={
            "repo": repo,
            "path": cfg.data.path,
            "rev": cfg.data.rev,
            "rev_source": "branch",
            "git_sha": snapshot.git_sha,
            "md5": snapshot.md5,
            "code_rev": code_rev,
        },
        validation=summary,
        training={
            "mlflow_run_id": run.info.run_id,
            "experiment_id": experiment_id,
            "model_uri": model_uri,
            "model_id": model_uri.removeprefix("models:/"),
            "best_params": result.best_params,
            "cv_score": result.cv_score,
            "train_rows": result.train_rows,
            "reference_profile": f"runs:/{run.info.run_id}/{PROFILE_ARTIFACT}",
        },
        evaluation=evaluation,
        gate=decision.to_dict(),
        dag_id="plain",
        run_id=run_id,
    )
    version = registration.version
    lap("register")
    # As the deploy task (conveyor.deploy.candidate): pin check, contract check, smoke test
    # in a separate process, the switch of `production` (no model service in the
    # benchmark: verify "never") and the deployment tag on the version.
    current_pin(client, cfg.model_name)
    contract = check_contract(client, cfg.model_name, version)
    rows = sample_rows(frame, cfg.feature_columns, n=cfg.deploy.smoke_rows, seed=cfg.split.seed)
    smoke = None
    if cfg.deploy.smoke_test:
        smoke = smoke_test(
            f"models:/{cfg.model_name}/{version}",
            rows,
            latency_budget_ms=cfg.deploy.latency_budget_ms,
        ).to_dict()
    deployed = deploy(
        client,
        name=cfg.model_name,
        version=version,
        reason="bench",
        user="bench",
        artifact_root=settings.artifact_root,
        service_url=cfg.deploy.service_url,
        verify=cfg.deploy.verify,
        rows=rows[:5],
        timeout=cfg.deploy.verify_timeout_seconds,
        dag_id="plain",
        run_id=run_id,
        details={"contract": contract.to_dict(), "smoke": smoke},
    )
    client.set_model_version_tag(
        cfg.model_name,
        version,
        f"{TAG_PREFIX}deployment",
        tag_value({"verified": deployed.verified, "verification": deployed.verification}),
    )
    lap("deploy")
    print("BENCH_DONE", flush=True)
    done_at = time.time()
    cpu_s = _cpu_self_and_children()

    io = handoff_io(snapshot.local_path, frame, cfg, model_uri, run_dir, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    c.emit(
        {
            "pipeline": pipeline,
            "rows": len(frame),
            "process_start_s": started - launched,
            "steps": steps,
            "in_process_s": done_at - started,
            "cpu_s": cpu_s,
            "handoff_io": io,
            "metrics": metrics,
            "version": version,
        }
    )


def _cpu_self_and_children() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # git, pip --version...
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def handoff_io(data_file, frame, cfg, model_uri: str, run_dir: Path, tmp: Path) -> dict:
    """The extra I/O of handing data between tasks, timed here outside the plain run."""
    from conveyor.data.frames import write_parquet_snapshot
    from conveyor.data.splits import split_frame
    from conveyor.deploy.rollout import sample_snapshot_rows
    from conveyor.modeling.model_io import load_model
    from conveyor.modeling.runs import read_snapshot_part

    out: dict[str, float] = {}
    target = tmp / "handoff"
    target.mkdir()
    t = time.perf_counter()
    shutil.copyfile(data_file, target / "data.csv")
    out["copy_data"] = time.perf_counter() - t
    t = time.perf_counter()
    shutil.copytree(run_dir / "data_docs", target / "data_docs")
    out["copy_docs"] = time.perf_counter() - t
    t = time.perf_counter()
    write_parquet_snapshot(frame, target / "snapshot.parquet")  # as validate_data does
    out["write_parquet"] = time.perf_counter() - t
    import pandas as pd

    t = time.perf_counter()
    again = pd.read_parquet(target / "snapshot.parquet")
    out["read_parquet"] = time.perf_counter() - t
    t = time.perf_counter()
    split_frame(again, cfg)
    out["split"] = time.perf_counter() - t
    t = time.perf_counter()
    read_snapshot_part(str(target / "snapshot.parquet"), cfg, "test")
    out["read_test_part"] = time.perf_counter() - t
    t = time.perf_counter()
    sample_snapshot_rows(
        target / "snapshot.parquet",
        cfg.feature_columns,
        n=cfg.deploy.smoke_rows,
        seed=cfg.split.seed,
    )
    out["sample_snapshot"] = time.perf_counter() - t
    t = time.perf_counter()
    load_model(model_uri, dst=target / "model")
    out["load_model"] = time.perf_counter() - t
    return out


def run_plain(pipeline: str, timeout: float = 1800) -> dict[str, Any]:
    """Launch the plain worker; wall = launch -> BENCH_DONE line."""
    env = c.child_env(BENCH_LAUNCHED_AT=repr(time.time()))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--plain-worker", pipeline],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    wall = None
    result = None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("BENCH_DONE") and wall is None:
            wall = time.perf_counter() - started
        elif line.startswith(c.RESULT_MARK):
            result = json.loads(line[len(c.RESULT_MARK) :])
        else:
            lines.append(line)
    stderr = proc.stderr.read() if proc.stderr else ""
    code = proc.wait(timeout=timeout)
    if code != 0 or result is None or wall is None:
        raise RuntimeError(
            f"plain run of {pipeline} exited {code}:\n{''.join(lines)[-2000:]}\n{stderr[-4000:]}"
        )
    result["wall_s"] = wall
    return result


# --------------------------------------------------------------------------- import probe


def import_probe(dag_file: Path) -> dict[str, float]:
    """Cold import seconds of each task's modules in a fork of a process that has
    ``airflow.sdk`` and the DAG file's modules loaded (what a LocalExecutor task starts
    from), plus the scheduler preload's modules when it is on. One fork per task, so
    shared modules count in every task, as they do."""
    result, _ = c.run_worker([__file__, "--probe-worker", str(dag_file)], timeout=900)
    return result


def probe_worker(dag_file: str) -> None:
    import importlib
    import runpy

    import airflow.sdk  # noqa: F401

    runpy.run_path(dag_file, run_name="conveyor_bench_dagfile")
    # A task process loads the plugins before execute() (get_template_context).
    from airflow.sdk.plugins_manager import integrate_macros_plugins

    integrate_macros_plugins()
    # With CONVEYOR_PRELOAD_MODULES (--preload) the scheduler imported these before it
    # forked the worker: a task only pays for what is left.
    from conveyor_runtime.preload import preload, requested_modules

    preloaded = requested_modules()
    if preloaded:
        preload(preloaded)
    out: dict[str, float] = {}
    for task, modules in TASK_IMPORTS.items():
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read)
            t = time.perf_counter()
            for name in modules:
                if name == "great_expectations":
                    from conveyor.validation.expectations import _import_gx

                    _import_gx()
                elif name.startswith("dvc"):
                    from conveyor.data.source import import_dvc

                    import_dvc()
                    importlib.import_module(name)
                else:
                    importlib.import_module(name)
            os.write(write, repr(time.perf_counter() - t).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            text = fh.read()
        os.waitpid(pid, 0)
        out[task] = float(text) if text else float("nan")
    c.emit(out)


# --------------------------------------------------------------------------- dag.test()


def dagtest_worker(pipeline: str) -> None:
    from conveyor_airflow.factory import build_pipeline_dag

    dag = build_pipeline_dag(pipeline)
    dag_run = dag.test(run_conf={})
    tasks = []
    for ti in dag_run.get_task_instances():
        tasks.append(
            {
                "task_id": ti.task_id,
                "state": str(getattr(ti.state, "value", ti.state)),
                "start": ti.start_date.timestamp() if ti.start_date else None,
                "end": ti.end_date.timestamp() if ti.end_date else None,
                "duration": ti.duration,
            }
        )
    state = str(getattr(dag_run.state, "value", dag_run.state))
    c.emit({"state": state, "tasks": tasks})


def run_dagtest(pipeline: str) -> dict[str, Any]:
    import resource

    launched = time.time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    result, wall = c.run_worker([__file__, "--dagtest-worker", pipeline], timeout=3600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_s"] = (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)
    if result["state"] != "success":
        raise RuntimeError(f"dag.test() of {pipeline} ended {result['state']}: {result['tasks']}")
    return {**result, "wall_s": wall, "trigger_at": launched, "run_start": None}


# --------------------------------------------------------------------------- LocalExecutor


class LocalAirflow:
    """The real components under Conveyor's supervisor, on a free port."""

    def __init__(self, settings) -> None:
        from conveyor_runtime.supervisor import AirflowSupervisor

        self.settings = settings
        self.sup = AirflowSupervisor(settings)
        self.client = None
        self.startup: dict[str, float] = {}

    def start(self) -> None:
        from conveyor_runtime.bootstrap import airflow_init
        from conveyor_runtime.processes import free_port
        from conveyor_runtime.supervisor import embedded_client

        t = time.perf_counter()
        airflow_init(self.settings)
        self.startup["init_s"] = time.perf_counter() - t
        t = time.perf_counter()
        state = self.sup.start(port=free_port(), timeout=300)
        self.startup["healthy_s"] = time.perf_counter() - t
        self.client = embedded_client(self.settings, url=state["url"])

    def prepare(self, dag_ids: list[str]) -> None:
        t = time.perf_counter()
        for dag_id in dag_ids:
            self.client.wait_for_dag(dag_id, timeout=300)
            self.client.unpause(dag_id)
        self.startup["dags_parsed_s"] = time.perf_counter() - t

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU seconds (own + reaped children) of every process of the components: task
        processes end up in their LocalExecutor worker's children times."""
        import psutil

        out = {}
        for pid in self.sup.pids():
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            out[pid] = t.user + t.system + t.children_user + t.children_system
        return out

    def idle_cpu(self, seconds: float) -> float:
        """CPU seconds per second the idle components burn (scheduler loop, heartbeats,
        dag-processor re-parsing...): part of every run's CPU time."""
        before = self.cpu_snapshot()
        time.sleep(seconds)
        after = self.cpu_snapshot()
        return (sum(after.values()) - sum(before.values())) / seconds

    def _log_tail(self, dag_id: str, run_id: str, ti: Any) -> str:
        """The end of a failed task's log; what the REST API said when it has none."""
        try:
            return self.client.task_log(dag_id, run_id, ti.task_id, max(ti.try_number, 1))[-3000:]
        except Exception as exc:  # the run's state is the error to report, not this
            return f"(no log: {exc})"

    def run(
        self, dag_id: str, timeout: float = 3600, conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        before = self.cpu_snapshot()
        trigger_at = time.time()
        started = time.perf_counter()
        run_id = self.client.trigger(dag_id, conf=conf or {})
        # Polled once a second: the api-server shares the 2 cores with the tasks, faster
        # polling slows the run down. The wall time comes from the run's end_date instead.
        final = self.client.wait_for_run(dag_id, run_id, timeout=timeout, poll=1.0)
        observed = time.perf_counter() - started
        if final.state != "success":
            logs = "\n".join(
                f"--- {t.task_id} ({t.state})\n" + self._log_tail(dag_id, run_id, t)
                for t in final.tasks
                if t.state == "failed"
            )
            raise RuntimeError(f"Airflow run {run_id} of {dag_id} ended {final.state}\n{logs}")
        tis = self.client.task_instances(dag_id, run_id)
        tasks = [
            {
                "task_id": ti["task_id"],
                "state": ti.get("state"),
                "start": dt(ti.get("start_date")),
                "end": dt(ti.get("end_date")),
                "queued": dt(ti.get("queued_when")),
                "duration": ti.get("duration"),
                "try_number": ti.get("try_number"),
            }
            for ti in tis
        ]
        run_end = dt(final.run.get("end_date"))
        time.sleep(1.0)  # let the last task process exit and be reaped
        after = self.cpu_snapshot()
        # A process gone since `before` counts 0 now; its whole CPU time has moved to its
        # parent's children times, so the sum of differences counts it once.
        cpu = sum(after.values()) - sum(before.values())
        return {
            "run_id": run_id,
            "state": final.state,
            "wall_s": (run_end - trigger_at) if run_end else observed,
            "observed_s": observed,
            "cpu_s": cpu,
            "trigger_at": trigger_at,
            "run_start": dt(final.run.get("start_date")),
            "run_end": run_end,
            "tasks": tasks,
        }

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.sup.stop(timeout=20)


# --------------------------------------------------------------------------- analysis


def breakdown(airflow: dict[str, Any], plain: dict[str, Any], probe: dict[str, float] | None):
    """Split the Airflow wall time into scheduling, compute, handoff I/O, imports, rest."""
    tasks = sorted(
        (t for t in airflow["tasks"] if t["start"] is not None), key=lambda t: t["start"]
    )
    steps, io = plain["steps"], plain["handoff_io"]
    rows = []
    prev_end = airflow.get("run_start") or airflow["trigger_at"]
    first_gap = None
    gaps = 0.0
    for t in tasks:
        gap = t["start"] - prev_end
        if first_gap is None:
            first_gap = gap
        else:
            gaps += gap
        duration = t["duration"] if t["duration"] is not None else t["end"] - t["start"]
        compute = sum(steps.get(s, 0.0) for s in TASK_STEPS.get(t["task_id"], []))
        handoff = sum(io.get(s, 0.0) for s in TASK_IO.get(t["task_id"], []))
        imports = (probe or {}).get(t["task_id"])
        rest = duration - compute - handoff - (imports or 0.0)
        rows.append(
            {
                "task_id": t["task_id"],
                "gap_before_s": gap,
                "duration_s": duration,
                "compute_s": compute,
                "handoff_io_s": handoff,
                "imports_s": imports,
                "rest_s": rest,
            }
        )
        prev_end = t["end"]
    run_start = airflow.get("run_start")
    queue = (run_start - airflow["trigger_at"]) if run_start else 0.0
    tail = airflow["wall_s"] - (prev_end - airflow["trigger_at"]) if tasks else 0.0
    total = {
        "wall_s": airflow["wall_s"],
        "trigger_to_run_start_s": queue,
        "run_start_to_first_task_s": first_gap or 0.0,
        "gaps_between_tasks_s": gaps,
        "after_last_task_s": tail,
        "task_time_s": sum(r["duration_s"] for r in rows),
        "compute_s": sum(r["compute_s"] for r in rows),
        "handoff_io_s": sum(r["handoff_io_s"] for r in rows),
        "imports_s": sum(r["imports_s"] or 0.0 for r in rows) if probe else None,
        "rest_s": sum(r["rest_s"] for r in rows),
    }
    return rows, total


# --------------------------------------------------------------------------- driver


def setup_data(home: Path, datasets: dict[int, dict[str, list[str]]]) -> None:
    """Registry with one CSV per data set (key: rows, negative for the warm-up set); the
    pipeline YAMLs of its plain and Airflow runs (one per run: each starts with no
    production model), and a DAG file for each Airflow one."""
    from conveyor.data.registry import init_registry, publish_file
    from conveyor.registry import tracking
    from conveyor.settings import Settings

    # A deployment's MLflow store exists before any run: create it (and its schema, which
    # takes MLflow's migrations several seconds) now, outside every timed region.
    tracking.configure(Settings.from_env()).search_experiments()
    registry = Path(os.environ["CONVEYOR_DATA_REGISTRY"])
    init_registry(registry, home / "dvc-remote")
    pipelines = Path(os.environ["CONVEYOR_PIPELINES_DIR"])
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    for key, names in datasets.items():
        rows = abs(key)
        rel = f"data/bench_{'warmup' if key < 0 else rows}.csv"
        t = time.perf_counter()
        csv = home / Path(rel).name
        c.make_frame(rows, seed=rows).to_csv(csv, index=False)
        publish_file(registry, rel, csv, message=f"bench data {rows} rows")
        csv.unlink()
        print(
            f"  published {rel} ({c.human_rows(rows)} rows) in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        for name in [*names["plain"], *names["airflow"]]:
            c.write_pipeline(pipelines, c.pipeline_dict(name, rel))
        for name in names["airflow"]:
            (dags / f"{name}.py").write_text(
                "from conveyor_airflow.factory import build_pipeline_dag\n\n"
                f'dag = build_pipeline_dag("{name}")\n'
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="rows, e.g. 10k,100k,1M")
    parser.add_argument(
        "--airflow",
        choices=["local", "dagtest", "none"],
        default="local",
        help="how to run (b): real LocalExecutor, dag.test() in a fresh process, or skip",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs per size and way; the fastest counts"
    )
    parser.add_argument("--quick", action="store_true", help="sizes 200, Airflow skipped")
    parser.add_argument("--no-import-probe", action="store_true", help="skip the import probe")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="the scheduler imports the heavy task modules once and LocalExecutor tasks "
        "inherit them (CONVEYOR_PRELOAD_MODULES=1, conveyor.airflow_preload)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--plain-worker", help=argparse.SUPPRESS)
    parser.add_argument("--probe-worker", help=argparse.SUPPRESS)
    parser.add_argument("--dagtest-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_worker:
        plain_worker(args.plain_worker)
        return 0
    if args.probe_worker:
        probe_worker(args.probe_worker)
        return 0
    if args.dagtest_worker:
        dagtest_worker(args.dagtest_worker)
        return 0

    home = c.bench_env("orchestration", keep=args.keep)
    if args.quick:
        args.sizes, args.airflow, args.no_import_probe = "200", "none", True
    sizes = sorted(c.parse_sizes(args.sizes))
    # Explicit either way, so a variable left in the shell cannot change the baseline.
    os.environ["CONVEYOR_PRELOAD_MODULES"] = "1" if args.preload else ""
    os.environ.update(
        {
            "CONVEYOR_PIPELINES_DIR": str(home / "pipelines"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            # Runs are triggered by the benchmark only: no asset watcher polling the registry.
            "CONVEYOR_DATA_WATCHER": "false",
            "CONVEYOR_TRAINING_POOL": "conveyor_training",
            # As conveyor.airflow_env sets it for the components (the import probe too).
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.REPO / "plugins"),
        }
    )
    repeats = 1 if args.quick else max(1, args.repeats)
    names = {
        rows: {
            mode: [f"bench_{mode[0]}{rows}_{i}" for i in range(repeats)]
            for mode in ("plain", "airflow")
        }
        for rows in sizes
    }
    warm = {"plain": ["bench_pwarm"], "airflow": ["bench_awarm"]}
    started = time.perf_counter()
    print(
        f"Orchestration benchmark: sizes {sizes}, Airflow mode {args.airflow}"
        f"{' with scheduler preload' if args.preload else ''}, "
        f"{repeats} run(s) per size and way (the fastest counts)",
        flush=True,
    )
    datasets = {rows: names[rows] for rows in sizes}
    if not args.quick:
        datasets[-WARMUP_ROWS] = warm  # negative key: the warm-up data set
    setup_data(home, datasets)
    setup_s = time.perf_counter() - started

    # (a) plain, with nothing else running. An untimed warm-up run fills the OS file cache.
    if not args.quick:
        run_plain(warm["plain"][0])
    plain_runs: dict[int, list[dict]] = {rows: [] for rows in sizes}
    for i in range(repeats):
        for rows in sizes:
            result = run_plain(names[rows]["plain"][i])
            plain_runs[rows].append(result)
            print(
                f"  plain   {c.human_rows(rows):>5s} rows: {result['wall_s']:6.1f} s "
                f"(CPU {result['cpu_s']:.1f} s)",
                flush=True,
            )
    plain = {rows: min(runs, key=lambda r: r["wall_s"]) for rows, runs in plain_runs.items()}

    probe = None
    if args.airflow != "none" and not args.no_import_probe:
        dag_file = home / "dags" / f"{names[sizes[0]]['airflow'][0]}.py"
        probe = import_probe(dag_file)
        print(f"  import probe: {json.dumps({k: round(v, 2) for k, v in probe.items()})}")

    airflow_runs: dict[int, list[dict]] = {rows: [] for rows in sizes}
    startup: dict[str, float] = {}
    warmup = None
    error = None
    if args.airflow == "local":
        from conveyor.settings import Settings

        local = LocalAirflow(Settings.from_env())
        try:
            local.start()
            local.prepare(
                [f"train_{n}" for r in sizes for n in names[r]["airflow"]]
                + [f"train_{warm['airflow'][0]}"]
            )
            warmup = local.run(f"train_{warm['airflow'][0]}")
            print(f"  airflow warm-up ({WARMUP_ROWS} rows, cold workers): {warmup['wall_s']:.1f} s")
            startup["idle_cpu_per_s"] = local.idle_cpu(10.0)
            for i in range(repeats):
                for rows in sizes:
                    result = local.run(f"train_{names[rows]['airflow'][i]}")
                    airflow_runs[rows].append(result)
                    print(
                        f"  airflow {c.human_rows(rows):>5s} rows: {result['wall_s']:6.1f} s "
                        f"(CPU {result['cpu_s']:.1f} s)",
                        flush=True,
                    )
        except Exception as exc:  # report what was measured, then fail
            error = f"{type(exc).__name__}: {exc}"
            print(f"Airflow part failed: {error}", file=sys.stderr)
        finally:
            startup.update(local.startup)
            local.stop()
    elif args.airflow == "dagtest":
        from conveyor.settings import Settings
        from conveyor_runtime.bootstrap import airflow_init

        airflow_init(Settings.from_env())
        for i in range(repeats):
            for rows in sizes:
                result = run_dagtest(names[rows]["airflow"][i])
                airflow_runs[rows].append(result)
                print(f"  dag.test {c.human_rows(rows):>5s} rows: {result['wall_s']:6.1f} s")
    airflow = {
        rows: min(runs, key=lambda r: r["wall_s"]) for rows, runs in airflow_runs.items() if runs
    }

    report(
        args,
        sizes,
        plain,
        airflow,
        probe,
        warmup,
        startup,
        setup_s,
        started,
        error,
        runs={"plain": plain_runs, "airflow": airflow_runs},
    )
    return 1 if error else 0


def _goal_cell(ratio: float | None, goal: float | None) -> str:
    if not goal:
        return "-"
    if ratio is None:
        return f"<= {goal}x"
    return f"<= {goal}x ({'met' if ratio <= goal else 'missed'})"


def report(
    args, sizes, plain, airflow, probe, warmup, startup, setup_s, started, error, runs
) -> None:
    label = {"local": "Airflow LocalExecutor", "dagtest": "dag.test() (imports once)"}.get(
        args.airflow, "Airflow"
    )
    per_size = []
    rows_md = []
    for rows in sizes:
        p = plain[rows]
        a = airflow.get(rows)
        # The plain process without interpreter start and imports: the work itself, as a
        # warm process (a notebook, a long-lived worker) would do it.
        warm = p["wall_s"] - p["process_start_s"] - p["steps"]["imports"]
        r = a["wall_s"] / p["wall_s"] if a else None
        warm_r = a["wall_s"] / warm if a else None
        cpu_r = a["cpu_s"] / p["cpu_s"] if a and a.get("cpu_s") and p.get("cpu_s") else None
        goal, warm_goal = GOALS.get(rows), WARM_GOALS.get(rows)
        per_size.append(
            {
                "rows": rows,
                "plain_s": p["wall_s"],
                "plain_warm_s": warm,
                "airflow_s": a["wall_s"] if a else None,
                "plain_cpu_s": p.get("cpu_s"),
                "airflow_cpu_s": a.get("cpu_s") if a else None,
                "cpu_ratio": cpu_r,
                "warm_ratio": warm_r,
                "warm_goal": warm_goal,
                "ratio": r,
                "goal": goal,
            }
        )
        rows_md.append(
            [
                c.human_rows(rows),
                c.secs(warm, 1),
                c.secs(a["wall_s"], 1) if a else "-",
                c.ratio(warm_r),
                _goal_cell(warm_r, warm_goal),
                c.secs(p["wall_s"], 1),
                c.ratio(r),
                _goal_cell(r, goal),
                c.secs(p.get("cpu_s"), 1),
                c.secs(a.get("cpu_s"), 1) if a else "-",
                c.ratio(cpu_r),
                " / ".join(c.secs(x["wall_s"], 1) for x in runs["plain"][rows]),
                " / ".join(c.secs(x["wall_s"], 1) for x in runs["airflow"].get(rows, [])) or "-",
            ]
        )
    md = c.print_table(
        f"Training pipeline: {label} vs one plain Python process (baseline; 30 float "
        "features, HistGradientBoostingClassifier). Headline: warm vs warm, the plain "
        "process's wall time without its interpreter start and imports (what a team with a "
        "running Airflow pays per run); also against the plain process as launched, imports "
        "included. Wall = launch/trigger to end, fastest of the runs listed; CPU = user+system "
        "seconds of every process involved in that run (Airflow: all components and task "
        "processes)",
        [
            "rows",
            "plain w/o imports s",
            f"{label} s",
            "warm ratio",
            "goal",
            "plain as launched s",
            "ratio",
            "goal",
            "plain CPU s",
            "Airflow CPU s",
            "CPU ratio",
            "plain runs s",
            "Airflow runs s",
        ],
        rows_md,
    )

    plain_md = c.print_table(
        "Plain process: where its time goes (s)",
        ["rows", "process start", *next(iter(plain.values()))["steps"].keys(), "total"],
        [
            [
                c.human_rows(rows),
                c.secs(plain[rows]["process_start_s"]),
                *(c.secs(v) for v in plain[rows]["steps"].values()),
                c.secs(plain[rows]["wall_s"], 1),
            ]
            for rows in sizes
        ],
    )
    md += "\n\n" + plain_md

    details = {}
    for rows in sizes:
        if rows not in airflow:
            continue
        task_rows, total = breakdown(airflow[rows], plain[rows], probe)
        details[rows] = {"tasks": task_rows, "total": total}
        task_md = c.print_table(
            f"{label}, {c.human_rows(rows)} rows: per task (s); compute = the plain process's "
            "time for the same steps",
            ["task", "gap before", "duration", "compute", "handoff I/O", "imports (probe)", "rest"],
            [
                [
                    t["task_id"],
                    c.secs(t["gap_before_s"]),
                    c.secs(t["duration_s"]),
                    c.secs(t["compute_s"]),
                    c.secs(t["handoff_io_s"]),
                    c.secs(t["imports_s"]),
                    c.secs(t["rest_s"]),
                ]
                for t in task_rows
            ],
        )
        md += "\n\n" + task_md
    if details:
        overhead_rows = []
        for rows, d in details.items():
            t = d["total"]
            p = plain[rows]
            overhead_rows.append(
                [
                    c.human_rows(rows),
                    c.secs(t["wall_s"] - p["wall_s"], 1),
                    c.secs(t["trigger_to_run_start_s"] + t["run_start_to_first_task_s"]),
                    c.secs(t["gaps_between_tasks_s"] + t["after_last_task_s"]),
                    c.secs(
                        (t["imports_s"] - p["steps"]["imports"])
                        if t["imports_s"] is not None
                        else None
                    ),
                    c.secs(t["handoff_io_s"]),
                    c.secs(t["rest_s"] - p["process_start_s"]),
                ]
            )
        md += "\n\n" + c.print_table(
            f"Where the extra time goes ({label} - plain, s)",
            [
                "rows",
                "extra total",
                "trigger -> 1st task",
                "gaps + tail",
                "repeated imports",
                "handoff I/O",
                "rest (task start, parse, XCom, logs)",
            ],
            overhead_rows,
        )

    if startup or warmup:
        labels = {
            "init_s": "airflow db migrate + pool (conveyor airflow-init)",
            "healthy_s": "4 components started until healthy",
            "dags_parsed_s": "DAGs parsed and unpaused",
            "idle_cpu_per_s": "idle components: CPU seconds per second",
        }
        info = [[labels.get(k, k), c.secs(v, 2)] for k, v in startup.items()]
        if warmup:
            info.append(
                [f"warm-up run, {WARMUP_ROWS} rows (cold workers)", c.secs(warmup["wall_s"], 1)]
            )
        md += "\n\n" + c.print_table("Airflow start-up (not in the ratios)", ["step", "s"], info)

    if per_size and any(p["ratio"] for p in per_size):
        plt = c.pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        xs = [p["rows"] for p in per_size if p["ratio"]]
        ax1.plot(xs, [p["plain_s"] for p in per_size if p["ratio"]], "o-", label="plain")
        ax1.plot(xs, [p["airflow_s"] for p in per_size if p["ratio"]], "o-", label=label)
        ax1.set_xscale("log")
        ax1.set_xlabel("rows")
        ax1.set_ylabel("seconds")
        ax1.legend()
        ax1.set_title("Training pipeline wall time")
        ax2.plot(xs, [p["warm_ratio"] for p in per_size if p["ratio"]], "o-", label="warm vs warm")
        ax2.plot(
            xs, [p["ratio"] for p in per_size if p["ratio"]], "o--", label="vs plain as launched"
        )
        for rows, goal in WARM_GOALS.items():
            ax2.plot([rows], [goal], "r_", markersize=20)
        ax2.legend()
        ax2.set_xscale("log")
        ax2.set_xlabel("rows")
        ax2.set_ylabel(f"{label} / plain")
        ax2.set_title("Orchestration overhead (red: goals)")
        c.save_plot(fig, NAME)

    c.write_result(
        NAME,
        {
            "sizes": sizes,
            "airflow_mode": args.airflow,
            "airflow_label": label,
            "preload": args.preload,
            "goals": {str(k): v for k, v in GOALS.items()},
            "warm_goals": {str(k): v for k, v in WARM_GOALS.items()},
            "per_size": per_size,
            "plain": {str(k): v for k, v in plain.items()},
            "airflow": {str(k): v for k, v in airflow.items()},
            "runs": {
                mode: {str(k): [r["wall_s"] for r in v] for k, v in by_size.items()}
                for mode, by_size in runs.items()
            },
            "breakdown": {str(k): v for k, v in details.items()},
            "import_probe": probe,
            "startup": startup,
            "warmup": warmup,
            "setup_s": setup_s,
            "error": error,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
