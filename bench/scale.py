"""Hundreds of pipelines: parse cost, data watchers in the triggerer, data-change latency and
the scheduler's loop, with N generated pipelines (default 500) on one DVC data registry.

Setup: N copies of the demo's ``include/pipelines/breast_cancer.yaml`` (``scale_0000`` ...),
each watching its own file ``data/scale/<name>.csv`` in one shared registry (all added
with one ``dvc add``, one commit), one DAG file per pipeline, and the repository's
``dags/conveyor_*.py`` files that build one DAG per pipeline.

1. **Parse cost**, as the dag-processor pays it: a fresh interpreter imports
   ``airflow.sdk``, then runs each DAG file in a forked copy of itself (as
   bench/parse_cost.py does; each child starts with no Conveyor module loaded). A sample
   of the per-pipeline files (they differ only in the name), and every multi-DAG file,
   the slowest of them also under cProfile (where the time goes). Goals: < 2 s per
   pipeline file, < 20 s per multi-DAG file (``dag_file_processor_timeout``: 50 s).
2. **Triggerer CPU of N data watchers**, on a real Airflow (scheduler, dag-processor and
   api-server under ``conveyor_runtime.supervisor.AirflowSupervisor``; the triggerer started
   here so that it can be swapped): the N training DAGs are unpaused (N
   ``DvcUpdateTrigger`` asset watchers), and the triggerer's CPU seconds (its process tree,
   the git children included) / wall seconds are measured over a window, first with the
   provider as of ``--baseline-rev`` (each watcher polls alone), then with the current
   one (one shared poll per registry branch). Goal: <= 10 % of one core.
3. **Data-change latency with N watchers**: a new version of one pipeline's data is
   pushed; latency = that pipeline's new run's ``queued_at`` (REST) - push. Goal: <= poll
   interval + 15 s. Each such run is marked failed at once (training is not the subject).
4. **Scheduler loop time with N DAGs**: Airflow's own ``scheduler.scheduler_loop_duration``
   timer, exported over OpenTelemetry (OTLP/HTTP) to a small receiver here; mean loop
   time and loops per second in each window, with the scheduler's CPU share.

The dag-processor re-parses every file each ``min_file_process_interval`` (default 30 s);
at N files that alone would need N x (parse time) / 30 s cores, so the Airflow part runs
with it at ``--min-file-process-interval`` (default 600 s) and reports what the default
would cost.

``--quick`` (smoke test): 5 pipelines, parse part only, no Airflow.

    uv run python bench/scale.py [--pipelines 500] [--poll 10] [--window 60] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import _common as c

NAME = "scale"
PREFIX = "scale_"
GOAL_FILE_S = 2.0
GOAL_MULTI_S = 20.0
GOAL_TRIGGERER_CORE = 0.10
GOAL_EXTRA_S = 15.0
#: The provider before watchers shared one poll (the commit before that change).
BASELINE_REV = "6716073~1"
#: The repository's DAG files that build one DAG per pipeline (or read every pipeline).
MULTI_FILES = (
    "conveyor_monitor.py",
    "conveyor_watch.py",
    "conveyor_score.py",
    "conveyor_housekeeping.py",
    "conveyor_rollback.py",
)


def pipeline_name(i: int) -> str:
    return f"{PREFIX}{i:04d}"


def data_path(name: str) -> str:
    return f"data/scale/{name}.csv"


# --------------------------------------------------------------------------- setup


def setup(home: Path, n: int, settings) -> dict[str, Any]:
    """Registry with N tracked files (one ``dvc add``, one commit), N pipeline YAMLs, the
    DAG folders: ``dags_all`` (per-pipeline files + the multi-DAG files) and
    ``dags_airflow`` (the per-pipeline files only)."""
    import shutil

    import yaml

    from conveyor.data.registry import init_registry
    from conveyor_runtime.demo import dataset_frame

    t0 = time.perf_counter()
    registry = init_registry(settings.data_registry, home / "dvc-remote")
    folder = registry / "data" / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    csv = home / "base.csv"
    dataset_frame("breast_cancer").to_csv(csv, index=False)
    names = [pipeline_name(i) for i in range(n)]
    for name in names:
        shutil.copyfile(csv, registry / data_path(name))
    env = c.child_env()
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(
        [*dvc, "add", "--quiet", *[data_path(x) for x in names]], cwd=registry, env=env, check=True
    )
    subprocess.run([*dvc, "push", "--quiet"], cwd=registry, env=env, check=True)
    subprocess.run(["git", "add", "data/scale"], cwd=registry, check=True)
    subprocess.run(
        ["git", "commit", "--quiet", "-m", f"{n} scale datasets"], cwd=registry, check=True
    )
    registry_s = time.perf_counter() - t0

    base = yaml.safe_load((c.REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    pipelines = Path(os.environ["CONVEYOR_PIPELINES_DIR"])
    dags_all, dags_airflow = home / "dags_all", home / "dags_airflow"
    dags_all.mkdir()
    dags_airflow.mkdir()
    for name in names:
        cfg = dict(base, name=name, description=f"Scale benchmark copy of breast_cancer ({name}).")
        cfg["data"] = dict(base["data"], path=data_path(name))
        c.write_pipeline(pipelines, cfg)
        text = (
            f'"""Training DAG of {name}."""\n\n'
            "from conveyor_airflow.factory import build_pipeline_dag\n\n"
            f'dag = build_pipeline_dag("{name}")\n'
        )
        (dags_all / f"{name}.py").write_text(text)
        (dags_airflow / f"{name}.py").write_text(text)
    for multi in MULTI_FILES:
        if (c.REPO / "dags" / multi).exists():
            shutil.copy(c.REPO / "dags" / multi, dags_all / multi)
    return {
        "registry": str(registry),
        "names": names,
        "dags_all": str(dags_all),
        "dags_airflow": str(dags_airflow),
        "registry_setup_s": registry_s,
    }


def push_new_version(registry: str, name: str, seed: int) -> tuple[str, float]:
    """A new version of ``name``'s data (the demo rows plus a noisy bootstrap sample),
    published with ``publish_file``; returns (commit sha, seconds the push took)."""
    import numpy as np
    import pandas as pd

    from conveyor.data.registry import publish_file
    from conveyor_runtime.demo import dataset_frame

    frame = dataset_frame("breast_cancer")
    rng = np.random.default_rng(seed)
    extra = frame.sample(n=50, replace=True, random_state=seed)
    features = [col for col in frame.columns if col != "target"]
    extra[features] = (extra[features] * rng.normal(1.0, 0.02, (50, len(features)))).clip(lower=0)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "new.csv"
        pd.concat([frame, extra], ignore_index=True).to_csv(csv, index=False)
        t = time.perf_counter()
        sha = publish_file(registry, data_path(name), csv, message=f"new data for {name}")
    return sha, time.perf_counter() - t


# --------------------------------------------------------------------------- parse cost


def worker_parse(folder: str, files: list[str], profile: str | None) -> None:
    """In a fresh interpreter: import airflow.sdk, then each file in a forked child
    (parse_cost's helpers); ``profile``: that file once more under cProfile."""
    import airflow.sdk  # noqa: F401
    from parse_cost import _in_child, _run_dag_file

    out: dict[str, Any] = {}
    for name in files:
        out[name] = _in_child(lambda name=name: _run_dag_file(str(Path(folder) / name)))
    prof = None
    if profile:
        prof = _in_child(lambda: _profile_file(str(Path(folder) / profile)))
    c.emit({"files": out, "profile": prof})


def _profile_file(path: str, top: int = 15) -> dict[str, Any]:
    import cProfile
    import pstats
    import runpy

    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    runpy.run_path(path, run_name="conveyor_bench_dagfile")
    profiler.disable()
    wall = time.perf_counter() - t
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        short = file.replace(str(c.REPO) + "/", "").split("site-packages/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({func})",
                "calls": ncalls,
                "own_s": tottime,
                "cum_s": cumtime,
            }
        )
    by_cum = sorted(rows, key=lambda r: -r["cum_s"])
    return {
        "file": Path(path).name,
        "wall_profiled_s": wall,
        "top_cumulative": [r for r in by_cum if "conveyor" in r["function"]][:top],
        "top_own": sorted(rows, key=lambda r: -r["own_s"])[:top],
    }


