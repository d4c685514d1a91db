"""Caching: a training run whose inputs are unchanged vs a full training run.

Every training run starts with ``resolve_inputs``: it pins the data revision, reads the
data's md5 from the registry's ``.dvc`` file (git, no download) and compares the cache
key (data md5 + config hash + code revision) with the one production was trained on. The
same key means nothing to retrain: every later task is skipped.

On a real LocalExecutor (the same components as ``orchestration.py``, triggered through
the REST API, wall time = trigger request to the run's end), for each data size:

1. a full run (with ``force=true`` when a production model already exists, so it trains
   against a production model as every retraining does);
2. three runs with unchanged inputs, which skip; their median is the "cached" time.

The first run of the session warms the LocalExecutor's workers up and is not counted.
Ratio = unchanged-input run / full run (goal <= 0.10). For scale, also the floor: a
fresh plain Python process that does only the cache check (``check_inputs``).

``--quick`` runs no Airflow: the plain process of ``orchestration.py`` on 200 rows (full)
against the plain cache-check process (unchanged), so the ratio there is plain/plain.

    uv run python bench/caching.py [--sizes 10k,1M] [--skips 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import _common as c

NAME = "caching"
GOAL_RATIO = 0.10
DEFAULT_SIZES = "10k,1M"


def check_worker(pipeline: str) -> None:
    """The cache check alone in a fresh process, as a plain script would start with it."""
    launched = float(os.environ.get("BENCH_LAUNCHED_AT", time.time()))
    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.registry.caching import check_inputs
    from conveyor.registry.lineage import code_identity
    from conveyor.settings import Settings

    settings = Settings.from_env()
    cfg = load_pipeline_config(pipeline_path(pipeline, settings.pipelines_dir))
    result = check_inputs(
        cfg,
        repo=cfg.data.repo or settings.data_registry,
        rev=cfg.data.rev,
        rev_source="branch",
        tracking_uri=settings.mlflow_tracking_uri,
        code_rev=code_identity(settings.project_dir),
    )
    c.emit({"skip": result.skip, "reason": result.reason, "wall_s": time.time() - launched})


def run_check(pipeline: str) -> dict[str, Any]:
    result, _ = c.run_worker(
        [__file__, "--check-worker", pipeline],
        env=c.child_env(BENCH_LAUNCHED_AT=repr(time.time())),
        timeout=300,
    )
    return result


#: The cache key holds the project's git HEAD (conveyor.registry.lineage.code_identity): a commit
#: to this checkout between the full run and an unchanged one (other people work in it)
#: rightly makes the latter train. Such a run is retried, not counted, up to this often.
MAX_RETRIES = 3


def task_states(run: dict[str, Any]) -> dict[str, str | None]:
    return {t["task_id"]: t["state"] for t in run["tasks"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="rows, e.g. 10k,1M")
    parser.add_argument("--skips", type=int, default=3, help="unchanged-input runs per size")
    parser.add_argument("--quick", action="store_true", help="200 rows, plain processes only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs)")
    parser.add_argument("--check-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_worker:
        check_worker(args.check_worker)
        return 0

    home = c.bench_env(NAME, keep=args.keep)
    import orchestration as o  # after bench_env: same environment, same helpers

    os.environ.update(
        {
            "CONVEYOR_PIPELINES_DIR": str(home / "pipelines"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "CONVEYOR_DATA_WATCHER": "false",  # runs are triggered by the benchmark only
            "CONVEYOR_TRAINING_POOL": "conveyor_training",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.REPO / "plugins"),
        }
    )
    sizes = sorted(c.parse_sizes("200" if args.quick else args.sizes))
    skips = 1 if args.quick else max(1, args.skips)
    started = time.perf_counter()
    mode = "plain" if args.quick else "airflow"
    names = {rows: f"bench_cache{rows}" for rows in sizes}
    datasets = {
        rows: {"plain": [names[rows]] if mode == "plain" else [], "airflow": []} for rows in sizes
    }
    if mode == "airflow":
        for rows in sizes:
            datasets[rows]["airflow"] = [names[rows]]
    o.setup_data(home, datasets)

    per_size: list[dict[str, Any]] = []
    startup: dict[str, float] = {}
    warmup = None
    error = None
    if mode == "plain":
        for rows in sizes:
            retries = 0
            while True:
                full = o.run_plain(names[rows])
                cached = [run_check(names[rows]) for _ in range(skips)]
                if all(r["skip"] for r in cached):
                    break
                retries += 1
                reason = next(r["reason"] for r in cached if not r["skip"])
                print(f"  the unchanged check did not skip ({reason}); again", flush=True)
                if retries > MAX_RETRIES:
                    raise RuntimeError(f"the cache check of {names[rows]} never skipped: {reason}")
            per_size.append(
                {
                    "rows": rows,
                    "full_s": full["wall_s"],
                    "cached_s": c.median(r["wall_s"] for r in cached),
                    "cached_runs_s": [r["wall_s"] for r in cached],
                    "check_floor_s": c.median(r["wall_s"] for r in cached),
                    "skipped_tasks": None,
                    "retries": retries,
                }
            )
    else:
        from conveyor.settings import Settings

        local = o.LocalAirflow(Settings.from_env())
        try:
            local.start()
            local.prepare([f"train_{names[r]}" for r in sizes])
            for i, rows in enumerate(sizes):
                dag_id = f"train_{names[rows]}"
                if i == 0:  # cold workers: not counted; it makes the first production model
                    warmup = local.run(dag_id)
                    print(
                        f"  warm-up full run, {c.human_rows(rows)} rows: {warmup['wall_s']:.1f} s"
                    )
                    full = local.run(dag_id, conf={"force": True})
                else:
                    full = local.run(dag_id)
                print(f"  full run      {c.human_rows(rows):>5s} rows: {full['wall_s']:6.1f} s")
                cached = []
                retries = 0
                while len(cached) < skips:
                    run = local.run(dag_id)
                    if task_states(run).get("train_model") != "skipped":
                        retries += 1  # the code rev moved: this run trained; not counted
                        print(f"  unchanged run trained (a commit moved HEAD?); again ({retries})")
                        if retries > MAX_RETRIES:
                            raise RuntimeError(f"unchanged-input runs of {dag_id} keep training")
                        continue
                    cached.append(run)
                    print(f"  unchanged run {c.human_rows(rows):>5s} rows: {run['wall_s']:6.1f} s")
                floor = run_check(names[rows])
                per_size.append(
                    {
                        "rows": rows,
                        "full_s": full["wall_s"],
                        "full_cpu_s": full["cpu_s"],
                        "cached_s": c.median(r["wall_s"] for r in cached),
                        "cached_runs_s": [r["wall_s"] for r in cached],
                        "cached_cpu_s": c.median(r["cpu_s"] for r in cached),
                        "check_floor_s": floor["wall_s"],
                        "retries": retries,
                        "skipped_tasks": sum(
                            1 for s in task_states(cached[0]).values() if s == "skipped"
                        ),
                        "cached_timeline": timeline(cached[0]),
                        "cached_tasks": cached[0]["tasks"],
                    }
                )
        except Exception as exc:  # report what was measured, then fail
            error = f"{type(exc).__name__}: {exc}"
            print(f"Airflow part failed: {error}", file=sys.stderr)
        finally:
            startup.update(local.startup)
            local.stop()

    report(mode, per_size, skips, warmup, startup, error, started)
    return 1 if error or not per_size else 0


TIMELINE = {
    "trigger_to_run_start_s": "REST trigger -> run started by the scheduler",
    "run_start_to_queued_s": "run started -> resolve_inputs queued",
    "queued_to_start_s": "queued -> resolve_inputs running (executor, task process, DAG parse)",
    "resolve_s": "resolve_inputs: the cache check, then the skip",
    "resolve_end_to_run_end_s": "resolve_inputs done -> run ended (downstream marked skipped)",
    "total_s": "total (trigger -> run end)",
}


def timeline(run: dict[str, Any]) -> dict[str, float | None]:
    """The phases of an unchanged-input run, from the REST API's timestamps."""
    resolve = next((t for t in run["tasks"] if t["task_id"] == "resolve_inputs"), None)
    if resolve is None or None in (resolve["queued"], resolve["start"], resolve["end"]):
        return {}
    trigger, start, end = run["trigger_at"], run["run_start"] or run["trigger_at"], run["run_end"]
    return {
        "trigger_to_run_start_s": start - trigger,
        "run_start_to_queued_s": resolve["queued"] - start,
        "queued_to_start_s": resolve["start"] - resolve["queued"],
        "resolve_s": resolve["end"] - resolve["start"],
        "resolve_end_to_run_end_s": (end - resolve["end"]) if end else None,
        "total_s": run["wall_s"],
    }


