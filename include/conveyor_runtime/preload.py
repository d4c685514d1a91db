"""Import the heavy task modules once in the Airflow scheduler, so LocalExecutor tasks inherit them.

On Linux the LocalExecutor's workers are ``multiprocessing`` forks of the scheduler process
and every task process is an ``os.fork()`` of its worker (the task supervisor,
``airflow.sdk.execution_time.supervisor``). A module the scheduler has imported is therefore
already in every task process, shared copy-on-write, instead of being imported again by each
task (pandas, scikit-learn, MLflow and Great Expectations: seconds per task).

Opt-in: ``CONVEYOR_PRELOAD_MODULES`` set to ``1`` (the default list below) or to a comma
separated list of modules (``default`` in the list stands for the default list). Airflow
imports ``airflow_local_settings`` in every component; ours (``airflow_config/``, put on
``PYTHONPATH`` by :func:`conveyor_runtime.airflow_env.airflow_env` only when the variable is set) calls
:func:`install`, which does nothing outside ``airflow scheduler``: the api-server,
dag-processor and triggerer stay as they are, and so does DAG parsing.

No Airflow import here: this module only reads ``sys.argv`` and the environment.
"""

from __future__ import annotations

import importlib
import os
import sys
import time

ENV_VAR = "CONVEYOR_PRELOAD_MODULES"

# What Conveyor's tasks import (bench/orchestration.py TASK_IMPORTS), heaviest first. Checked
# for fork-safety: no Python threads, sockets or open files are created by these imports;
# the native BLAS pools of numpy/scipy handle fork themselves (pthread_atfork).
DEFAULT_MODULES = (
    "great_expectations",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
    # The SQLite (SQLAlchemy) stores: importing them builds MLflow's ORM mappers, about
    # 1.5 s that every task touching the registry paid on its first call. Imports only:
    # no engine or connection exists until a task creates its client.
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "threadpoolctl",
    "matplotlib.pyplot",
    "dvc.repo",
    "dvc.api",
    "conveyor.registry.caching",
    "conveyor.data.source",
    "conveyor.validation.expectations",
    "conveyor.modeling.training",
    "conveyor.registry.tracking",
    "conveyor.registry.models",
    "conveyor.modeling.evaluation",
    "conveyor.modeling.model_io",
    "conveyor.deploy.rollout",
    # The model card (evaluate and register) and the one-call steps since issue 14.
    "sklearn.inspection",
    "sklearn.calibration",
    "fairlearn.metrics",
    "conveyor.cards.analysis",
    "conveyor.cards.card",
    "conveyor.modeling.runs",
    "conveyor.monitoring.drift",
    "conveyor.registry.candidates",
    "conveyor.registry.pin",
    "conveyor.deploy.candidate",
)

_OFF = ("", "0", "false", "no", "off")
_ON = ("1", "true", "yes", "on", "default")


def requested_modules(environ: dict[str, str] | None = None) -> list[str]:
    """Modules named by ``CONVEYOR_PRELOAD_MODULES`` (empty list: preload is off)."""
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if raw.lower() in _OFF:
        return []
    if raw.lower() in _ON:
        return list(DEFAULT_MODULES)
    out: list[str] = []
    for name in (part.strip() for part in raw.split(",")):
        if not name:
            continue
        for module in DEFAULT_MODULES if name.lower() == "default" else (name,):
            if module not in out:
                out.append(module)
    return out


def is_scheduler(argv: list[str] | None = None) -> bool:
    """True in ``airflow scheduler`` (console script or ``python -m airflow``), nowhere else."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] != "scheduler":
        return False
    prog = os.path.basename(argv[0])
    return prog == "airflow" or argv[0].endswith(os.path.join("airflow", "__main__.py"))


def _import(name: str) -> None:
    if name == "great_expectations" or name.startswith("great_expectations."):
        from conveyor.validation.expectations import (
            _import_gx,  # telemetry off before GX is imported
        )

        _import_gx()
    elif name == "dvc" or name.startswith("dvc."):
        from conveyor.data.source import import_dvc  # removes DVC's CLI log handlers

        import_dvc()
    importlib.import_module(name)


def _reseed_numpy() -> None:
    """A forked child would share the parent's global numpy RNG state: give it its own."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def preload(modules: list[str]) -> dict[str, float]:
    """Import ``modules``; seconds per module. A module that fails is reported and skipped."""
    from conveyor.settings import disable_telemetry

    disable_telemetry()
    timings: dict[str, float] = {}
    for name in modules:
        started = time.perf_counter()
        try:
            _import(name)
        except Exception as exc:  # never stop the scheduler for an optimisation
            print(f"conveyor preload: skipped {name}: {exc!r}", file=sys.stderr, flush=True)
            continue
        timings[name] = time.perf_counter() - started
    os.register_at_fork(after_in_child=_reseed_numpy)
    return timings


def install() -> dict[str, float] | None:
    """Preload when enabled and in the scheduler; ``None`` when nothing was done."""
    modules = requested_modules()
    if not modules or not is_scheduler():
        return None
    started = time.perf_counter()
    timings = preload(modules)
    print(
        f"conveyor preload: {len(timings)}/{len(modules)} modules imported in the scheduler "
        f"in {time.perf_counter() - started:.1f} s (LocalExecutor tasks inherit them)",
        file=sys.stderr,
        flush=True,
    )
    return timings
