"""Serving: Conveyor's model service vs ``mlflow models serve`` on the same model.

One model is trained on scikit-learn's breast-cancer data (the demo pipeline's config,
without its grid search: HistGradientBoostingClassifier behind an imputer and scaler),
logged to MLflow and promoted to ``production``. Two servers then serve that same
registered version, one at a time, each on a free loopback port with one worker process:

* **conveyor**: ``python -m conveyor.serving.server --pipeline NAME`` (what ``conveyor
  serve`` runs): ``POST /predict {"records": [...]}``; answers label + class
  probabilities + an id per row, and logs every prediction to disk;
* **mlflow** (baseline): ``mlflow models serve -m models:/NAME/V --env-manager local``:
  ``POST /invocations {"dataframe_records": [...]}``; answers the labels only.

The same load client drives both: a fresh Python process (stdlib only) with N threads,
each holding one keep-alive HTTP/1.1 connection and sending the next request as soon as
the previous answer arrived (closed loop), for a fixed duration after a short warm-up,
then stopping. Latency = send to full response read, per request; throughput = requests
completed in the measured window / its length; p50/p99 over those requests. Any non-200 answer is counted and fails
the benchmark. Before its first cell each server gets an untimed warm-up of twice the
warm-up window per payload. Client and server share the machine's cores (loopback), as
they would on one host. Payloads: one row, and a batch of 100 rows (rows per second = 100 x requests).

    uv run python bench/serving.py [--duration 6] [--clients 1,8,32] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "serving"
PIPELINE = "bench_serving"
#: Goals of issue 19 (issue 9 asked for 5x and 10 ms).
GOAL_THROUGHPUT_RATIO = 10.0  # conveyor / mlflow requests per second, 1 row, 8 clients
GOAL_P99_MS = 5.0  # conveyor, 1 row, 1 client
GOAL_BATCH_RATIO = 5.0  # conveyor / mlflow rows per second, 100-row batches, 8 clients
GOAL_BATCH_P99_MS = 15.0  # conveyor, 100-row batch, 1 client (and never above mlflow's)
BATCH_ROWS = 100


# --------------------------------------------------------------------------- load client


def client_worker(spec_path: str) -> None:
    """Closed-loop load: ``clients`` threads, one keep-alive connection each (stdlib only).

    Emits the latencies (ms) of the requests completed inside the measured window (after
    the warm-up, before the end) and any errors. With several ``paths`` each thread sends
    its requests to them in turn, starting at its own offset (bench/multi_model.py).
    """
    import http.client
    import threading

    spec = json.loads(Path(spec_path).read_text())
    host, port, paths = spec["host"], spec["port"], spec["paths"]
    body = spec["body"].encode()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    clients, warmup, duration = spec["clients"], spec["warmup_s"], spec["duration_s"]
    barrier = threading.Barrier(clients + 1)
    start_box: list[float] = []
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.connect()
        barrier.wait()
        t_start = start_box[0]
        t_measure = t_start + warmup
        t_end = t_measure + duration
        own = latencies[i]
        turn = i
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    break
                conn.request("POST", paths[turn % len(paths)], body=body, headers=headers)
                turn += 1
                resp = conn.getresponse()
                data = resp.read()
                t1 = time.perf_counter()
                if resp.status != 200:
                    with lock:
                        errors.append(f"{resp.status}: {data[:300]!r}")
                    break
                if t_measure <= t1 <= t_end:  # completed inside the measured window
                    own.append((t1 - t0) * 1000.0)
        except Exception as exc:  # reported, fails the benchmark
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start_box.append(time.perf_counter())
    barrier.wait()
    for t in threads:
        t.join(warmup + duration + 60)
    flat = [x for own in latencies for x in own]
    c.emit({"latencies_ms": flat, "duration_s": duration, "errors": errors[:5]})


def run_load(
    host: str,
    port: int,
    path: str | list[str],
    body: str,
    clients: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """Closed-loop load on ``path`` (or on several paths in turn) from a fresh process."""
    spec = Path(os.environ["CONVEYOR_HOME"]) / "load.json"
    spec.write_text(
        json.dumps(
            {
                "host": host,
                "port": port,
                "paths": [path] if isinstance(path, str) else list(path),
                "body": body,
                "clients": clients,
                "warmup_s": warmup,
                "duration_s": duration,
            }
        )
    )
    result, _ = c.run_worker([__file__, "--client", str(spec)], timeout=warmup + duration + 120)
    if result["errors"]:
        raise RuntimeError(f"load on {host}:{port}{path} got errors: {result['errors']}")
    lat = sorted(result["latencies_ms"])
    if not lat:  # only on a tiny --quick window on a busy machine: reported as such
        return {
            "requests": 0,
            "throughput_rps": 0.0,
            "p50_ms": None,
            "p99_ms": None,
            "max_ms": None,
            "mean_ms": None,
        }

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, max(0, round(p / 100 * len(lat)) - 1))]

    return {
        "requests": len(lat),
        "throughput_rps": len(lat) / result["duration_s"],
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": lat[-1],
        "mean_ms": sum(lat) / len(lat),
    }


# --------------------------------------------------------------------------- model + servers


def prepare_model() -> tuple[str, Any, list[str]]:
    """Train, log, register and promote the benchmark model; (version, test frame, columns)."""

    from conveyor.config import load_pipeline_config
    from conveyor.settings import Settings

    settings = Settings.from_env()
    cfg = load_pipeline_config(c.REPO / "include" / "pipelines" / "breast_cancer.yaml")
    cfg = cfg.model_copy(
        update={"name": PIPELINE, "model": cfg.model.model_copy(update={"search": None})}
    )
    version, _, test = c.train_and_promote(settings, cfg, "bench_serving")
    return version, test, list(cfg.feature_columns)


class Server:
    """One server process in its own session; stopped with TERM, then KILL."""

    def __init__(self, name: str, argv: list[str], health: str, port: int, log: Path) -> None:
        self.name, self.argv, self.health, self.port, self.log = name, argv, health, port, log
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None

    def spawn(self) -> None:
        env = dict(os.environ)
        # `mlflow models serve` execs `uvicorn` from PATH: the venv's bin first.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self._t = time.perf_counter()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                url = f"http://127.0.0.1:{self.port}{self.health}"
                if httpx.get(url, timeout=2).status_code == 200:
                    self.ready_s = time.perf_counter() - self._t
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready within {timeout} s:\n{self.tail()}")

    def cpu_s(self) -> float:
        """CPU seconds of the server and its children (mlflow's uvicorn is a child)."""
        import psutil

        total = 0.0
        try:
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
        return total

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""


def bodies(test, columns: list[str]) -> dict[str, dict[str, str]]:
    """server -> payload name -> JSON body; the same rows for both servers."""
    records = [
        {col: float(v) for col, v in zip(columns, row, strict=True)}
        for row in test[columns].to_numpy()
    ]
    batch = (records * (BATCH_ROWS // len(records) + 1))[:BATCH_ROWS]
    return {
        "conveyor": {
            "1 row": json.dumps({"records": records[:1]}),
            f"{BATCH_ROWS} rows": json.dumps({"records": batch}),
        },
        "mlflow": {
            "1 row": json.dumps({"dataframe_records": records[:1]}),
            f"{BATCH_ROWS} rows": json.dumps({"dataframe_records": batch}),
        },
    }


def same_answers(conveyor_url: str, mlflow_url: str, body_c: str, body_m: str) -> bool:
    """Both servers give the same labels for the 100-row batch (same model)."""
    import httpx

    ours = httpx.post(
        f"{conveyor_url}/predict",
        content=body_c,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    theirs = httpx.post(
        f"{mlflow_url}/invocations",
        content=body_m,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    ours.raise_for_status()
    theirs.raise_for_status()
    a = [p["prediction"] for p in ours.json()["predictions"]]
    b = theirs.json()["predictions"]
    return [int(x) for x in a] == [int(x) for x in b]


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds first")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients")
    parser.add_argument("--quick", action="store_true", help="0.5 s per cell (smoke run)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_worker(args.client)
        return 0

    home = c.bench_env(NAME)
    if args.quick:
        args.duration, args.warmup, args.clients = 1.0, 0.3, "1,4"
    concurrency = [int(x) for x in args.clients.split(",") if x.strip()]
    started = time.perf_counter()
    os.environ["CONVEYOR_SERVE_POLL_SECONDS"] = "3600"  # no alias polling during the load

    t = time.perf_counter()
    version, test, columns = prepare_model()
    prepare_s = time.perf_counter() - t
    payloads = bodies(test, columns)
    print(f"  model {PIPELINE} v{version} trained, logged and promoted in {prepare_s:.1f} s")

    servers = {
        "conveyor": lambda port: Server(
            "conveyor",
            [
                sys.executable,
                "-m",
                "conveyor.serving.server",
                "--pipeline",
                PIPELINE,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            "/health",
            port,
            home / "conveyor.log",
        ),
        "mlflow": lambda port: Server(
            "mlflow",
            [
                str(Path(sys.executable).with_name("mlflow")),
                "models",
                "serve",
                "-m",
                f"models:/{PIPELINE}/{version}",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            "/ping",
            port,
            home / "mlflow.log",
        ),
    }
    paths = {"conveyor": "/predict", "mlflow": "/invocations"}
    from conveyor_runtime.processes import free_port

    results: dict[str, dict[str, dict[int, dict]]] = {}
    ready: dict[str, float] = {}
    agree = None
    # Both up for the correctness check, then measured one at a time (the idle one's
    # background work, if any, is the same for both directions).
    running = {name: make(free_port()) for name, make in servers.items()}
    try:
        for server in running.values():  # both start at once (start-up is not measured)
            server.spawn()
        for server in running.values():
            server.wait_ready()
            ready[server.name] = server.ready_s or 0.0
        agree = same_answers(
            f"http://127.0.0.1:{running['conveyor'].port}",
            f"http://127.0.0.1:{running['mlflow'].port}",
            payloads["conveyor"][f"{BATCH_ROWS} rows"],
            payloads["mlflow"][f"{BATCH_ROWS} rows"],
        )
        if not agree:
            raise RuntimeError("the two servers disagree on the same rows: not the same model?")
        for name in ("mlflow", "conveyor"):
            other = running["conveyor" if name == "mlflow" else "mlflow"]
            os.killpg(other.proc.pid, signal.SIGSTOP)  # the idle server cannot steal CPU
            try:
                server = running[name]
                results[name] = {}
                # Untimed warm-up of each server before its first cell: mlflow's first
                # seconds of load burned ~130 ms of CPU per request (a one-client cell of
                # a handful of requests), which made its first cell, not its steady state.
                for body in payloads[name].values():
                    run_load("127.0.0.1", server.port, paths[name], body, 1, 0.0, args.warmup * 2)
                for payload, body in payloads[name].items():
                    results[name][payload] = {}
                    for n in concurrency:
                        cpu0 = server.cpu_s()
                        r = run_load(
                            "127.0.0.1",
                            server.port,
                            paths[name],
                            body,
                            n,
                            args.warmup,
                            args.duration,
                        )
                        cpu = server.cpu_s() - cpu0
                        # Other work on this machine shows in the tails: note it per cell.
                        r["loadavg_1m"] = round(os.getloadavg()[0], 2)
                        total_reqs_est = r["throughput_rps"] * (args.duration + args.warmup)
                        r["server_cpu_ms_per_request"] = (
                            1000 * cpu / total_reqs_est if total_reqs_est else None
                        )
                        results[name][payload][n] = r
                        print(
                            f"  {name:8s} {payload:>8s} {n:3d} clients: {r['throughput_rps']:8.1f} req/s  "
                            f"p50 {c.secs(r['p50_ms'])} ms  p99 {c.secs(r['p99_ms'])} ms  "
                            f"load {r['loadavg_1m']:.2f}",
                            flush=True,
                        )
            finally:
                os.killpg(other.proc.pid, signal.SIGCONT)
    finally:
        for server in running.values():
            server.stop()

    report(args, concurrency, results, ready, version, prepare_s, agree, started)
    return 0


def report(args, concurrency, results, ready, version, prepare_s, agree, started) -> None:
    rows = []
    cells = []
    for payload in results["conveyor"]:
        for n in concurrency:
            ours, base = results["conveyor"][payload][n], results["mlflow"][payload][n]
            ratio = (
                ours["throughput_rps"] / base["throughput_rps"] if base["throughput_rps"] else None
            )
            cells.append(
                {
                    "payload": payload,
                    "clients": n,
                    "conveyor": ours,
                    "mlflow": base,
                    "throughput_ratio": ratio,
                }
            )
            rows.append(
                [
                    payload,
                    n,
                    f"{ours['throughput_rps']:,.0f}",
                    f"{base['throughput_rps']:,.0f}",
                    c.ratio(ratio, 1),
                    c.secs(ours["p50_ms"]),
                    c.secs(base["p50_ms"]),
                    c.secs(ours["p99_ms"]),
                    c.secs(base["p99_ms"]),
                    c.secs(ours["server_cpu_ms_per_request"], 2),
                    c.secs(base["server_cpu_ms_per_request"], 2),
                    f"{base['loadavg_1m']:.1f} / {ours['loadavg_1m']:.1f}",
                ]
            )
    md = c.print_table(
        f"Serving /predict: Conveyor vs `mlflow models serve --env-manager local` (baseline) on "
        f"the same model (v{version}); closed-loop keep-alive clients, {args.duration:g} s "
        "measured per cell after warm-up; 1 server worker each",
        [
            "payload",
            "clients",
            "conveyor req/s",
            "mlflow req/s",
            "throughput ratio",
            "conveyor p50 ms",
            "mlflow p50 ms",
            "conveyor p99 ms",
            "mlflow p99 ms",
            "conveyor CPU ms/req",
            "mlflow CPU ms/req",
            "load 1m (mlflow / conveyor)",
        ],
        rows,
    )
    single = {cell["clients"]: cell for cell in cells if cell["payload"] == "1 row"}
    at8 = single.get(8)
    at1 = single.get(1)
    ratio8 = at8["throughput_ratio"] if at8 else None
    p99_1 = at1["conveyor"]["p99_ms"] if at1 else None
    batch = {cell["clients"]: cell for cell in cells if cell["payload"] == f"{BATCH_ROWS} rows"}
    b8, b1 = batch.get(8), batch.get(1)
    batch_ratio8 = b8["throughput_ratio"] if b8 else None  # rows/s ratio = requests/s ratio
    batch_p99 = b1["conveyor"]["p99_ms"] if b1 else None
    batch_p99_mlflow = b1["mlflow"]["p99_ms"] if b1 else None
    meets = {
        "throughput": ratio8 is not None and ratio8 >= GOAL_THROUGHPUT_RATIO,
        "p99": p99_1 is not None and p99_1 <= GOAL_P99_MS,
        "batch_throughput": batch_ratio8 is not None and batch_ratio8 >= GOAL_BATCH_RATIO,
        "batch_p99": batch_p99 is not None
        and batch_p99 <= GOAL_BATCH_P99_MS
        and (batch_p99_mlflow is None or batch_p99 <= batch_p99_mlflow),
    }
    summary = [
        [
            f"throughput ratio, 1 row, 8 clients (goal >= {GOAL_THROUGHPUT_RATIO:g}x)",
            c.ratio(ratio8, 1),
            "met" if meets["throughput"] else "missed",
        ],
        [
            f"conveyor p99, 1 row, 1 client (goal <= {GOAL_P99_MS:g} ms)",
            c.secs(p99_1, 2),
            "met" if meets["p99"] else "missed",
        ],
        [
            f"rows/s ratio, {BATCH_ROWS}-row batches, 8 clients (goal >= {GOAL_BATCH_RATIO:g}x)",
            c.ratio(batch_ratio8, 1),
            "met" if meets["batch_throughput"] else "missed",
        ],
        [
            f"conveyor p99, {BATCH_ROWS}-row batch, 1 client (goal <= {GOAL_BATCH_P99_MS:g} ms "
            "and <= mlflow's)",
            f"{c.secs(batch_p99, 2)} (mlflow {c.secs(batch_p99_mlflow, 2)})",
            "met" if meets["batch_p99"] else "missed",
        ],
        [
            "mlflow req/s, 1 row, 8 clients",
            f"{at8['mlflow']['throughput_rps']:,.0f}" if at8 else "-",
            "",
        ],
        [
            "server start until healthy: conveyor / mlflow (s)",
            f"{ready.get('conveyor', 0):.1f} / {ready.get('mlflow', 0):.1f}",
            "",
        ],
        ["same labels from both servers on 100 rows", str(agree), ""],
    ]
    md += "\n\n" + c.print_table("Serving summary", ["measure", "value", "goal"], summary)

    plt = c.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, payload in zip(axes, results["conveyor"], strict=False):
        for name, style in (("conveyor", "o-"), ("mlflow", "s--")):
            ax.plot(
                concurrency,
                [results[name][payload][n]["throughput_rps"] for n in concurrency],
                style,
                label=f"{name} req/s",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests per second")
        ax.set_title(f"/predict throughput, {payload} per request")
        ax.legend()
    c.save_plot(fig, NAME)

    c.write_result(
        NAME,
        {
            "model_version": version,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": concurrency,
            "cells": cells,
            "throughput_ratio_1row_8clients": ratio8,
            "p99_ms_1row_1client": p99_1,
            "batch_rows_ratio_8clients": batch_ratio8,
            "batch_p99_ms_1client": batch_p99,
            "batch_p99_ms_1client_mlflow": batch_p99_mlflow,
            "goals": {
                "throughput_ratio": GOAL_THROUGHPUT_RATIO,
                "p99_ms": GOAL_P99_MS,
                "batch_rows_ratio": GOAL_BATCH_RATIO,
                "batch_p99_ms": GOAL_BATCH_P99_MS,
            },
            "meets_goals": meets,
            "ready_s": ready,
            "prepare_s": prepare_s,
            "same_answers": agree,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
