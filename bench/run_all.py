"""Run every benchmark in ``bench/`` and record the results in ``bench/README.md``.

Each script runs in its own subprocess with its default sizes (``--quick``: tiny sizes,
Airflow skipped, README untouched unless ``--readme`` is given). Every script prints
its own tables and writes ``bench/results/<name>.json`` (+ a PNG plot); this driver then
collects the JSON files into the README with the date and the machine.

    make bench                      # = uv run --frozen python bench/run_all.py
    uv run python bench/run_all.py --only parse_cost,validation
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import _common as c

#: (name, script, extra args for a full run, extra args for --quick)
SCRIPTS = [
    ("parse_cost", "parse_cost.py", [], ["--quick"]),
    ("validation", "validation.py", [], ["--quick"]),
    ("memory", "memory.py", [], ["--quick"]),
    ("serving", "serving.py", [], ["--quick"]),
    ("data_latency", "data_latency.py", [], ["--quick"]),
    ("caching", "caching.py", ["--skips", "2"], ["--quick"]),
    # Two runs per size and way, the fastest of each counts (one run was within a second
    # of noise of the goals). With the scheduler preload, as `make demo` runs Airflow
    # (conveyor.airflow_preload); without --preload it measures Airflow as it comes.
    ("orchestration", "orchestration.py", ["--repeats", "2", "--preload"], ["--quick"]),
    ("drift", "drift.py", [], ["--quick"]),
    # 1M rows; `make bench-scale` runs 10M (bench/results/scoring_scale.json).
    ("scoring", "scoring.py", [], ["--quick"]),
]
#: The long runs of `make bench-scale` (= run_all.py --scale): same format, own JSON files.
SCALE_SCRIPTS = [
    ("scale", "scale.py", [], ["--quick"]),
    ("multi_model", "multi_model.py", [], ["--quick"]),
    (
        "scoring_scale",
        "scoring.py",
        ["--rows", "10M", "--result-name", "scoring_scale"],
        ["--quick", "--result-name", "scoring_scale"],
    ),
]

TITLES = {
    "parse_cost": "1. Parse cost (goal: <= 0.3 s extra in total)",
    "orchestration": "2. Orchestration overhead (goals, warm vs warm: <= 1.5x at 10k, <= 1.2x "
    "at 1M rows)",
    "caching": "3. Caching: unchanged-input run / full run (goal: <= 0.10)",
    "data_latency": "4. Data change latency (goal: poll interval + 15 s, 0 worker slots)",
    "serving": "5. Serving: /predict vs `mlflow models serve` (goals: >= 10x req/s at 8 "
    "clients and p99 <= 5 ms for 1 row; >= 5x rows/s and p99 <= 15 ms for 100-row batches)",
    "validation": "6. Validation: GX vs plain pandas (goal: <= 2x at 1M rows)",
    "memory": "7. Memory: training peak RSS / dataset size (goal: <= 3x)",
    "drift": "Drift check: conveyor.drift vs plain numpy/scipy (no goal set)",
    "scoring": "8. Batch scoring vs `mlflow models predict` (goals: >= 5x rows/s, <= 1 GB "
    "peak RSS at 1M rows)",
}
SCALE_TITLES = {
    "scale": "9. Hundreds of pipelines (`make bench-scale`)",
    "multi_model": "10. Many models in one model-service process (`make bench-scale`)",
    "scoring_scale": "11. Batch scoring at 10M rows (`make bench-scale`)",
}
TITLES |= SCALE_TITLES
ORDER = [
    "parse_cost",
    "orchestration",
    "caching",
    "data_latency",
    "serving",
    "validation",
    "memory",
    "scoring",
    "drift",
]
NOT_YET: list[str] = []


def machine_md(info: dict) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items() if v)
    return (
        f"- CPU: {info.get('nproc')} cores ({info.get('cpu', 'unknown')}), memory "
        f"{info.get('memory_gb')} GB\n"
        f"- Python {info.get('python')} on {info.get('platform')}\n"
        f"- {pkgs}"
    )


def describe(script: str) -> str:
    """The script's docstring without its usage line: what it measures and how."""
    import ast

    doc = ast.get_docstring(ast.parse((c.BENCH / script).read_text())) or ""
    keep = [p for p in doc.split("\n\n") if not p.lstrip().startswith("uv run")]
    return "\n\n".join(keep).strip()


