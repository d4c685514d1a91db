"""Parse cost: what Conveyor's DAG files add to Airflow's own import cost.

Every DAG file is parsed over and over by the dag-processor and once more in every task
process, so anything it imports beyond ``airflow.sdk`` is paid on every parse. For each
file in ``dags/`` a fresh interpreter imports ``airflow.sdk`` (the baseline), then runs
the DAG file; the second interval is the file's extra cost. Several repeats, median.
Then Airflow's own ``DagBag`` fills the whole folder, against a ``DagBag`` of an empty
folder in another fresh interpreter (same imports), so the difference is the cost of
parsing all of Conveyor's DAGs.

Also: Airflow's plugin loading, which every task process does before ``execute()``
(``get_template_context`` integrates macro plugins), and the import of Conveyor's plugin
module alone: a cost paid per task, not per parse.

Goal (issue 9): at most 0.3 s extra in total.

    uv run python bench/parse_cost.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as c

NAME = "parse_cost"
GOAL_EXTRA_S = 0.3
#: Modules that must never be imported at parse time (seconds each, see AIRFLOW3-FACTS).
HEAVY = (
    "pandas",
    "numpy",
    "sklearn",
    "scipy",
    "great_expectations",
    "mlflow",
    "dvc",
    "matplotlib",
    "pyarrow",
    "skops",
)


# --------------------------------------------------------------------------- workers


def worker_import(dag_file: str) -> None:
    """Import airflow.sdk, then run ``dag_file`` (``-`` = nothing); report both intervals."""
    import runpy

    t0 = time.perf_counter()
    import airflow.sdk  # noqa: F401

    t1 = time.perf_counter()
    print("BENCH_SDK_IMPORTED", file=sys.stderr, flush=True)  # for -X importtime parsing
    before = set(sys.modules)
    dags = 0
    if dag_file != "-":
        namespace = runpy.run_path(dag_file, run_name="conveyor_bench_dagfile")
        from airflow.sdk import DAG

        dags = sum(isinstance(v, DAG) for v in namespace.values())
    t2 = time.perf_counter()
    new = sorted(set(sys.modules) - before)
    tops = sorted({m.split(".")[0] for m in new})
    c.emit(
        {
            "sdk_s": t1 - t0,
            "extra_s": t2 - t1,
            "dags": dags,
            "new_modules": len(new),
            "new_packages": tops,
            "heavy": [h for h in HEAVY if h in tops],
        }
    )


def worker_dagbag(folder: str) -> None:
    """Fill a DagBag from ``folder`` after the same imports as the dag-processor."""
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    t0 = time.perf_counter()
    bag = DagBag(dag_folder=folder, bundle_path=Path(folder))
    elapsed = time.perf_counter() - t0
    c.emit(
        {
            "fill_s": elapsed,
            "dags": sorted(bag.dag_ids),
            "import_errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()},
        }
    )


def worker_plugins(what: str) -> None:
    """Time Airflow's plugin loading (every task process does it before ``execute``, see
    ``RuntimeTaskInstance.get_template_context``), or the Conveyor plugin module alone."""
    import airflow.plugins_manager
    import airflow.sdk  # noqa: F401

    t0 = time.perf_counter()
    count = 0
    if what == "all":
        from airflow.sdk.plugins_manager import _get_plugins

        plugins, _errors = _get_plugins()
        count = len(plugins)
    else:
        import conveyor_airflow.plugin  # noqa: F401
    c.emit({"load_s": time.perf_counter() - t0, "plugins": count})


# --------------------------------------------------------------------------- driver


def measure(args: list[str], repeats: int) -> list[dict]:
    out = []
    for _ in range(repeats):
        result, wall = c.run_worker([__file__, *args], timeout=300)
        result["wall_s"] = wall
        out.append(result)
    return out


def top_imports(dag_file: Path, n: int = 6) -> list[dict]:
    """Where a DAG file's extra import time goes: ``-X importtime`` self time of what it
    imports beyond airflow.sdk, summed per module prefix (three dotted levels)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-X", "importtime", __file__, "--worker-import", str(dag_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stderr.splitlines()
    if "BENCH_SDK_IMPORTED" not in lines:
        return []
    totals: dict[str, int] = {}
    for line in lines[lines.index("BENCH_SDK_IMPORTED") + 1 :]:
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1])
        except ValueError:
            continue
        name = parts[2].strip()
        group = ".".join(name.split(".")[:3])
        totals[group] = totals.get(group, 0) + self_us
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [{"module": m, "self_s": us / 1e6} for m, us in top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh interpreters per file")
    parser.add_argument("--quick", action="store_true", help="one repeat (smoke test)")
    parser.add_argument("--dags", default=str(c.REPO / "dags"), help="DAG folder to measure")
    parser.add_argument("--worker-import", help=argparse.SUPPRESS)
    parser.add_argument("--worker-dagbag", help=argparse.SUPPRESS)
    parser.add_argument("--worker-plugins", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_plugins:
        worker_plugins(args.worker_plugins)
        return 0
    if args.worker_import:
        worker_import(args.worker_import)
        return 0
    if args.worker_dagbag:
        worker_dagbag(args.worker_dagbag)
        return 0

    c.bench_env("parse")
    # As the embedded runtime configures it (conveyor.airflow_env): the repo's plugins folder.
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(c.REPO / "plugins")
    repeats = 1 if args.quick else max(1, args.repeats)
    dag_dir = Path(args.dags).resolve()
    files = sorted(p for p in dag_dir.glob("*.py") if not p.name.startswith("_"))
    started = time.perf_counter()

    per_file = []
    sdk_times: list[float] = []
    for path in files:
        runs = measure(["--worker-import", str(path)], repeats)
        # The baseline, airflow.sdk alone, is the first interval of the same interpreters.
        sdk_times += [r["sdk_s"] for r in runs]
        extras = [r["extra_s"] for r in runs]
        per_file.append(
            {
                "file": path.name,
                "extra_s": c.median(extras),
                "extra_min_s": min(extras),
                "extra_max_s": max(extras),
                "sdk_s": c.median(r["sdk_s"] for r in runs),
                "wall_s": c.median(r["wall_s"] for r in runs),
                "dags": runs[-1]["dags"],
                "new_modules": runs[-1]["new_modules"],
                "heavy": runs[-1]["heavy"],
                "new_packages": runs[-1]["new_packages"],
                "top_imports": [] if args.quick else top_imports(path),
            }
        )
    sdk_s = c.median(sdk_times) if sdk_times else 0.0

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-empty-dags-") as empty:
        empty_runs = measure(["--worker-dagbag", empty], repeats)
    full_runs = measure(["--worker-dagbag", str(dag_dir)], repeats)
    bag_empty = c.median(r["fill_s"] for r in empty_runs)
    bag_full = c.median(r["fill_s"] for r in full_runs)
    bag_extra = bag_full - bag_empty
    plugins_s = conveyor_plugin_s = None
    plugins_count = 0
    if not args.quick:  # the smoke test skips these two interpreters
        plugin_runs = measure(["--worker-plugins", "all"], repeats)
        plugins_s = c.median(r["load_s"] for r in plugin_runs)
        plugins_count = plugin_runs[-1]["plugins"]
        conveyor_plugin_s = c.median(
            r["load_s"] for r in measure(["--worker-plugins", "conveyor"], repeats)
        )
    files_extra = sum(f["extra_s"] for f in per_file)

    rows = [
        [
            f["file"],
            f["dags"],
            c.secs(f["extra_s"], 3),
            f"{c.secs(f['extra_min_s'], 3)}-{c.secs(f['extra_max_s'], 3)}",
            c.ratio(f["extra_s"] / sdk_s if sdk_s else None),
            f["new_modules"],
            ", ".join(f["heavy"]) or "none",
        ]
        for f in per_file
    ]
    md_files = c.print_table(
        f"DAG file import cost beyond `import airflow.sdk` (median of {repeats} fresh "
        f"interpreters; airflow.sdk itself: {sdk_s:.2f} s)",
        ["DAG file", "DAGs", "extra (s)", "range (s)", "vs airflow.sdk", "new modules", "heavy"],
        rows,
    )
    verdict = "meets" if bag_extra <= GOAL_EXTRA_S else "misses"
    summary_rows = [
        ["import airflow.sdk (baseline)", c.secs(sdk_s, 3), "1.00x"],
        [
            "all DAG files, sum of extras",
            c.secs(files_extra, 3),
            c.ratio(files_extra / sdk_s if sdk_s else None),
        ],
        ["DagBag(empty folder)", c.secs(bag_empty, 3), "-"],
        [
            f"DagBag(dags/: {len(full_runs[-1]['dags'])} DAGs)",
            c.secs(bag_full, 3),
            "-",
        ],
        [
            f"DagBag extra (goal <= {GOAL_EXTRA_S} s: {verdict})",
            c.secs(bag_extra, 3),
            c.ratio(bag_extra / sdk_s if sdk_s else None),
        ],
    ]
    if plugins_s is not None and conveyor_plugin_s is not None:
        summary_rows += [
            [
                f"plugins load, all {plugins_count} (each task process, once)",
                c.secs(plugins_s, 3),
                c.ratio(plugins_s / sdk_s if sdk_s else None),
            ],
            [
                "  of which import conveyor_airflow.plugin",
                c.secs(conveyor_plugin_s, 3),
                c.ratio(conveyor_plugin_s / sdk_s if sdk_s else None),
            ],
        ]
    md_summary = c.print_table("Parse cost summary", ["measure", "seconds", "ratio"], summary_rows)
    for f in per_file:
        if f["top_imports"]:
            top = ", ".join(f"{t['module']} {t['self_s']:.3f}" for t in f["top_imports"])
            print(f"{f['file']}: largest imports beyond airflow.sdk (self s): {top}")
    errors = full_runs[-1]["import_errors"]
    if errors:
        print(f"DagBag import errors: {errors}")

    plt = c.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f["file"] for f in per_file] + ["DagBag extra"]
    values = [f["extra_s"] for f in per_file] + [bag_extra]
    ax.barh(labels, values, color=["#0194e2"] * len(per_file) + ["#945dd6"])
    ax.axvline(GOAL_EXTRA_S, color="red", linestyle="--", label=f"goal {GOAL_EXTRA_S} s")
    ax.set_xlabel(f"seconds beyond import airflow.sdk ({sdk_s:.2f} s)")
    ax.set_title("Conveyor DAG parse cost")
    ax.legend()
    fig.tight_layout()
    fig.savefig(c.plot_path(NAME), dpi=100)

    c.write_result(
        NAME,
        {
            "repeats": repeats,
            "goal_extra_s": GOAL_EXTRA_S,
            "airflow_sdk_import_s": sdk_s,
            "files": per_file,
            "files_extra_total_s": files_extra,
            "dagbag_empty_s": bag_empty,
            "dagbag_full_s": bag_full,
            "dagbag_extra_s": bag_extra,
            "dagbag_dags": full_runs[-1]["dags"],
            "dagbag_import_errors": errors,
            "plugins_load_s": plugins_s,
            "plugins_count": plugins_count,
            "conveyor_plugin_import_s": conveyor_plugin_s,
            "meets_goal": bag_extra <= GOAL_EXTRA_S,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md_files + "\n\n" + md_summary,
        },
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
