"""Shared helpers of the benchmark scripts in ``bench/`` (not a benchmark itself).

Every script calls :func:`bench_env` first: it switches off every library's phone-home
and points Conveyor, MLflow and Airflow at a private temporary directory, so a benchmark
never reads or writes the repository's ``.conveyor`` and a demo left running on this
machine is not disturbed. Results go to ``bench/results/<name>.json`` (kept in git) and
``bench/results/<name>.png`` (ignored by git).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
#: Where results go; the smoke tests point it elsewhere so they never overwrite real ones.
RESULTS = Path(os.environ.get("CONVEYOR_BENCH_RESULTS") or BENCH / "results")
#: Lines a worker subprocess prints to hand a JSON result to its parent.
RESULT_MARK = "BENCH_RESULT "

TELEMETRY_OFF = {
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}

#: Number of generated feature columns in every benchmark dataset.
N_FEATURES = 30


# --------------------------------------------------------------------------- environment


def bench_env(prefix: str, *, keep: bool = False) -> Path:
    """Private CONVEYOR_HOME / MLflow store / AIRFLOW_HOME under a temp dir; telemetry off.

    Must run before anything imports Airflow, MLflow or GX (they read the environment on
    import). The directory is removed at exit unless ``keep``.
    """
    from conveyor.settings import disable_telemetry

    for key, value in TELEMETRY_OFF.items():
        os.environ[key] = value
    disable_telemetry()
    home = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-{prefix}-"))
    os.environ.update(
        {
            "CONVEYOR_PROJECT_DIR": str(REPO),
            "CONVEYOR_HOME": str(home),
            "CONVEYOR_DATA_REGISTRY": str(home / "data-registry"),
            "CONVEYOR_ARTIFACT_ROOT": str(home / "artifacts"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "CONVEYOR_MLFLOW_ARTIFACTS": str(home / "mlflow" / "artifacts"),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "MPLBACKEND": "Agg",
            "PYTHONWARNINGS": "ignore",
        }
    )
    if not keep:
        atexit.register(shutil.rmtree, home, True)
    return home


def child_env(**extra: str) -> dict[str, str]:
    """The current environment plus ``extra``, for worker subprocesses."""
    env = dict(os.environ)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- subprocesses


def run_worker(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900
) -> tuple[dict[str, Any], float]:
    """Run ``python args...``; returns (its last ``BENCH_RESULT`` JSON, wall seconds).

    Raises RuntimeError with the tail of its output if it fails or prints no result.
    """
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    results = [
        line[len(RESULT_MARK) :]
        for line in done.stdout.splitlines()
        if line.startswith(RESULT_MARK)
    ]
    if done.returncode != 0 or not results:
        raise RuntimeError(
            f"worker {' '.join(args)[:200]} exited {done.returncode}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return json.loads(results[-1]), wall


def emit(result: dict[str, Any]) -> None:
    """Hand ``result`` to the parent process (see :func:`run_worker`)."""
    print(RESULT_MARK + json.dumps(result, default=float), flush=True)


# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Current resident set size of this process."""
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import psutil

    return psutil.Process().memory_info().rss


def trim_memory() -> None:
    """Collect garbage and hand the allocator's free memory back to the OS (glibc
    ``malloc_trim``), so an RSS baseline taken next does not hide reusable free memory."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak RSS since start or the last :func:`reset_peak_rss` (VmHWM), else ru_maxrss."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ru_maxrss_bytes() -> int:
    """``getrusage`` peak RSS of this process (never reset)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- data


def feature_names(n: int = N_FEATURES) -> list[str]:
    return [f"f{i:02d}" for i in range(n)]