#: Why a goal was missed, from the breakdowns the scripts print (keyed by the row's start).
MISSED_REASONS = {
    "Orchestration, 10k rows (Airflow / plain without": "eight isolated tasks cost ~0.2 s of "
    "scheduling and ~0.2 s of task start each, ~3.5 s on a 6 s job",
    "Orchestration, 1M rows (Airflow / plain without": "the Parquet handoff between tasks "
    "(~3 s) plus ~0.4 s per task of scheduling and start",
    "Batch scoring rows/s": "both ways are bound by parsing the CSV and predicting; Conveyor "
    "also checks every value and publishes Parquet + a DVC version",
}


def goals_table(by_name: dict) -> list[str]:
    """One row per goal of issue 9: goal, measured, met or not (from the JSON files)."""
    rows = []

    def load(name):
        path = c.RESULTS / f"{name}.json"
        return json.loads(path.read_text()) if name in by_name and path.exists() else None

    def verdict(ok):
        return "-" if ok is None else ("met" if ok else "**missed**")

    if d := load("parse_cost"):
        if d.get("dagbag_extra_frozen_s") is not None:
            # Airflow's dag-processor calls gc.freeze() before it forks its parsers
            # (DagFileProcessorManager.before_run): this is the cost it pays.
            rows.append(
                [
                    "Parse cost: DagBag extra for dags/, forked as the dag-processor does "
                    "(gc.freeze() first)",
                    "<= 0.3 s",
                    f"{d['dagbag_extra_frozen_s']:.3f} s",
                    verdict(d["meets_goal_as_dag_processor"]),
                ]
            )
        rows.append(
            [
                "Parse cost: DagBag extra for dags/, forked without gc.freeze() (a full "
                "collection of the inherited heap included)",
                "<= 0.3 s",
                f"{d['dagbag_extra_s']:.3f} s",
                verdict(d["meets_goal"]),
            ]
        )
    if d := load("orchestration"):
        for p in d["per_size"]:
            if p.get("warm_goal") and p.get("warm_ratio") is not None:
                rows.append(
                    [
                        f"Orchestration, {c.human_rows(p['rows'])} rows (Airflow / plain "
                        "without its imports, warm vs warm)",
                        f"<= {p['warm_goal']}x",
                        c.ratio(p["warm_ratio"]),
                        verdict(p["warm_ratio"] <= p["warm_goal"]),
                    ]
                )
        for p in d["per_size"]:
            if p["goal"] and p["ratio"] is not None:
                rows.append(
                    [
                        f"Orchestration, {c.human_rows(p['rows'])} rows (Airflow / plain "
                        "process as launched, imports included)",
                        f"<= {p['goal']}x",
                        c.ratio(p["ratio"]),
                        verdict(p["ratio"] <= p["goal"]),
                    ]
                )
    if d := load("caching"):
        for p in d["per_size"]:
            rows.append(
                [
                    f"Caching, {c.human_rows(p['rows'])} rows ({d['label']})",
                    f"<= {d['goal_ratio']}",
                    f"{p['ratio']:.3f}",
                    verdict(p["ratio"] <= d["goal_ratio"]),
                ]
            )
    if (d := load("data_latency")) and d.get("airflow"):
        rows.append(
            [
                "Data change -> run queued (worst)",
                f"<= {d['goal_s']:g} s",
                f"{c.secs(d['worst_latency_s'], 1)} s",
                verdict(d["worst_latency_s"] is not None and d["worst_latency_s"] <= d["goal_s"]),
            ]
        )
        rows.append(
            [
                "Worker slots held while waiting",
                "0",
                str(d["max_running_slots"]),
                verdict(d["max_running_slots"] == 0),
            ]
        )
    if d := load("serving"):
        g, met = d.get("goals", {}), d["meets_goals"]
        rows.append(
            [
                "Serving throughput vs mlflow, 1 row, 8 clients",
                f">= {g.get('throughput_ratio', 5):g}x",
                c.ratio(d["throughput_ratio_1row_8clients"], 1),
                verdict(met["throughput"]),
            ]
        )
        rows.append(
            [
                "Serving p99, 1 row, 1 client",
                f"<= {g.get('p99_ms', 10):g} ms",
                f"{c.secs(d['p99_ms_1row_1client'])} ms",
                verdict(met["p99"]),
            ]
        )
        if "batch_throughput" in met:
            rows.append(
                [
                    "Serving rows/s vs mlflow, 100-row batches, 8 clients",
                    f">= {g['batch_rows_ratio']:g}x",
                    c.ratio(d["batch_rows_ratio_8clients"], 1),
                    verdict(met["batch_throughput"]),
                ]
            )
            rows.append(
                [
                    "Serving p99, 100-row batch, 1 client",
                    f"<= {g['batch_p99_ms']:g} ms and <= mlflow's",
                    f"{c.secs(d['batch_p99_ms_1client'])} ms (mlflow "
                    f"{c.secs(d['batch_p99_ms_1client_mlflow'])} ms)",
                    verdict(met["batch_p99"]),
                ]
            )
    if d := load("validation"):
        rows.append(
            [
                "Validation GX / pandas, largest size",
                "<= 2x",
                c.ratio(d["per_call_ratio_largest"]),
                verdict(d["meets_goal"]),
            ]
        )
    if d := load("memory"):
        rows.append(
            [
                "Training peak RSS / data, largest size",
                "<= 3x",
                c.ratio(d["task_ratio_largest"]),
                verdict(d["meets_goal"]),
            ]
        )
    for name in ("scoring", "scoring_scale"):  # 1M rows in make bench, 10M in bench-scale
        if not (d := load(name)):
            continue
        rows.append(
            [
                f"Batch scoring rows/s vs mlflow, {c.human_rows(d['rows'])} rows",
                ">= 5x",
                c.ratio(d["ratio"]),
                verdict(d["meets_goals"]["ratio"]),
            ]
        )
        rows.append(
            [
                f"Batch scoring peak RSS, {c.human_rows(d['rows'])} rows (chunked: the same "
                "bound at any size)",
                "<= 1 GB",
                f"{d['peak_rss_mb']:,.0f} MB",
                verdict(d["meets_goals"]["peak_rss"]),
            ]
        )
    if (d := load("scale")) and (g := d.get("goals")):
        n = d.get("pipelines")
        rows.append(
            [
                f"{n} pipelines: one pipeline's DAG file parses (worst sampled)",
                "< 2 s",
                f"{c.secs(g['per_pipeline_parse_s'], 2)} s",
                verdict(g.get("per_pipeline_parse_met")),
            ]
        )
        rows.append(
            [
                f"{n} pipelines: a file building one DAG per pipeline parses (worst)",
                "< 20 s",
                f"{c.secs(g['multi_dag_file_parse_s'], 2)} s",
                verdict(g.get("multi_dag_file_parse_met")),
            ]
        )
        if g.get("triggerer_core_after") is not None:
            before = g.get("triggerer_core_before")
            rows.append(
                [
                    f"{n} data watchers: triggerer CPU, share of one core",
                    "<= 10 %",
                    f"{100 * g['triggerer_core_after']:.1f} %"
                    + (f" (before: {100 * before:.1f} %)" if before is not None else ""),
                    verdict(g.get("triggerer_met")),
                ]
            )
        if g.get("latency_worst_s") is not None:
            rows.append(
                [
                    f"{n} data watchers: data change -> run queued (worst)",
                    f"<= {d['poll_s'] + 15:g} s",
                    f"{c.secs(g['latency_worst_s'], 1)} s",
                    verdict(g.get("latency_met")),
                ]
            )
        if g.get("scheduler_loop_ms") is not None:
            rows.append(
                [
                    f"{n} DAGs: scheduler loop time (mean)",
                    "reported",
                    f"{g['scheduler_loop_ms']:.0f} ms",
                    "-",
                ]
            )
        if g.get("dag_processor_cores_at_default_interval") is not None:
            rows.append(
                [
                    f"{n} pipeline DAG files: dag-processor CPU at the default 30 s re-parse",
                    "reported",
                    f"{g['dag_processor_cores_at_default_interval']:.1f} cores",
                    "-",
                ]
            )
    if d := load("multi_model"):
        n = d["models"]
        per = d["memory_per_model_bytes"]["uss"] / 2**20
        rows.append(
            [
                f"One model-service process, {n} models: memory per extra model (USS)",
                "reported",
                f"{per:.2f} MB ({d['many_models']['memory']['uss'] / 2**20:,.0f} MB for {n}; "
                f"{d['one_model']['memory']['uss'] / 2**20:,.0f} MB for 1)",
                "-",
            ]
        )
        rows.append(
            [
                f"One model-service process, {n} models: p99, 1 row, 1 client",
                "reported",
                f"{c.secs(d['p99_ms_many_models'])} ms (one-model process "
                f"{c.secs(d['p99_ms_one_model'])} ms)",
                "-",
            ]
        )
    for row in rows:  # a missed goal says why, as measured (bench/ANALYSIS.md has more)
        reason = next((r for prefix, r in MISSED_REASONS.items() if row[0].startswith(prefix)), "")
        if row[3] == "**missed**" and reason:
            row[3] = f"**missed**: {reason}"
    if not rows:
        return []
    out = ["## Goals vs measured", "", "| goal | target | measured | |", "|---|---:|---:|---|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return [*out, ""]


def scaling_plot() -> Path | None:
    """One figure of how each size-dependent figure grows with rows, from the JSON files."""
    series: list[tuple[str, str, list[int], list[float]]] = []

    def load(name):
        path = c.RESULTS / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    if d := load("orchestration"):
        ps = [p for p in d["per_size"] if p["ratio"] is not None]
        series.append(
            (
                "ratio",
                "orchestration: Airflow / plain",
                [p["rows"] for p in ps],
                [p["ratio"] for p in ps],
            )
        )
    if d := load("caching"):
        series.append(
            (
                "ratio",
                "caching: unchanged / full",
                [p["rows"] for p in d["per_size"]],
                [p["ratio"] for p in d["per_size"]],
            )
        )
    if d := load("validation"):
        series.append(
            (
                "ratio",
                "validation: GX / pandas",
                [p["rows"] for p in d["per_size"]],
                [p["call_ratio"] for p in d["per_size"]],
            )
        )
    if d := load("memory"):
        series.append(
            (
                "ratio",
                "memory: training peak / data",
                [p["rows"] for p in d["per_size"]],
                [p["task_ratio"] for p in d["per_size"]],
            )
        )
    if d := load("drift"):
        series.append(
            (
                "ratio",
                "drift: check / plain",
                [p["rows"] for p in d["per_size"]],
                [p["check_ratio"] for p in d["per_size"]],
            )
        )
    series = [s for s in series if len(s[2]) > 1]
    if not series:
        return None
    plt = c.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, label, xs, ys in series:
        ax.plot(xs, ys, "o-", label=label)
    ax.axhline(1.0, color="gray", linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("ratio to its baseline")
    ax.set_title("Scaling: each ratio from 10k to 1M rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = c.plot_path("scaling")
    fig.savefig(path, dpi=100)
    return path


def write_readme(
    runs: list[dict], total_s: float | None, quick: bool, readme_path: Path | None = None
) -> Path:
    info = c.machine_info()
    by_name = {r["name"]: r for r in runs}
    # Sections not run this time keep their last result (each gives its own date).
    for name, *_ in SCRIPTS + SCALE_SCRIPTS:
        if name not in by_name and (c.RESULTS / f"{name}.json").exists():
            data = json.loads((c.RESULTS / f"{name}.json").read_text())
            by_name[name] = {
                "name": name,
                "returncode": "-",
                "elapsed_s": data.get("elapsed_s"),
                "loadavg": data.get("machine", {}).get("loadavg_1m"),
            }
    loads = [
        f"{name} {r['loadavg']:.1f}" for name, r in by_name.items() if r.get("loadavg") is not None
    ]
    lines = [
        "# Benchmarks",
        "",
        "`make bench` (= `uv run --frozen python bench/run_all.py`, under 30 minutes) runs "
        "sections 1-8 below, each script in its own process; `make bench-scale` (= `run_all.py "
        "--scale`) runs the long ones (sections 9-11). Each script prints its tables, writes "
        "`bench/results/<name>.json` (kept in git; a section not run keeps its last result and "
        "date) and a PNG plot (not kept). Run one alone with `uv run python bench/<name>.py "
        "--help`. Ratios are taken within one run on one machine; absolute seconds depend on "
        "the machine and on whatever else it was doing (1-minute load average given below). "
        "`tests/bench/test_bench_smoke.py` runs every script on tiny sizes so they cannot rot.",
        "",
        f"Latest run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{'quick (tiny sizes)' if quick else 'default sizes'}"
        + (
            f", total {total_s / 60:.1f} min for all scripts."
            if total_s
            else " (README rebuilt from the JSON files; each section gives its own date)."
        ),
        "",
        machine_md(info),
        f"- 1-minute load average at the start of each script: "
        f"{', '.join(loads) or 'n/a'} (2 cores: above 2 means other "
        "work competed for the CPU)",
        "",
    ]
    lines += goals_table(by_name)
    if scaling_plot():
        lines += [
            "Scaling of every size-dependent ratio (10k -> 1M rows): "
            "`bench/results/scaling.png` (written by `run_all.py`, not kept in git).",
            "",
        ]
    scripts = {name: script for name, script, *_ in SCRIPTS + SCALE_SCRIPTS}
    described: set[str] = set()
    for name in ORDER + list(SCALE_TITLES):
        run = by_name.get(name)
        lines.append(f"## {TITLES[name]}")
        lines.append("")
        if scripts[name] in described:
            lines += [f"`bench/{scripts[name]}` as above, at the size given below.", ""]
        else:
            lines += [describe(scripts[name]), ""]
            described.add(scripts[name])
        path = c.RESULTS / f"{name}.json"
        if run is None or not path.exists():
            lines += ["Not run.", ""]
            continue
        data = json.loads(path.read_text())
        lines.append(
            f"`bench/{scripts[name]}` · {run['elapsed_s'] or 0:.0f} s · exit {run['returncode']} · "
            f"`bench/results/{name}.json` ({data['date']})"
        )
        lines.append("")
        if data.get("error"):
            lines += [f"**Error:** `{data['error'][:500]}`", ""]
        lines.append(data.get("markdown", "(no table)"))
        lines.append("")
        notes = NOTES.get(name)
        if notes:
            lines += [notes(data), ""]
    analysis = c.BENCH / "ANALYSIS.md"
    if analysis.exists():  # hand-written reading of a run; it says which run it read
        lines += [analysis.read_text().rstrip(), ""]
    if NOT_YET:
        lines += ["## Not measured here yet", "", *(f"- {item}" for item in NOT_YET), ""]
    readme = readme_path or c.BENCH / "README.md"
    readme.write_text("\n".join(lines))
    print(f"wrote {readme}")
    return readme


def _parse_notes(d: dict) -> str:
    worst = max(d["files"], key=lambda f: f["extra_s"]) if d["files"] else None
    text = (
        f"Verdict: DagBag extra {d['dagbag_extra_s']:.3f} s for {len(d['dagbag_dags'])} DAGs "
        f"({'meets' if d['meets_goal'] else 'misses'} the 0.3 s goal)"
    )
    if d.get("dagbag_extra_frozen_s") is not None:
        text += (
            f"; {d['dagbag_extra_frozen_s']:.3f} s forked as Airflow's dag-processor forks, "
            "after gc.freeze() "
            f"({'meets' if d['meets_goal_as_dag_processor'] else 'misses'} it)"
        )
    text += "."
    if worst and worst.get("top_imports"):
        top = ", ".join(f"`{t['module']}` {t['self_s']:.3f} s" for t in worst["top_imports"][:4])
        text += f" Largest imports of `{worst['file']}` beyond airflow.sdk: {top}."
    return text


def _orch_notes(d: dict) -> str:
    parts = []
    for p in d["per_size"]:
        if p["ratio"] is not None:
            warm = p.get("warm_ratio")
            parts.append(
                f"{c.human_rows(p['rows'])}: {warm:.2f}x warm vs warm ({p['ratio']:.2f}x "
                "against the plain process as launched)"
                if warm is not None
                else f"{c.human_rows(p['rows'])}: {p['ratio']:.2f}x"
            )
    label = d.get("airflow_label")
    if not parts:
        return f"Only the plain process ran ({label} skipped)."
    return f"Verdict ({label} / plain): " + ", ".join(parts) + "."


def _val_notes(d: dict) -> str:
    pc, mg = d.get("per_call_ratio_largest"), d.get("marginal_ratio")
    fixed = d.get("gx_fixed_s")
    return (
        f"Verdict: per call {c.ratio(pc)} at the largest size, marginal per row {c.ratio(mg)}; "
        f"GX's fixed cost per call is about {c.secs(fixed)} s, which dominates small frames."
    )


def _mem_notes(d: dict) -> str:
    return (
        f"Verdict: task peak / data {d['task_ratio_largest']:.2f}x at the largest size "
        f"({'meets' if d['meets_goal'] else 'misses'} the 3x goal)."
    )


def _cache_notes(d: dict) -> str:
    parts = [f"{c.human_rows(p['rows'])}: {p['ratio']:.3f}" for p in d["per_size"]]
    return (
        f"Verdict ({d['label']}): unchanged / full = {', '.join(parts) or 'n/a'} "
        f"({'meets' if d['meets_goal'] else 'misses'} the {d['goal_ratio']} goal"
        + (" at every size" if len(parts) > 1 else "")
        + ")."
    )


def _latency_notes(d: dict) -> str:
    if not d.get("airflow"):
        return "Only the push and the poll check ran (--quick: no Airflow)."
    return (
        f"Verdict: push -> run queued median {c.secs(d['median_latency_s'], 1)} s, worst "
        f"{c.secs(d['worst_latency_s'], 1)} s with a {d['poll_s']:g} s poll interval (goal "
        f"{d['goal_s']:g} s); at most {d['max_running_slots']} task(s) running while waiting "
        f"({'meets' if d['meets_goal'] else 'misses'} the goal)."
    )


def _serving_notes(d: dict) -> str:
    met, g = d["meets_goals"], d.get("goals", {})
    text = (
        f"Verdict: {c.ratio(d['throughput_ratio_1row_8clients'], 1)} mlflow's throughput for "
        f"single rows at 8 clients ({'meets' if met['throughput'] else 'misses'} "
        f">= {g.get('throughput_ratio', 5):g}x); p99 {c.secs(d['p99_ms_1row_1client'])} ms for "
        f"one row from one client ({'meets' if met['p99'] else 'misses'} "
        f"<= {g.get('p99_ms', 10):g} ms)"
    )
    if "batch_throughput" in met:
        text += (
            f"; 100-row batches: {c.ratio(d['batch_rows_ratio_8clients'], 1)} mlflow's rows/s "
            f"at 8 clients ({'meets' if met['batch_throughput'] else 'misses'} "
            f">= {g['batch_rows_ratio']:g}x), p99 {c.secs(d['batch_p99_ms_1client'])} ms from "
            f"one client vs mlflow's {c.secs(d['batch_p99_ms_1client_mlflow'])} ms "
            f"({'meets' if met['batch_p99'] else 'misses'} <= {g['batch_p99_ms']:g} ms and "
            "<= mlflow's)"
        )
    return text + "."


def _drift_notes(d: dict) -> str:
    r = d["per_size"][-1]
    return (
        f"At {c.human_rows(r['rows'])} rows: profile {r['profile_s']:.2f} s (once, at training) "
        f"+ check {r['check_s']:.2f} s vs plain {r['plain_s']:.2f} s "
        f"(check/plain {c.ratio(r['check_ratio'])}); both flag {len(r['drifted'])} / "
        f"{len(r['plain_drifted'])} of the {len(r['expected_drifted'])} shifted features."
    )


def _scoring_notes(d: dict) -> str:
    ours, base = d["conveyor"], d["mlflow"]
    return (
        f"Verdict at {c.human_rows(d['rows'])} rows: {ours['rows_per_s']:,.0f} vs "
        f"{base['rows_per_s']:,.0f} rows/s launch to exit ({c.ratio(d['ratio'])} mlflow's; "
        f"{'meets' if d['meets_goals']['ratio'] else 'misses'} >= 5x); Conveyor's scoring "
        f"pass alone {ours['scoring_pass_rows_per_s']:,.0f} rows/s; peak RSS "
        f"{d['peak_rss_mb']:,.0f} MB vs mlflow's {c.secs(base['peak_rss_mb'], 0)} MB "
        f"({'meets' if d['meets_goals']['peak_rss'] else 'misses'} <= 1 GB). 1-minute load "
        f"average when each started: conveyor {ours['loadavg_1m']:.1f}, mlflow "
        f"{base['loadavg_1m']:.1f}"
        + (
            f" on {cores} cores: other work competed for the CPU, so both "
            "absolute rates are low; the ratio is from one run with both under that load."
            if max(ours["loadavg_1m"], base["loadavg_1m"]) > (cores := d["machine"]["nproc"])
            else "."
        )
    )


NOTES = {
    "scoring": _scoring_notes,
    "scoring_scale": _scoring_notes,
    "drift": _drift_notes,
    "caching": _cache_notes,
    "data_latency": _latency_notes,
    "serving": _serving_notes,
    "parse_cost": _parse_notes,
    "orchestration": _orch_notes,
    "validation": _val_notes,
    "memory": _mem_notes,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--only", help="comma-separated script names, e.g. parse_cost,memory")
    parser.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write bench/README.md (default: yes, except with --quick)",
    )
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="run nothing: rebuild the README from the JSON files in bench/results",
    )
    parser.add_argument("--readme-path", type=Path, help="write the README here instead")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="the long runs instead (make bench-scale): 500 pipelines, many models in one "
        "service, batch scoring at 10M rows",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    write = (not args.quick) if args.readme is None else args.readme

    if args.no_run:  # every section comes from its JSON file
        write_readme([], None, args.quick, args.readme_path)
        return 0

    started = time.perf_counter()
    runs = []
    for name, script, full, quick in SCALE_SCRIPTS if args.scale else SCRIPTS:
        if only and name not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        load = c.machine_info()["loadavg_1m"]
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(Path(c.BENCH) / script), *(quick if args.quick else full)],
            check=False,
        )
        elapsed = time.perf_counter() - t
        runs.append(
            {"name": name, "returncode": done.returncode, "elapsed_s": elapsed, "loadavg": load}
        )
        print(f"=== {name}: exit {done.returncode} in {elapsed:.0f} s ===", flush=True)
    total = time.perf_counter() - started

    rows = [[r["name"], r["returncode"], c.secs(r["elapsed_s"], 0)] for r in runs]
    rows.append(["total", "", c.secs(total, 0)])
    c.print_table("bench/run_all.py", ["script", "exit", "seconds"], rows)
    if write:
        write_readme(runs, total, args.quick, args.readme_path)
    return 0 if all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
