"""Data change latency: a new data version pushed -> a retraining run queued, on a real Airflow.

The demo's breast-cancer pipeline runs on a real LocalExecutor (scheduler, dag-processor,
triggerer, api-server under ``conveyor_runtime.supervisor.AirflowSupervisor``, private
``AIRFLOW_HOME``) with its default data watcher: an Airflow 3 ``AssetWatcher`` whose
trigger (``DvcUpdateTrigger``) polls the DVC registry every
``CONVEYOR_WATCH_POLL_SECONDS`` seconds in the triggerer (the watchers of one registry
branch share one poll). The pipeline has no model, so the watcher's first poll only records
the current data (the first run is the user's to start); timing starts once it has. For
each push:

* push = ``conveyor_runtime.demo.new_data_version`` (a new CSV committed and pushed to the data
  registry, as ``make new-data`` does); the clock starts when it returns;
* latency = the new run's ``queued_at`` (REST API) - push; split into push -> asset event
  (the watcher noticing; the event's timestamp) and asset event -> run queued (scheduler);
* worker slots held while waiting = the most task instances seen ``running`` (and, for
  information, ``deferred``) in any DAG, sampled every 0.5 s over REST between the push
  and the run being queued. A watcher in the triggerer needs none (goal: 0).

Each retraining run is marked failed through the REST API as soon as it is queued (its
tasks are the orchestration benchmark's subject, not this one's), and the next push waits
until no task runs. Goal (issue 9): latency <= poll interval + 15 s with 0 slots.

``--quick`` starts no Airflow: it times one push and the watcher's check (resolve the
branch, read the md5 from the ``.dvc`` file) that every poll does.

    uv run python bench/data_latency.py [--poll 10] [--pushes 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "data_latency"
PIPELINE = "breast_cancer"
DAG_ID = f"train_{PIPELINE}"
GOAL_EXTRA_S = 15.0


def asset_runs(client) -> list[dict[str, Any]]:
    return [
        r for r in client.list_runs(DAG_ID, limit=100) if r.get("run_type") == "asset_triggered"
    ]


def busy_slots(client) -> dict[str, int]:
    """Task instances now running / deferred / queued, in every DAG."""
    resp = client.request(
        "GET",
        "/api/v2/dags/~/dagRuns/~/taskInstances",
        params={"state": ["running", "deferred", "queued"], "limit": 1000},
    )
    counts = {"running": 0, "deferred": 0, "queued": 0}
    for ti in resp.json()["task_instances"]:
        counts[ti["state"]] = counts.get(ti["state"], 0) + 1
    return counts


def asset_event_times(client) -> list[float]:
    """Timestamps of the data asset's events (newest first); empty if unavailable."""
    from orchestration import dt

    try:
        resp = client.request(
            "GET", "/api/v2/assets/events", params={"order_by": "-timestamp", "limit": 50}
        )
    except Exception:  # informative split only
        return []
    return [
        t
        for e in resp.json().get("asset_events", [])
        if PIPELINE in str(e.get("asset_name") or e.get("name") or e.get("uri") or "")
        and (t := dt(e.get("timestamp"))) is not None
    ]


def fail_run(client, run_id: str) -> bool:
    """Mark the run failed (its training is not this benchmark's subject); a busy
    api-server may drop the call: retried, and if it never succeeds the run just
    goes on (the caller then waits for it). True when the run was marked failed."""
    for attempt in range(4):
        try:
            client.request(
                "PATCH",
                f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}",
                json={"state": "failed"},
                ok=(200,),
            )
            return True
        except Exception as exc:
            print(f"  marking {run_id} failed: {exc} (attempt {attempt + 1})", flush=True)
            time.sleep(2 + 2 * attempt)
    return False


def finish_run(client, run_id: str) -> None:
    """Cancel ``run_id``, or else wait until it ends; then until no task runs."""
    if not fail_run(client, run_id):
        client.wait_for_run(DAG_ID, run_id, timeout=900)
    wait_no_tasks(client)


def wait_for_new_run(client, known: set[str], timeout: float, sample: bool):
    """Poll twice a second for a new asset-triggered run; sample busy slots meanwhile."""
    deadline = time.monotonic() + timeout
    peak = {"running": 0, "deferred": 0, "queued": 0}
    samples = 0
    while time.monotonic() < deadline:
        try:
            new = [r for r in asset_runs(client) if r["dag_run_id"] not in known]
            if new:
                return new[-1], peak, samples
            if sample:
                for k, v in busy_slots(client).items():
                    peak[k] = max(peak.get(k, 0), v)
                samples += 1
        except Exception as exc:  # a busy api-server dropping one poll: poll again
            print(f"  poll failed: {exc}", flush=True)
        time.sleep(0.5)
    return None, peak, samples


