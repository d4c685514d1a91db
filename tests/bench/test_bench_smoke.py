"""Smoke tests of the benchmark scripts in ``bench/``: tiny sizes, so they cannot rot.

All scripts start at once (module fixture) and each test waits for its own, so the
module takes about as long as the slowest script rather than the sum. Results go to a
temporary directory (``CONVEYOR_BENCH_RESULTS``), never to ``bench/results``. Nothing here
asserts on timings: only that each script exits 0, prints its table and writes its JSON.
The real-Airflow parts (``orchestration.py``, ``caching.py``, ``data_latency.py``) are
skipped by ``--quick``; their plain-process parts run. ``serving.py`` runs both servers
with one-second load windows; ``scoring.py`` scores 2,000 rows both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
#: script -> (arguments, a title its table prints, keys its JSON must have)
SCRIPTS = {
    "parse_cost": (["--quick"], "Parse cost summary", ["dagbag_extra_s", "files"]),
    "validation": (["--quick"], "GX validate_frame vs plain pandas", ["per_size"]),
    "memory": (["--quick"], "Training step peak RSS", ["per_size", "task_ratio_largest"]),
    "orchestration": (["--quick"], "Plain process: where its time goes", ["plain", "per_size"]),
    "caching": (["--quick"], "Caching: unchanged-input run / full run", ["per_size"]),
    "data_latency": (["--quick"], "Data change latency summary", ["poll_check_s", "pushes"]),
    "serving": (["--quick"], "Serving summary", ["cells", "ready_s"]),
    "scoring": (["--quick"], "Batch scoring summary", ["conveyor", "mlflow", "ratio"]),
    "drift": (["--quick"], "Drift check", ["per_size"]),
    "scale": (["--quick"], "Scale summary", ["goals", "parse"]),
    "multi_model": (
        ["--quick"],
        "Multi-model summary",
        ["models", "memory_per_model_bytes", "one_model", "many_models", "separate"],
    ),
}
TIMEOUT = 600


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture(scope="module")
def launched(results_dir: Path):
    env = {
        **os.environ,
        "CONVEYOR_BENCH_RESULTS": str(results_dir),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    procs = {}
    for name, (args, _, _) in SCRIPTS.items():
        out = (results_dir / f"{name}.out").open("w")
        procs[name] = subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script_runs_on_tiny_sizes(name: str, launched, results_dir: Path):
    _, title, keys = SCRIPTS[name]
    code = launched[name].wait(timeout=TIMEOUT)
    output = (results_dir / f"{name}.out").read_text()
    assert code == 0, output[-5000:]
    assert title in output, output[-3000:]
    data = json.loads((results_dir / f"{name}.json").read_text())
    assert data["benchmark"] == name
    assert data["machine"]["nproc"] >= 1
    for key in keys:
        assert data.get(key) not in (None, [], {}), (key, data)
    assert data["markdown"].startswith("**") and "\n| " in data["markdown"]


def test_orchestration_quick_ran_the_plain_process_only(launched, results_dir: Path):
    assert launched["orchestration"].wait(timeout=TIMEOUT) == 0
    data = json.loads((results_dir / "orchestration.json").read_text())
    assert data["airflow_mode"] == "none"
    [size] = data["per_size"]
    assert size["plain_s"] > 0 and size["ratio"] is None
    steps = data["plain"][str(size["rows"])]["steps"]
    assert {"validate", "train", "register"} <= set(steps)


def test_quick_runs_without_airflow_measure_what_they_can(launched, results_dir: Path):
    for name in ("caching", "data_latency", "serving", "scoring"):
        assert launched[name].wait(timeout=TIMEOUT) == 0
    caching = json.loads((results_dir / "caching.json").read_text())
    assert caching["mode"] == "plain"
    [size] = caching["per_size"]
    assert size["cached_s"] > 0
    assert size["full_s"] > 0
    latency = json.loads((results_dir / "data_latency.json").read_text())
    assert latency["airflow"] is False and latency["max_running_slots"] is None
    serving = json.loads((results_dir / "serving.json").read_text())
    assert serving["same_answers"] is True
    scoring = json.loads((results_dir / "scoring.json").read_text())
    assert scoring["rows"] == 2000 and scoring["same_labels"] is True
    assert {cell["clients"] for cell in serving["cells"]} == {1, 4}
    assert {cell["payload"] for cell in serving["cells"]} == {"1 row", "100 rows"}


def test_run_all_builds_the_readme_from_results(launched, results_dir: Path, tmp_path: Path):
    for proc in launched.values():
        proc.wait(timeout=TIMEOUT)
    readme = tmp_path / "README.md"
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--no-run", "--readme-path", str(readme)],
        env={**os.environ, "CONVEYOR_BENCH_RESULTS": str(results_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = readme.read_text()
    for heading in (
        "Parse cost",
        "Orchestration overhead",
        "Caching",
        "Data change latency",
        "Serving",
        "Validation",
        "Memory",
        "Batch scoring",
    ):
        assert heading in text
    assert "| rows |" in text