def make_frame(rows: int, *, n_features: int = N_FEATURES, target: bool = True, seed: int = 0):
    """Generated tabular data: ``n_features`` float columns in [-10, 10] (+ a 0/1 target).

    The target depends on a few features plus noise, so a model has something to learn
    and the metrics are neither 0.5 nor 1.0.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for name in feature_names(n_features):
        columns[name] = np.clip(rng.normal(0.0, 3.0, rows), -10.0, 10.0).round(4)
    frame = pd.DataFrame(columns)
    if target:
        logit = (
            frame["f00"] * 0.8
            - frame["f01"] * 0.5
            + frame["f02"] * frame["f03"] * 0.1
            + rng.normal(0, 2.0, rows)
        )
        frame["target"] = (logit > 0).astype("int64")
    return frame


def column_specs(n_features: int = N_FEATURES, *, target: bool = True) -> dict[str, Any]:
    """``validation.columns`` of the generated data (float features, 0/1 int target)."""
    columns: dict[str, Any] = {
        name: {"type": "float", "min": -10.0, "max": 10.0} for name in feature_names(n_features)
    }
    if target:
        columns["target"] = {"type": "int", "allowed": [0, 1]}
    return columns


def pipeline_dict(name: str, data_path: str, *, n_features: int = N_FEATURES) -> dict[str, Any]:
    """A pipeline YAML like ``include/pipelines/breast_cancer.yaml`` for generated data:
    same estimator, no grid search, thresholds the generated data passes."""
    return {
        "schema_version": 1,
        "name": name,
        "description": f"Benchmark pipeline on generated data ({data_path}).",
        "task": "classification",
        "data": {"path": data_path, "rev": "main", "format": "csv"},
        "target": "target",
        "validation": {
            "min_rows": 50,
            "max_rows": 100_000_000,
            "columns": column_specs(n_features),
        },
        "model": {
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"max_iter": 100, "learning_rate": 0.1},
        },
        "split": {"test_size": 0.2, "seed": 42},
        "metrics": {"primary": "roc_auc", "thresholds": {"roc_auc": 0.5}, "max_regression": 0.05},
        # No model service runs during the benchmarks: the deploy step's contract check and
        # smoke test run, the check of a live service does not (same for both ways).
        "deploy": {"verify": "never"},
        "tags": ["bench"],
    }


def write_pipeline(pipelines_dir: Path, config: dict[str, Any]) -> Path:
    import yaml

    pipelines_dir.mkdir(parents=True, exist_ok=True)
    path = pipelines_dir / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --------------------------------------------------------------------------- numbers


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def parse_sizes(text: str) -> list[int]:
    """``"10k,100000,1M"`` -> ``[10000, 100000, 1000000]``."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        factor = 1
        if part.endswith("k"):
            factor, part = 1_000, part[:-1]
        elif part.endswith("m"):
            factor, part = 1_000_000, part[:-1]
        sizes.append(int(float(part) * factor))
    if not sizes:
        raise ValueError("no sizes given")
    return sizes


def human_rows(rows: int) -> str:
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def mb(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:,.2f}" if n < 10 * 2**20 else f"{n / 2**20:,.0f}"


def secs(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}x"


# --------------------------------------------------------------------------- output


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print a table with rich and return it as GitHub markdown (for bench/README.md)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    Console(width=max(100, shutil.get_terminal_size((160, 20)).columns)).print(table)
    lines = [
        f"**{title}**",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """nproc, memory, CPU model, Python and the key package versions."""
    from importlib import metadata

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for dist in (
        "apache-airflow",
        "great-expectations",
        "scikit-learn",
        "pandas",
        "numpy",
        "pyarrow",
        "mlflow",
        "dvc",
    ):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = None
    info["packages"] = packages
    return info


def write_result(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` with a timestamp and the machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path


def plot_path(name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}.png"


def save_plot(fig, name: str) -> Path:
    """Lay out ``fig`` and write it to ``bench/results/<name>.png``."""
    fig.tight_layout()
    path = plot_path(name)
    fig.savefig(path, dpi=100)
    return path


def rows_axis(ax, *, ylabel: str, title: str, logy: bool = False) -> None:
    """The common x axis of the scaling plots (rows, log scale), labels and legend."""
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(f"rows ({N_FEATURES} features)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def train_and_promote(settings: Any, cfg: Any, key: str) -> tuple[str, Any, Any]:
    """Fit ``cfg`` on scikit-learn's breast-cancer data, log it to MLflow, register it and
    make it production: the benchmark model of bench/serving.py and bench/scoring.py.
    Returns (version, train frame, test frame); ``key`` keys the registration."""
    import mlflow
    import yaml
    from sklearn.datasets import load_breast_cancer

    from conveyor.data.splits import split_frame
    from conveyor.modeling.training import log_model, train_model
    from conveyor.registry import tracking
    from conveyor.registry.models import lineage_tags, promote, register_version

    train, test = split_frame(load_breast_cancer(as_frame=True).frame, cfg)
    result = train_model(train, cfg, n_jobs=1)
    client = tracking.configure(settings)
    experiment = tracking.ensure_experiment(client, cfg.name, settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        uri = log_model(
            result,
            cfg,
            input_example=train[cfg.feature_columns],
            config_yaml=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        )
    version, _ = register_version(
        client,
        name=cfg.model_name,
        model_uri=uri,
        mlflow_run_id=run.info.run_id,
        dag_id="bench",
        run_id=key,
        tags=lineage_tags(pipeline=cfg.name),
    )
    promote(client, cfg.model_name, version, reason="bench", actor="bench")
    return version, train, test
