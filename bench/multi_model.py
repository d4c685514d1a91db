"""Many models, one service process: memory per model and latency, against a process per model.

N models (default 50) are registered under their own names and promoted to
``production``: ``--trained`` of them (default 5) fitted on scikit-learn's breast-cancer
data with the serving benchmark's config (HistGradientBoostingClassifier behind an
imputer and scaler, no grid search) and logged by ``_common.train_and_promote``, the others
registering one of those runs again (fitting and logging 50 takes minutes on a busy
two-core machine; the service loads every registered version on its own either way).
Then, one at a time, on a free loopback port:

* **one model**: ``python -m conveyor.serving.server --pipeline m000`` — the per-process
  baseline (what a process per model costs each model);
* **N models**: ``python -m conveyor.serving.server --pipeline m000,m001,...`` — one
  process serving every model by name at ``POST /models/{name}/predict`` (measured with
  requests spread over every model, and with every request to one of them);
* **K separate processes** (K = min(N, ``--separate``), default 4), one model each, all up
  at once: their summed memory, extrapolated to N (N x the mean), is the other design.

Memory is read from ``/proc`` through psutil after a warm-up request to every model: RSS
(what ``top`` shows; counts shared library pages in every process), PSS (shared pages
split between the processes that share them: sums are honest) and USS (pages only that
process holds). Memory per model = (N-model process - 1-model process) / (N - 1).
Latency: the closed-loop keep-alive client of bench/serving.py, one-row requests, each
client sending to the models in turn (so consecutive requests hit different models),
``--clients`` concurrent clients, for the one-model and the N-model process under the
same load. Idle CPU of the N-model process over ``--idle`` seconds shows what polling N
aliases costs (default poll, 5 s). The 1-minute load average is recorded per cell.

    uv run python bench/multi_model.py [--models 50] [--duration 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import serving as sv

NAME = "multi_model"
PREFIX = "bench_mm_"


def model_names(n: int) -> list[str]:
    return [f"{PREFIX}{i:03d}" for i in range(n)]


def prepare_models(names: list[str], trained: int) -> tuple[list[str], Any, list[str]]:
    """Register and promote one model per name; (versions, test frame, columns).

    The first ``trained`` names are each fitted, logged and registered by
    ``_common.train_and_promote`` (several seconds each on a busy machine); the others
    register the model of one of those runs again under their own name (the service
    still downloads and loads each version on its own: one model object per name).
    """
    from conveyor.config import load_pipeline_config
    from conveyor.registry import tracking
    from conveyor.registry.models import lineage_tags, promote, register_version
    from conveyor.settings import Settings

    settings = Settings.from_env()
    base = load_pipeline_config(c.REPO / "include" / "pipelines" / "breast_cancer.yaml")
    base = base.model_copy(update={"model": base.model.model_copy(update={"search": None})})
    client = tracking.configure(settings)
    versions, sources, test = [], [], None
    for i, name in enumerate(names):
        if i < trained:
            cfg = base.model_copy(update={"name": name})
            version, _, test = c.train_and_promote(settings, cfg, f"bench_{name}")
            sources.append(client.get_model_version(name, version))
        else:
            source = sources[i % len(sources)]
            version, _ = register_version(
                client,
                name=name,
                model_uri=source.source,
                mlflow_run_id=source.run_id,
                dag_id="bench",
                run_id=f"bench_{name}",
                tags=lineage_tags(pipeline=name),
            )
            promote(client, name, version, reason="bench", actor="bench")
        versions.append(version)
    return versions, test, list(base.feature_columns)


def memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (bytes) of process ``pid`` (one uvicorn worker: no children)."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return {"rss": info.rss, "pss": getattr(info, "pss", 0), "uss": info.uss}


def server(names: list[str], home: Path, tag: str) -> sv.Server:
    from conveyor_runtime.processes import free_port

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "conveyor.serving.server",
        "--pipeline",
        ",".join(names),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return sv.Server(tag, argv, "/health", port, home / f"{tag}.log")


def warm(srv: sv.Server, paths: list[str], body: str) -> None:
    """One request to every model (loads lazily-built caches) and a check that each answers."""
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=30) as client:
        for path in paths:
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            if response.status_code != 200:
                raise RuntimeError(f"{srv.name} {path}: {response.status_code} {response.text}")


def measure(
    srv: sv.Server, paths: list[str], body: str, clients: list[int], args
) -> dict[int, dict[str, Any]]:
    out = {}
    for n in clients:
        cpu0 = srv.cpu_s()
        r = sv.run_load("127.0.0.1", srv.port, paths, body, n, args.warmup, args.duration)
        cpu = srv.cpu_s() - cpu0
        total = r["throughput_rps"] * (args.duration + args.warmup)
        r["server_cpu_ms_per_request"] = 1000 * cpu / total if total else None
        r["loadavg_1m"] = round(os.getloadavg()[0], 2)
        out[n] = r
        print(
            f"  {srv.name:10s} {n:3d} clients over {len(paths):3d} model(s): "
            f"{r['throughput_rps']:8.1f} req/s  p50 {c.secs(r['p50_ms'])} ms  "
            f"p99 {c.secs(r['p99_ms'])} ms  load {r['loadavg_1m']:.2f}",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=50, help="models in the shared process")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--clients", default="1,8", help="concurrent clients")
    parser.add_argument(
        "--separate", type=int, default=4, help="one-model processes run side by side"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds for poll CPU")
    parser.add_argument(
        "--trained",
        type=int,
        default=5,
        help="models fitted and logged each; the others re-register one of their runs",
    )
    parser.add_argument("--quick", action="store_true", help="3 models, 1 s cells (smoke run)")
    args = parser.parse_args(argv)
    home = c.bench_env(NAME)
    if args.quick:
        args.models, args.duration, args.warmup = 3, 1.0, 0.3
        args.clients, args.separate, args.idle, args.trained = "1,4", 2, 2.0, 2
    if args.models < 2:
        parser.error("--models must be at least 2")
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    started = time.perf_counter()

    names = model_names(args.models)
    t = time.perf_counter()
    versions, test, columns = prepare_models(names, min(args.trained, len(names)))
    prepare_s = time.perf_counter() - t
    print(f"  {len(names)} models trained, logged, registered and promoted in {prepare_s:.1f} s")
    body = sv.bodies(test, columns)["conveyor"]["1 row"]

    runs: dict[str, dict[str, Any]] = {}
    # 1. One model, one process (the per-process baseline).
    one = server(names[:1], home, "one-model")
    one.spawn()
    try:
        one.wait_ready()
        paths = ["/predict"]
        warm(one, paths, body)
        runs["one"] = {
            "models": 1,
            "ready_s": one.ready_s,
            "memory": memory(one.proc.pid),
            "load": measure(one, paths, body, clients, args),
        }
        runs["one"]["memory_after_load"] = memory(one.proc.pid)
    finally:
        one.stop()

    # 2. N models, one process, addressed by name.
    many = server(names, home, f"{len(names)}-models")
    many.spawn()
    try:
        many.wait_ready(timeout=600)
        paths = [f"/models/{n}/predict" for n in names]
        warm(many, paths, body)
        mem = memory(many.proc.pid)
        cpu0, t0 = many.cpu_s(), time.perf_counter()
        time.sleep(args.idle)
        idle_cpu = (many.cpu_s() - cpu0) / (time.perf_counter() - t0)
        runs["many"] = {
            "models": len(names),
            "ready_s": many.ready_s,
            "memory": mem,
            "idle_cpu_fraction_of_one_core": idle_cpu,
            "load": measure(many, paths, body, clients, args),
            # Same process, every request to one model: routing by name vs switching models.
            "load_one_name": measure(many, paths[:1], body, clients[:1], args),
        }
        runs["many"]["memory_after_load"] = memory(many.proc.pid)
    finally:
        many.stop()

    # 3. K one-model processes side by side (the process-per-model design), memory only.
    k = max(1, min(args.separate, len(names)))
    separate = [server([n], home, f"separate-{i}") for i, n in enumerate(names[:k])]
    try:
        for srv in separate:
            srv.spawn()
        for srv in separate:
            srv.wait_ready()
            warm(srv, ["/predict"], body)
        mems = [memory(srv.proc.pid) for srv in separate]
    finally:
        for srv in separate:
            srv.stop()
    runs["separate"] = {"processes": k, "memory": mems}

    report(args, names, versions, runs, clients, prepare_s, started)
    return 0


def report(args, names, versions, runs, clients, prepare_s, started) -> None:
    n = len(names)
    one, many, sep = runs["one"]["memory"], runs["many"]["memory"], runs["separate"]["memory"]
    per_model = {key: (many[key] - one[key]) / (n - 1) for key in ("rss", "pss", "uss")}
    k = len(sep)
    sep_mean = {key: sum(m[key] for m in sep) / k for key in ("rss", "pss", "uss")}
    sep_total_n = {key: sep_mean[key] * n for key in sep_mean}
    rows = [
        [
            "1 model, 1 process",
            c.mb(one["rss"]),
            c.mb(one["pss"]),
            c.mb(one["uss"]),
            f"{runs['one']['ready_s']:.1f}",
        ],
        [
            f"{n} models, 1 process",
            c.mb(many["rss"]),
            c.mb(many["pss"]),
            c.mb(many["uss"]),
            f"{runs['many']['ready_s']:.1f}",
        ],
        [
            "memory per extra model (shared process)",
            c.mb(per_model["rss"]),
            c.mb(per_model["pss"]),
            c.mb(per_model["uss"]),
            "",
        ],
        [
            f"1 model per process: mean of {k} side by side",
            c.mb(sep_mean["rss"]),
            c.mb(sep_mean["pss"]),
            c.mb(sep_mean["uss"]),
            "",
        ],
        [
            f"{n} models, 1 process each (mean x {n})",
            c.mb(sep_total_n["rss"]),
            c.mb(sep_total_n["pss"]),
            c.mb(sep_total_n["uss"]),
            "",
        ],
    ]
    md = c.print_table(
        f"Many models in one service process: memory (MB) after a request to every model; "
        f"{n} breast-cancer HistGradientBoosting pipelines",
        ["process", "RSS MB", "PSS MB", "USS MB", "start until healthy s"],
        rows,
    )
    lat_rows = []
    for key, label in (("one", "1 model, 1 process"), ("many", f"{n} models, 1 process")):
        for clients_n in clients:
            r = runs[key]["load"][clients_n]
            lat_rows.append(
                [
                    label,
                    clients_n,
                    f"{r['throughput_rps']:,.0f}",
                    c.secs(r["p50_ms"]),
                    c.secs(r["p99_ms"]),
                    c.secs(r["server_cpu_ms_per_request"]),
                    f"{r['loadavg_1m']:.1f}",
                ]
            )
    r = runs["many"]["load_one_name"][clients[0]]
    lat_rows.append(
        [
            f"{n} models, 1 process, every request to one model",
            clients[0],
            f"{r['throughput_rps']:,.0f}",
            c.secs(r["p50_ms"]),
            c.secs(r["p99_ms"]),
            c.secs(r["server_cpu_ms_per_request"]),
            f"{r['loadavg_1m']:.1f}",
        ]
    )
    md += "\n\n" + c.print_table(
        f"One-row /predict, each client sending to the models in turn; closed-loop keep-alive "
        f"clients, {args.duration:g} s measured per cell after warm-up",
        ["process", "clients", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "load 1m"],
        lat_rows,
    )
    at1_one = runs["one"]["load"][clients[0]]
    at1_many = runs["many"]["load"][clients[0]]
    # USS (pages only that process holds) is the comparable figure: PSS of one process
    # depends on what else on the machine maps the same libraries at that moment.
    saved = sep_total_n["uss"] - many["uss"]
    summary = [
        ["models served by one process", str(n)],
        ["memory per extra model in the shared process (USS)", f"{c.mb(per_model['uss'])} MB"],
        [
            f"USS: {n} models in 1 process / {n} one-model processes",
            f"{c.mb(many['uss'])} / {c.mb(sep_total_n['uss'])} MB (saves {c.mb(saved)} MB)",
        ],
        [
            f"p99, 1 row, {clients[0]} client(s): 1 model / {n} models",
            f"{c.secs(at1_one['p99_ms'])} / {c.secs(at1_many['p99_ms'])} ms",
        ],
        [
            f"idle CPU of the {n}-model process (alias polls every 5 s)",
            f"{100 * runs['many']['idle_cpu_fraction_of_one_core']:.1f} % of one core",
        ],
        ["models trained, logged, registered and promoted in", f"{prepare_s:.0f} s"],
    ]
    md += "\n\n" + c.print_table("Multi-model summary", ["measure", "value"], summary)
    c.write_result(
        NAME,
        {
            "models": n,
            "model_versions": dict(zip(names, versions, strict=True)),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": clients,
            "one_model": runs["one"],
            "many_models": runs["many"],
            "separate": runs["separate"],
            "memory_per_model_bytes": per_model,
            "separate_extrapolated_bytes": sep_total_n,
            "uss_saved_bytes": saved,
            "p99_ms_one_model": at1_one["p99_ms"],
            "p99_ms_many_models": at1_many["p99_ms"],
            "prepare_s": prepare_s,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