def measure_parse(setup_info: dict[str, Any], sample: int) -> dict[str, Any]:
    names = setup_info["names"]
    step = max(1, len(names) // sample)
    singles = [f"{n}.py" for n in names[::step][:sample]]
    multis = [m for m in MULTI_FILES if (Path(setup_info["dags_all"]) / m).exists()]
    first, _ = c.run_worker(
        [__file__, "--worker-parse", setup_info["dags_all"], *singles, *multis],
        timeout=1800,
    )
    slowest = max(multis, key=lambda m: first["files"][m]["extra_s"])
    again, _ = c.run_worker(
        [__file__, "--worker-parse", setup_info["dags_all"], *multis, "--profile", slowest],
        timeout=1800,
    )
    files = {}
    for name, res in first["files"].items():
        times = [res["extra_s"]] + (
            [again["files"][name]["extra_s"]] if name in again["files"] else []
        )
        files[name] = {
            "extra_s": min(times),
            "runs_s": times,
            "dags": res["dags"],
            "heavy": res["heavy"],
        }
    return {"singles": singles, "multis": multis, "files": files, "profile": again["profile"]}


# --------------------------------------------------------------------------- OTel receiver


class LoopMetrics:
    """A minimal OTLP/HTTP metrics receiver that keeps the scheduler's
    ``scheduler_loop_duration`` (cumulative count and sum) as Airflow exports it."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, float]] = []  # (time, count, sum ms)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with contextlib.suppress(Exception):  # a malformed export: ignored
                    receiver.ingest(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ingest(self, body: bytes) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        req = ExportMetricsServiceRequest()
        req.ParseFromString(body)
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if "scheduler_loop_duration" not in metric.name:
                        continue
                    kind = metric.WhichOneof("data")
                    points = getattr(metric, kind).data_points
                    for p in points:
                        with self.lock:
                            self.samples.append((time.time(), int(p.count), float(p.sum)))

    def window(self, start: float, end: float) -> dict[str, Any] | None:
        """Mean loop time (ms) and loops per second between the exports nearest to
        ``start`` and ``end``."""
        with self.lock:
            inside = [s for s in self.samples if start - 1 <= s[0] <= end + 1]
        if len(inside) < 2:
            return None
        (t0, n0, s0), (t1, n1, s1) = inside[0], inside[-1]
        if n1 <= n0 or t1 <= t0:
            return None
        return {
            "loops": n1 - n0,
            "mean_loop_ms": (s1 - s0) / (n1 - n0),
            "loops_per_s": (n1 - n0) / (t1 - t0),
            "span_s": t1 - t0,
        }

    def close(self) -> None:
        self.server.shutdown()


# --------------------------------------------------------------------------- Airflow


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (own + reaped children) of ``pid`` and its descendants."""
    import psutil

    out = {}
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = t.user + t.system + t.children_user + t.children_system
    return out


class ScaleAirflow:
    """Scheduler, dag-processor and api-server under the supervisor; a triggerer of ours."""

    def __init__(self, settings) -> None:
        from conveyor_runtime.supervisor import AirflowSupervisor

        self.settings = settings
        self.sup = AirflowSupervisor(settings)
        self.state: dict[str, Any] = {}
        self.client = None
        self.triggerer: subprocess.Popen | None = None
        self.db = Path(
            self.sup.base_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"][len("sqlite:///") :]
        )

    def start(self) -> float:
        from conveyor_runtime.bootstrap import airflow_init
        from conveyor_runtime.processes import free_port
        from conveyor_runtime.supervisor import embedded_client

        t = time.perf_counter()
        airflow_init(self.settings)
        self.state = self.sup.start(
            components=("scheduler", "dag-processor", "api-server"), port=free_port(), timeout=300
        )
        self.client = embedded_client(self.settings, url=self.state["url"])
        return time.perf_counter() - t

    def pids(self) -> dict[str, int]:
        out = {k: v["pid"] for k, v in self.state.get("components", {}).items()}
        if self.triggerer is not None and self.triggerer.poll() is None:
            out["triggerer"] = self.triggerer.pid
        return out

    def start_triggerer(self, pythonpath: str | None, label: str, capacity: int | None) -> None:
        env = self.sup.runtime_env(self.state["port"], self.state.get("side_ports"))
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        if capacity is not None:
            env["AIRFLOW__TRIGGERER__CAPACITY"] = str(capacity)
        log = self.sup.logs_dir / f"triggerer-{label}.log"
        with open(log, "ab") as out:
            self.triggerer = subprocess.Popen(
                [str(Path(sys.executable).with_name("airflow")), "triggerer"],
                env=env,
                cwd=self.sup.airflow_home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop_triggerer(self, timeout: float = 30) -> None:
        proc, self.triggerer = self.triggerer, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def query(self, sql: str) -> list[tuple]:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def running_watchers(self) -> int:
        """DvcUpdateTriggers assigned to a running triggerer."""
        return self.query(
            "SELECT count(*) FROM trigger WHERE classpath LIKE '%DvcUpdateTrigger' AND "
            "triggerer_id IN (SELECT id FROM job WHERE job_type = 'TriggererJob' "
            "AND state = 'running')"
        )[0][0]

    def dag_count(self) -> int:
        resp = self.client.request(
            "GET", "/api/v2/dags", params={"dag_id_pattern": f"train_{PREFIX}%", "limit": 1}
        )
        return int(resp.json()["total_entries"])

    def unpause_all(self) -> None:
        self.client.request(
            "PATCH",
            "/api/v2/dags",
            params={"dag_id_pattern": f"train_{PREFIX}%", "limit": 10000},
            json={"is_paused": False},
        )

    def stop(self) -> None:
        self.stop_triggerer()
        if self.client is not None:
            self.client.close()
        self.sup.stop(timeout=20)


def wait_for(what: str, condition, timeout: float, poll: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a busy api-server or DB: ask again
            value = condition()
            if value:
                return value
        time.sleep(poll)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def measure_window(air: ScaleAirflow, loop: LoopMetrics, seconds: float) -> dict[str, Any]:
    """CPU share of each component (and the triggerer's tree) and the scheduler loop."""
    pids = air.pids()
    before = {k: tree_cpu(p) for k, p in pids.items()}
    load_before = os.getloadavg()[0]
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    after = {k: tree_cpu(p) for k, p in pids.items()}
    cores = {}
    for k in pids:
        # Processes gone in between moved their time into their parent's children times.
        used = sum(after[k].values()) - sum(before[k].values())
        cores[k] = used / (end - start)
    return {
        "seconds": end - start,
        "cores": cores,
        "scheduler_loop": loop.window(start, end),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "watchers": air.running_watchers(),
    }


def asset_runs(client, dag_id: str) -> list[dict[str, Any]]:
    return [r for r in client.list_runs(dag_id, limit=50) if r.get("run_type") == "asset_triggered"]


def measure_push(air: ScaleAirflow, registry: str, name: str, seed: int, poll: float) -> dict:
    from orchestration import dt

    dag_id = f"train_{name}"
    known = {r["dag_run_id"] for r in asset_runs(air.client, dag_id)}
    sha, push_s = push_new_version(registry, name, seed)
    pushed_at = time.time()
    run = wait_for(
        f"asset-triggered run of {dag_id}",
        lambda: next(
            (r for r in asset_runs(air.client, dag_id) if r["dag_run_id"] not in known), None
        ),
        timeout=poll + 180,
        poll=0.5,
    )
    queued = dt(run.get("queued_at")) or dt(run.get("run_after"))
    with contextlib.suppress(Exception):  # training is not the subject: stop it
        air.client.request(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}",
            json={"state": "failed"},
        )
    return {"pipeline": name, "sha": sha, "push_s": push_s, "latency_s": queued - pushed_at}


def baseline_tree(rev: str, dest: Path) -> str:
    """``plugins/`` of the repository at ``rev`` (its conveyor_airflow provider) under
    ``dest``; put first on PYTHONPATH it replaces the current provider."""
    archive = subprocess.run(
        ["git", "-C", str(c.REPO), "archive", rev, "plugins/conveyor_airflow"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return str(dest / "plugins")


def run_airflow(args, settings, info: dict[str, Any], home: Path) -> dict[str, Any]:
    loop = LoopMetrics()
    os.environ.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": info["dags_airflow"],
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.REPO / "plugins"),
            "CONVEYOR_DATA_WATCHER": "true",
            "CONVEYOR_WATCH_POLL_SECONDS": f"{args.poll:g}",
            "CONVEYOR_DEPLOY_VERIFY": "never",
            # Watcher triggers are created when a file is parsed while its DAG is unpaused
            # (Airflow's add_asset_trigger_references); unpausing later would wait for the
            # next parse. The training DAGs have no time schedule: nothing else starts.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(
                args.min_file_process_interval
            ),
            "AIRFLOW__METRICS__OTEL_ON": "True",
            "AIRFLOW__METRICS__OTEL_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__OTEL_PORT": str(loop.port),
            "AIRFLOW__METRICS__OTEL_INTERVAL_MILLISECONDS": "5000",
            "AIRFLOW__METRICS__OTEL_SSL_ACTIVE": "False",
        }
    )
    from conveyor.registry import tracking

    tracking.configure(settings).search_experiments()  # the MLflow store the watchers read
    out: dict[str, Any] = {"phases": {}, "startup": {}}
    air = ScaleAirflow(settings)
    n = len(info["names"])
    try:
        out["startup"]["healthy_s"] = air.start()
        t = time.perf_counter()
        wait_for(f"{n} DAGs parsed", lambda: air.dag_count() >= n, timeout=1500, poll=5)
        out["startup"]["all_dags_parsed_s"] = time.perf_counter() - t
        air.unpause_all()
        # (label, PYTHONPATH for the provider, triggerer capacity, data pushes). "floor":
        # the current provider's triggerer limited to one watcher: Airflow's own cost.
        phases: list[tuple[str, str | None, int | None, int]] = [
            ("floor", None, 1, 0),
            ("after", None, None, args.pushes),
        ]
        if args.baseline_rev:
            try:
                before = baseline_tree(args.baseline_rev, home)
                phases.insert(1, ("before", before, None, max(1, args.pushes - 1)))
            except subprocess.CalledProcessError as exc:  # e.g. a shallow clone
                out["baseline_error"] = f"git archive {args.baseline_rev}: {exc.stderr!r}"
                print(f"no baseline: {out['baseline_error']}", file=sys.stderr)
        for label, pythonpath, capacity, n_pushes in phases:
            where = f"provider at {args.baseline_rev}" if pythonpath else "current provider"
            print(f"triggerer {label} ({where}, capacity {capacity or 'default'})", flush=True)
            need = min(n, capacity or n)
            t = time.perf_counter()
            air.start_triggerer(pythonpath, label, capacity)
            wait_for(
                f"{need} watchers running ({label})",
                lambda need=need: air.running_watchers() >= need,
                timeout=600,
            )
            started_s = time.perf_counter() - t
            time.sleep(args.warmup if need > 1 else min(args.warmup, 20))
            window = measure_window(air, loop, args.window)
            window["watchers_running_after_s"] = started_s
            pushes = []
            for i in range(n_pushes):
                name = info["names"][(7 + 131 * i + (0 if label == "after" else 61)) % n]
                try:
                    pushes.append(measure_push(air, info["registry"], name, 1000 + i, args.poll))
                except Exception as exc:  # reported, the other figures stand
                    pushes.append({"pipeline": name, "error": f"{type(exc).__name__}: {exc}"})
                print(f"  push: {pushes[-1]}", flush=True)
            window["pushes"] = pushes
            out["phases"][label] = window
            print(f"  {label}: {json.dumps(window, default=float)[:600]}", flush=True)
            air.stop_triggerer()
    finally:
        air.stop()
        loop.close()
    return out


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=500, help="generated pipelines")
    parser.add_argument("--poll", type=float, default=10.0, help="watcher poll interval (s)")
    parser.add_argument("--window", type=float, default=60.0, help="CPU window per phase (s)")
    parser.add_argument("--warmup", type=float, default=60.0, help="after watchers start (s)")
    parser.add_argument("--pushes", type=int, default=2, help="data pushes (current triggerer)")
    parser.add_argument("--sample", type=int, default=10, help="per-pipeline files parsed")
    parser.add_argument("--min-file-process-interval", type=int, default=600)
    parser.add_argument(
        "--baseline-rev",
        default=BASELINE_REV,
        help="provider before the change ('' skips the baseline phase)",
    )
    parser.add_argument("--quick", action="store_true", help="5 pipelines, parse only")
    parser.add_argument("--worker-parse", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_parse:
        worker_parse(args.worker_parse[0], args.worker_parse[1:], args.profile)
        return 0
    if args.quick:
        args.pipelines, args.sample = min(args.pipelines, 5), 2

    # A TERM (timeout, CI) still stops the Airflow this run started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    home = c.bench_env(NAME)
    os.environ["CONVEYOR_PIPELINES_DIR"] = str(home / "pipelines")
    from conveyor.settings import Settings

    settings = Settings.from_env()
    print(f"setting up {args.pipelines} pipelines on one registry", flush=True)
    info = setup(home, args.pipelines, settings)
    print(f"  registry with {args.pipelines} files in {info['registry_setup_s']:.1f} s", flush=True)
    parse = measure_parse(info, args.sample)
    airflow: dict[str, Any] = {}
    error = None
    if not args.quick:
        try:
            airflow = run_airflow(args, settings, info, home)
        except Exception as exc:  # report what was measured, then fail
            error = f"{type(exc).__name__}: {exc}"
            print(f"Airflow part failed: {error}", file=sys.stderr)
    report(args, info, parse, airflow, error, started)
    return 1 if error else 0


def _met(ok: bool | None) -> str:
    return "not run (--quick)" if ok is None else ("met" if ok else "missed")


def report(args, info, parse, airflow, error, started) -> None:
    files = parse["files"]
    singles = [files[f]["extra_s"] for f in parse["singles"]]
    worst_single = max(singles)
    rows = [
        [
            f"per-pipeline file (worst of {len(singles)} sampled)",
            c.secs(worst_single),
            1,
            f"< {GOAL_FILE_S:g}",
            _met(worst_single < GOAL_FILE_S),
        ],
    ]
    worst_multi = 0.0
    for m in parse["multis"]:
        f = files[m]
        worst_multi = max(worst_multi, f["extra_s"])
        rows.append(
            [
                m,
                c.secs(f["extra_s"]),
                f["dags"],
                f"< {GOAL_MULTI_S:g}",
                _met(f["extra_s"] < GOAL_MULTI_S),
            ]
        )
    n = args.pipelines
    md = c.print_table(
        f"Parse cost with {n} pipelines (s beyond airflow.sdk, forked child as the dag-processor)",
        ["DAG file", "parse s", "DAGs", "goal s", ""],
        rows,
    )
    prof = parse.get("profile") or {}
    if prof:
        md += "\n\n" + c.print_table(
            f"Where {prof['file']} spends its {prof['wall_profiled_s']:.1f} s (cProfile, Conveyor functions by cumulative time)",
            ["function", "calls", "cumulative s", "own s"],
            [
                [r["function"], r["calls"], c.secs(r["cum_s"]), c.secs(r["own_s"])]
                for r in prof["top_cumulative"][:10]
            ],
        )
    # the dag-processor at its default interval
    mean_single = sum(singles) / len(singles)
    default_cores = n * mean_single / 30.0

    summary = []
    phases = airflow.get("phases", {})
    goal_latency = args.poll + GOAL_EXTRA_S
    tr = {k: phases[k]["cores"].get("triggerer") for k in phases}
    titles = {
        "floor": "floor: current provider, triggerer capacity 1 (Airflow's own cost)",
        "before": f"before: provider at {args.baseline_rev} (each watcher polls)",
        "after": "after: shared poll per registry branch",
    }
    for label, title in titles.items():
        ph = phases.get(label)
        if not ph:
            continue
        loopinfo = ph.get("scheduler_loop") or {}
        lat = [p["latency_s"] for p in ph["pushes"] if "latency_s" in p]
        summary.append(
            [
                title,
                f"{ph['watchers']}",
                f"{100 * ph['cores'].get('triggerer', 0):.1f} %",
                f"{100 * ph['cores'].get('api-server', 0):.1f} %",
                f"{100 * ph['cores'].get('scheduler', 0):.1f} %",
                f"{100 * ph['cores'].get('dag-processor', 0):.1f} %",
                c.secs(loopinfo.get("mean_loop_ms"), 1) if loopinfo else "-",
                c.secs(loopinfo.get("loops_per_s"), 2) if loopinfo else "-",
                " / ".join(c.secs(x, 1) for x in lat) or "-",
                f"{ph['loadavg_1m'][0]} -> {ph['loadavg_1m'][1]}",
            ]
        )
    if summary:
        md += "\n\n" + c.print_table(
            f"{n} data watchers on a real Airflow (poll {args.poll:g} s, window {args.window:g} s; "
            f"CPU as % of one core; goal triggerer <= {100 * GOAL_TRIGGERER_CORE:g} %, "
            f"push -> run queued <= {goal_latency:g} s)",
            [
                "triggerer",
                "watchers",
                "triggerer CPU",
                "api-server",
                "scheduler",
                "dag-processor",
                "scheduler loop ms (mean)",
                "loops/s",
                "push -> queued s",
                "load 1m",
            ],
            summary,
        )
    after = phases.get("after") or {}
    lat_after = [p["latency_s"] for p in after.get("pushes", []) if "latency_s" in p]
    goals = {
        "per_pipeline_parse_s": worst_single,
        "per_pipeline_parse_met": worst_single < GOAL_FILE_S,
        "multi_dag_file_parse_s": worst_multi,
        "multi_dag_file_parse_met": worst_multi < GOAL_MULTI_S,
        "triggerer_core_one_watcher": tr.get("floor"),
        "triggerer_core_before": tr.get("before"),
        "triggerer_core_after": tr.get("after"),
        "triggerer_met": (tr["after"] <= GOAL_TRIGGERER_CORE)
        if tr.get("after") is not None
        else None,
        "latency_worst_s": max(lat_after) if lat_after else None,
        "latency_met": (max(lat_after) <= goal_latency) if lat_after else None,
        "scheduler_loop_ms": (after.get("scheduler_loop") or {}).get("mean_loop_ms"),
        "dag_processor_cores_at_default_interval": default_cores,
    }
    md += "\n\n" + c.print_table(
        "Scale summary",
        ["measure", "value", "goal"],
        [
            [
                "worst per-pipeline DAG file parse (s)",
                c.secs(worst_single),
                f"< {GOAL_FILE_S:g}: {_met(goals['per_pipeline_parse_met'])}",
            ],
            [
                "worst multi-DAG file parse (s)",
                c.secs(worst_multi),
                f"< {GOAL_MULTI_S:g}: {_met(goals['multi_dag_file_parse_met'])}",
            ],
            [
                "triggerer CPU, before -> after (% of a core)",
                f"{100 * tr['before']:.1f} -> {100 * tr['after']:.1f}"
                if tr.get("before") is not None and tr.get("after") is not None
                else "-",
                f"<= {100 * GOAL_TRIGGERER_CORE:g} %: {_met(goals['triggerer_met'])}",
            ],
            [
                "push -> run queued, worst (s)",
                c.secs(goals["latency_worst_s"], 1),
                f"<= {goal_latency:g}: {_met(goals['latency_met'])}",
            ],
            ["scheduler loop, mean (ms)", c.secs(goals["scheduler_loop_ms"], 1), "reported"],
            [
                f"dag-processor cores to re-parse {n} files every 30 s (default interval)",
                f"{default_cores:.1f}",
                "information",
            ],
            ["registry setup (s)", c.secs(info["registry_setup_s"], 1), ""],
        ],
    )
    c.write_result(
        NAME,
        {
            "pipelines": n,
            "poll_s": args.poll,
            "window_s": args.window,
            "baseline_rev": args.baseline_rev,
            "min_file_process_interval": args.min_file_process_interval,
            "goals": goals,
            "parse": parse,
            "airflow": airflow,
            "quick": args.quick,
            "error": error,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
