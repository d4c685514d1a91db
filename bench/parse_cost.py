"""Parse cost: what Conveyor's DAG files add to Airflow's own import cost.

Every DAG file is parsed over and over by the dag-processor and once more in every task
process, so anything it imports beyond ``airflow.sdk`` is paid on every parse. A fresh
interpreter imports ``airflow.sdk`` (the baseline), then, for each file in ``dags/``,
forks a copy of itself that runs the DAG file: each child starts from exactly the state
of an interpreter that has just imported ``airflow.sdk``, so its time is the file's extra
cost, without paying interpreter start-up and the sdk import once per file. Then
Airflow's own ``DagBag`` fills the whole folder, against a ``DagBag`` of an empty folder
(two more forked children, after the same imports), so the difference is the cost of
parsing all of Conveyor's DAGs. Several fresh interpreters (repeats), median.

Garbage collection: a forked child that allocates enough new objects runs a full (gen-2)
collection, which walks, and so copies page by page, the whole heap it shares with its
parent: 0.26 s here, about as much as all of Conveyor's parse work, and it happens or not
depending on how close the parent's counters were to the threshold. Airflow's
dag-processor calls ``gc.freeze()`` before it forks its parsers
(``DagFileProcessorManager.before_run``, airflow/dag_processing/manager.py), so a parser
never walks the inherited heap. Both fills are therefore measured twice: as before (the
goal's verdict, pessimistic), and after ``gc.freeze()`` as the dag-processor forks; the
full collections during each fill and their seconds are reported.

Also: Airflow's plugin loading, which every task process does before ``execute()``
(``get_template_context`` integrates macro plugins), and the import of Conveyor's plugin
module alone: a cost paid per task, not per parse.

Goal (issues 9, 19): at most 0.3 s extra in total.

    uv run python bench/parse_cost.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
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


def _in_child(measure: Callable[[], dict]) -> dict:
    """Run ``measure`` in a forked copy of this interpreter; return what it returns.

    The child has exactly the modules the parent has loaded so far, so a measurement in
    it is what a fresh interpreter with those imports would see, minus the start-up.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, write JSON to the pipe, leave without cleanup
        os.close(read_fd)
        try:
            payload = json.dumps(measure(), default=str)
        except BaseException as exc:  # reported by the parent
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        with os.fdopen(write_fd, "w") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as src:
        data = src.read()
    os.waitpid(pid, 0)
    result = json.loads(data) if data else {"error": "child wrote nothing"}
    if "error" in result:
        raise RuntimeError(f"measurement in a forked child failed: {result['error']}")
    return result


def _run_dag_file(dag_file: str) -> dict:
    """Run ``dag_file`` as the dag-processor would; its time and what it imported."""
    import runpy

    before = set(sys.modules)
    t0 = time.perf_counter()
    namespace = runpy.run_path(dag_file, run_name="conveyor_bench_dagfile")
    extra = time.perf_counter() - t0
    from airflow.sdk import DAG

    new = sorted(set(sys.modules) - before)
    tops = sorted({m.split(".")[0] for m in new})
    return {
        "extra_s": extra,
        "dags": sum(isinstance(v, DAG) for v in namespace.values()),
        "new_modules": len(new),
        "new_packages": tops,
        "heavy": [h for h in HEAVY if h in tops],
    }


def _fill_dagbag(folder: str, freeze: bool = False) -> dict:
    """DagBag of ``folder``; with ``freeze``, after ``gc.freeze()`` as Airflow's
    dag-processor does before forking a parser. Counts full (gen-2) collections."""
    import gc

    from airflow.dag_processing.dagbag import DagBag

    if freeze:
        gc.freeze()
    full = {"n": 0, "s": 0.0, "start": 0.0}

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            full["start"] = time.perf_counter()
        else:
            full["n"] += 1
            full["s"] += time.perf_counter() - full["start"]

    gc.callbacks.append(on_gc)
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=folder, bundle_path=Path(folder))
    fill_s = time.perf_counter() - t0
    gc.callbacks.remove(on_gc)
    return {
        "fill_s": fill_s,
        "full_gc": full["n"],
        "full_gc_s": full["s"],
        "dags": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()},
    }


def _load_plugins(what: str) -> dict:
    """Airflow's plugin loading (every task process does it before ``execute``, see
    ``RuntimeTaskInstance.get_template_context``), or the Conveyor plugin module alone."""
    t0 = time.perf_counter()
    count = 0
    if what == "all":
        from airflow.sdk.plugins_manager import _get_plugins

        plugins, _errors = _get_plugins()
        count = len(plugins)
    else:
        import conveyor_airflow.plugin  # noqa: F401
    return {"load_s": time.perf_counter() - t0, "plugins": count}


def worker_all(dag_dir: str, empty_dir: str, with_plugins: bool) -> None:
    """One repeat: import airflow.sdk (timed), then every measurement in a forked child."""
    t0 = time.perf_counter()
    import airflow.sdk

    sdk_s = time.perf_counter() - t0
    files = sorted(str(p) for p in Path(dag_dir).glob("*.py") if not p.name.startswith("_"))
    per_file = {Path(f).name: _in_child(lambda f=f: _run_dag_file(f)) for f in files}
    # The dag-processor's own imports, loaded before either DagBag is timed.
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    bags = {
        "empty": _in_child(lambda: _fill_dagbag(empty_dir)),
        "full": _in_child(lambda: _fill_dagbag(dag_dir)),
        "empty_frozen": _in_child(lambda: _fill_dagbag(empty_dir, freeze=True)),
        "full_frozen": _in_child(lambda: _fill_dagbag(dag_dir, freeze=True)),
    }
    plugins = {}
    if with_plugins:
        import airflow.plugins_manager  # noqa: F401

        plugins = {w: _in_child(lambda w=w: _load_plugins(w)) for w in ("all", "conveyor")}
    c.emit({"sdk_s": sdk_s, "files": per_file, "dagbag": bags, "plugins": plugins})