def report(mode, per_size, skips, warmup, startup, error, started) -> None:
    label = "Airflow LocalExecutor" if mode == "airflow" else "plain process (--quick)"
    rows_md = []
    for p in per_size:
        p["ratio"] = p["cached_s"] / p["full_s"]
        rows_md.append(
            [
                c.human_rows(p["rows"]),
                c.secs(p["full_s"], 1),
                c.secs(p["cached_s"], 1),
                " / ".join(c.secs(x, 1) for x in p["cached_runs_s"]),
                c.ratio(p["ratio"], 3),
                "met" if p["ratio"] <= GOAL_RATIO else "missed",
                c.secs(p["check_floor_s"], 2),
            ]
        )
    md = c.print_table(
        f"Caching: unchanged-input run / full run, {label} (full run = baseline; wall from "
        f"trigger to run end; unchanged = median of {skips})",
        [
            "rows",
            "full run s",
            "unchanged run s",
            "unchanged runs s",
            "ratio",
            f"goal <= {GOAL_RATIO}",
            "cache check alone, fresh process s",
        ],
        rows_md,
    )
    if mode == "airflow" and per_size and per_size[0].get("cached_timeline"):
        p = per_size[0]
        states: dict[str, int] = {}
        for t in p["cached_tasks"]:
            states[t["state"]] = states.get(t["state"], 0) + 1
        md += "\n\n" + c.print_table(
            f"Where an unchanged-input run's time goes ({c.human_rows(p['rows'])} rows, first "
            "of the unchanged runs; task states: "
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            + ")",
            ["phase", "s"],
            [[TIMELINE[k], c.secs(v, 2)] for k, v in p["cached_timeline"].items()],
        )
    if startup or warmup:
        info = [[k, c.secs(v, 1)] for k, v in startup.items()]
        if warmup:
            info.append(
                ["warm-up full run (cold workers, not counted)", c.secs(warmup["wall_s"], 1)]
            )
        md += "\n\n" + c.print_table("Airflow start-up (not in the ratios)", ["step", "s"], info)

    if per_size:
        plt = c.pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.8))
        xs = [p["rows"] for p in per_size]
        ax.plot(xs, [p["full_s"] for p in per_size], "o-", label="full run")
        ax.plot(xs, [p["cached_s"] for p in per_size], "o-", label="unchanged inputs")
        c.rows_axis(ax, ylabel="seconds", title=f"Caching ({label})", logy=True)
        c.save_plot(fig, NAME)

    largest = per_size[-1] if per_size else None
    for p in per_size:
        p.pop("cached_tasks", None)
    c.write_result(
        NAME,
        {
            "mode": mode,
            "label": label,
            "goal_ratio": GOAL_RATIO,
            "skips": skips,
            "per_size": per_size,
            "ratio_largest": largest["ratio"] if largest else None,
            "ratio_smallest": per_size[0]["ratio"] if per_size else None,
            "meets_goal": bool(per_size) and all(p["ratio"] <= GOAL_RATIO for p in per_size),
            "startup": startup,
            "warmup_s": warmup["wall_s"] if warmup else None,
            "error": error,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