#: What the watcher logs when its first poll has recorded the data it starts from.
BASELINE_LINE = "watching from its current version"


def wait_for_watcher_baseline(triggerer_log: Path, timeout: float) -> None:
    """Wait until the data watcher has polled once and recorded the current md5."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if triggerer_log.exists() and BASELINE_LINE in triggerer_log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"the data watcher did not record a baseline within {timeout:.0f} s "
        f"(no {BASELINE_LINE!r} in {triggerer_log})"
    )


def wait_no_tasks(client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = busy_slots(client)
        if not counts["running"] and not counts["queued"]:
            return
        time.sleep(1)
    raise RuntimeError(f"tasks still busy after {timeout} s: {busy_slots(client)}")


def poll_cost(settings, repeats: int) -> list[float]:
    """Seconds of the check each poll of the watcher does (see DvcUpdateTrigger._read)."""
    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.data.source import read_tracked_md5, resolve_rev

    cfg = load_pipeline_config(pipeline_path(PIPELINE, settings.pipelines_dir))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        sha = resolve_rev(settings.data_registry, cfg.data.rev)
        read_tracked_md5(settings.data_registry, cfg.data.path, sha)
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll", type=float, default=10.0, help="watcher poll interval (s)")
    parser.add_argument("--pushes", type=int, default=3, help="data versions to push")
    parser.add_argument("--quick", action="store_true", help="no Airflow: push + poll check")
    args = parser.parse_args(argv)

    home = c.bench_env(NAME)
    pipelines = home / "pipelines"
    pipelines.mkdir()
    shutil.copy(c.REPO / "include" / "pipelines" / f"{PIPELINE}.yaml", pipelines)
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{PIPELINE}.py").write_text(
        "from conveyor_airflow.factory import build_pipeline_dag\n\n"
        f'dag = build_pipeline_dag("{PIPELINE}")\n'
    )
    os.environ.update(
        {
            "CONVEYOR_PIPELINES_DIR": str(pipelines),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.REPO / "plugins"),
            "CONVEYOR_DATA_WATCHER": "true",
            "CONVEYOR_WATCH_POLL_SECONDS": f"{args.poll:g}",
            "CONVEYOR_DEPLOY_VERIFY": "never",
        }
    )
    started = time.perf_counter()
    from conveyor.settings import Settings
    from conveyor_runtime.demo import init_data_registry, init_demo, new_data_version

    settings = Settings.from_env()
    t = time.perf_counter()
    if args.quick:  # the registry only: no MLflow store (its migrations take long)
        init_data_registry(Path(settings.data_registry), settings.home / "dvc-remote")
    else:
        init_demo(settings)
    init_s = time.perf_counter() - t
    checks = poll_cost(settings, 3 if args.quick else 10)

    pushes: list[dict[str, Any]] = []
    startup: dict[str, float] = {}
    error = None
    if args.quick:
        t = time.perf_counter()
        sha, _ = new_data_version(settings, PIPELINE, seed=1)
        pushes.append({"push_s": time.perf_counter() - t, "sha": sha})
    else:
        import orchestration as o

        local = o.LocalAirflow(settings)
        try:
            local.start()
            local.prepare([DAG_ID])
            client = local.client
            # Watcher triggers start 10-30 s after unpausing. With no production model the
            # first poll only records the current data (no run: the first run is the
            # user's); every push after that starts one.
            t = time.perf_counter()
            wait_for_watcher_baseline(local.sup.logs_dir / "triggerer.log", timeout=180)
            startup["unpause_to_watcher_baseline_s"] = time.perf_counter() - t
            for i in range(max(1, args.pushes)):
                known = {r["dag_run_id"] for r in asset_runs(client)}
                t = time.perf_counter()
                sha, md5 = new_data_version(settings, PIPELINE, seed=100 + i)
                pushed_at = time.time()
                push_s = time.perf_counter() - t
                run, peak, samples = wait_for_new_run(
                    client, known, timeout=args.poll + 120, sample=True
                )
                if run is None:
                    raise RuntimeError(f"no run within {args.poll + 120:.0f} s of push {sha[:10]}")
                queued = o.dt(run.get("queued_at")) or o.dt(run.get("run_after"))
                events = [e for e in asset_event_times(client) if e >= pushed_at - 1]
                event_at = min(events) if events else None
                pushes.append(
                    {
                        "sha": sha,
                        "md5": md5,
                        "push_s": push_s,
                        "latency_s": queued - pushed_at,
                        "to_event_s": (event_at - pushed_at) if event_at else None,
                        "event_to_queued_s": (queued - event_at) if event_at else None,
                        "peak_running": peak["running"],
                        "peak_deferred": peak["deferred"],
                        "samples": samples,
                        "run_id": run["dag_run_id"],
                    }
                )
                print(
                    f"  push {i + 1}: run queued {queued - pushed_at:.1f} s after the push "
                    f"(poll {args.poll:g} s); running tasks while waiting: {peak['running']} "
                    f"({samples} samples)",
                    flush=True,
                )
                finish_run(client, run["dag_run_id"])
        except Exception as exc:  # report what was measured, then fail
            error = f"{type(exc).__name__}: {exc}"
            print(f"Airflow part failed: {error}", file=sys.stderr)
        finally:
            startup.update(local.startup)
            local.stop()

    report(args, pushes, checks, init_s, startup, error, started)
    return 1 if error else 0


def report(args, pushes, checks, init_s, startup, error, started) -> None:
    measured = [p for p in pushes if "latency_s" in p]
    goal = args.poll + GOAL_EXTRA_S
    md = ""
    if measured:
        rows = [
            [
                i + 1,
                c.secs(p["push_s"], 2),
                c.secs(p["latency_s"], 1),
                c.secs(p["to_event_s"], 1),
                c.secs(p["event_to_queued_s"], 1),
                p["peak_running"],
                p["peak_deferred"],
                p["samples"],
            ]
            for i, p in enumerate(measured)
        ]
        md = c.print_table(
            f"Data change latency on Airflow LocalExecutor: new data version pushed -> "
            f"retraining run queued (asset watcher, poll interval {args.poll:g} s; goal <= "
            f"{goal:g} s and 0 slots)",
            [
                "push",
                "push itself s",
                "push -> run queued s",
                "push -> asset event s",
                "event -> queued s",
                "running tasks while waiting (max)",
                "deferred (max)",
                "samples",
            ],
            rows,
        )
    latencies = [p["latency_s"] for p in measured]
    worst = max(latencies) if latencies else None
    slots = max((p["peak_running"] for p in measured), default=None)
    summary = [
        ["poll interval (CONVEYOR_WATCH_POLL_SECONDS)", f"{args.poll:g} s", ""],
        [
            "push -> run queued, median / worst",
            f"{c.secs(c.median(latencies), 1)} / {c.secs(worst, 1)} s" if latencies else "-",
            ("met" if worst <= goal else "missed") if worst is not None else "not run (--quick)",
        ],
        [
            "worker slots held while waiting (max running tasks)",
            str(slots) if slots is not None else "-",
            ("met" if slots == 0 else "missed") if slots is not None else "not run (--quick)",
        ],
        ["one watcher poll: resolve branch + read md5 (median s)", c.secs(c.median(checks), 3), ""],
        [
            "one push (new_data_version, median s)",
            c.secs(c.median(p["push_s"] for p in pushes), 2) if pushes else "-",
            "",
        ],
        ["demo data registry (+ MLflow store unless --quick) created (s)", c.secs(init_s, 1), ""],
    ]
    summary += [[k, c.secs(v, 1) + " s", ""] for k, v in startup.items()]
    md += ("\n\n" if md else "") + c.print_table(
        "Data change latency summary", ["measure", "value", "goal"], summary
    )

    plt = c.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    if measured:
        xs = list(range(1, len(measured) + 1))
        ax.bar(xs, latencies, label="push -> run queued")
        ax.axhline(args.poll, color="gray", linestyle=":", label=f"poll interval {args.poll:g} s")
        ax.axhline(goal, color="red", linestyle="--", label=f"goal {goal:g} s")
        ax.set_xlabel("push")
        ax.set_ylabel("seconds")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "--quick: no Airflow", ha="center")
    ax.set_title("Data change latency")
    c.save_plot(fig, NAME)

    c.write_result(
        NAME,
        {
            "poll_s": args.poll,
            "goal_s": goal,
            "pushes": pushes,
            "median_latency_s": c.median(latencies) if latencies else None,
            "worst_latency_s": worst,
            "max_running_slots": slots,
            "meets_goal": (worst is not None and worst <= goal and slots == 0),
            "poll_check_s": checks,
            "startup": startup,
            "airflow": not args.quick,
            "error": error,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