def worker_import(dag_file: str) -> None:
    """For ``-X importtime``: import airflow.sdk, mark the spot, run ``dag_file``."""
    import airflow.sdk  # noqa: F401

    print("BENCH_SDK_IMPORTED", file=sys.stderr, flush=True)
    c.emit(_run_dag_file(dag_file))


# --------------------------------------------------------------------------- driver


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
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters (median)")
    parser.add_argument("--quick", action="store_true", help="one repeat (smoke test)")
    parser.add_argument("--dags", default=str(c.REPO / "dags"), help="DAG folder to measure")
    parser.add_argument("--worker-import", help=argparse.SUPPRESS)
    parser.add_argument("--worker-all", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_all:
        worker_all(args.worker_all[0], args.worker_all[1], args.worker_all[2] == "1")
        return 0
    if args.worker_import:
        worker_import(args.worker_import)
        return 0

    c.bench_env("parse")
    # As the embedded runtime configures it (conveyor.airflow_env): the repo's plugins folder.
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(c.REPO / "plugins")
    repeats = 1 if args.quick else max(1, args.repeats)
    dag_dir = Path(args.dags).resolve()
    files = sorted(p for p in dag_dir.glob("*.py") if not p.name.startswith("_"))
    started = time.perf_counter()
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-empty-dags-") as empty:
        runs = [
            c.run_worker(
                [__file__, "--worker-all", str(dag_dir), empty, "0" if args.quick else "1"],
                timeout=600,
            )[0]
            for _ in range(repeats)
        ]
    sdk_s = c.median(r["sdk_s"] for r in runs)
    last = runs[-1]
    per_file = []
    for path in files:
        extras = [r["files"][path.name]["extra_s"] for r in runs]
        facts = last["files"][path.name]
        per_file.append(
            {
                "file": path.name,
                "extra_s": c.median(extras),
                "extra_min_s": min(extras),
                "extra_max_s": max(extras),
                "dags": facts["dags"],
                "new_modules": facts["new_modules"],
                "heavy": facts["heavy"],
                "new_packages": facts["new_packages"],
            }
        )
    # Where the time goes (-X importtime needs a fresh interpreter per file): the two
    # most expensive files only, the rest import nothing of their own.
    costly = sorted(per_file, key=lambda f: -f["extra_s"])[: 0 if args.quick else 2]
    for f in per_file:
        f["top_imports"] = top_imports(dag_dir / f["file"]) if f in costly else []
    bag_empty = c.median(r["dagbag"]["empty"]["fill_s"] for r in runs)
    bag_full = c.median(r["dagbag"]["full"]["fill_s"] for r in runs)
    bag_extra = bag_full - bag_empty
    frozen_empty = c.median(r["dagbag"]["empty_frozen"]["fill_s"] for r in runs)
    frozen_full = c.median(r["dagbag"]["full_frozen"]["fill_s"] for r in runs)
    frozen_extra = frozen_full - frozen_empty
    full_runs = [r["dagbag"]["full"] for r in runs]
    full_gc = [r["dagbag"]["full"]["full_gc"] for r in runs]
    full_gc_s = c.median(r["dagbag"]["full"]["full_gc_s"] for r in runs)
    plugins_s = conveyor_plugin_s = None
    plugins_count = 0
    if not args.quick:  # the smoke test skips these two measurements
        plugins_s = c.median(r["plugins"]["all"]["load_s"] for r in runs)
        plugins_count = last["plugins"]["all"]["plugins"]
        conveyor_plugin_s = c.median(r["plugins"]["conveyor"]["load_s"] for r in runs)
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
        [
            f"  of which full GC (gen 2) in DagBag(dags/): {'/'.join(map(str, full_gc))} "
            "per repeat",
            c.secs(full_gc_s, 3),
            "-",
        ],
        [
            "DagBag extra as the dag-processor forks (gc.freeze() first; "
            f"{'meets' if frozen_extra <= GOAL_EXTRA_S else 'misses'})",
            c.secs(frozen_extra, 3),
            c.ratio(frozen_extra / sdk_s if sdk_s else None),
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
    print(
        "load average (1/5/15 min) at start: {:.2f} {:.2f} {:.2f}, at end: {:.2f} {:.2f} {:.2f}".format(
            *load_start, *os.getloadavg()
        )
    )
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
    c.save_plot(fig, NAME)

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
            "dagbag_full_gc_collections": full_gc,
            "dagbag_full_gc_s": full_gc_s,
            "dagbag_frozen_empty_s": frozen_empty,
            "dagbag_frozen_full_s": frozen_full,
            "dagbag_extra_frozen_s": frozen_extra,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
            "dagbag_dags": full_runs[-1]["dags"],
            "dagbag_import_errors": errors,
            "plugins_load_s": plugins_s,
            "plugins_count": plugins_count,
            "conveyor_plugin_import_s": conveyor_plugin_s,
            "meets_goal": bag_extra <= GOAL_EXTRA_S,
            "meets_goal_as_dag_processor": frozen_extra <= GOAL_EXTRA_S,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md_files + "\n\n" + md_summary,
        },
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
