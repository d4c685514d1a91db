"""Batch scoring: Conveyor's scoring step vs ``mlflow models predict`` on the same model and file.

One model is trained on scikit-learn's breast-cancer data (the demo pipeline's config,
without its grid search), logged to MLflow, registered and promoted to ``production``.
N rows (default 1M) are drawn with replacement from the dataset's 30 feature columns
and written as one CSV, published to a temporary DVC data registry. Then, in the same
run, each way scores that same file with that same registered version, each in its own
fresh process:

* **conveyor**: one process calls ``conveyor.scoring.runs.score_with_production`` (the
  ``score_<name>`` DAG's one task without Airflow): pin production, load the version,
  fetch the input from DVC (md5 checked), check every value against the input schema,
  score in chunks of ``--chunk-rows`` into Parquet (ids + prediction + class
  probabilities), publish the output as a new DVC version, write the lineage record;
* **mlflow** (baseline): ``mlflow models predict -m models:/NAME/V -i FILE -t csv -o
  OUT --env-manager local`` (the venv's ``bin/`` first on PATH): reads the whole CSV,
  predicts, writes the labels as JSON.

rows/s = rows / wall time of the process, launch to exit (interpreter start, imports and
model load included for both; Conveyor's DVC fetch, schema check and DVC publish too).
Also Conveyor's scoring pass alone (the record's own rows/s). Peak RSS: the process's
``VmHWM`` (high-water mark), sampled from ``/proc/<pid>/status`` every 50 ms until it
exits; for Conveyor also the value the step records itself at its end. Both outputs are
compared label by label. Goals (issue 17): >= 5x mlflow's rows/s, <= 1 GB peak RSS at 1M
rows.

    uv run python bench/scoring.py [--rows 1M] [--chunk-rows 100000] [--quick]
    make bench-scale     # --rows 10M, written to bench/results/scoring_scale.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "scoring"
PIPELINE = "bench_scoring"
INPUT = "data/bench_scoring_input.csv"
OUTPUT = "scores/bench_scoring.parquet"
#: Goals of issue 17.
GOAL_RATIO = 5.0  # conveyor rows/s / mlflow rows/s, same model and file
GOAL_PEAK_MB = 1024.0  # conveyor scoring process at 1M rows
#: Rows generated and written per step, so preparing 10M rows stays small in memory.
WRITE_ROWS = 500_000


# --------------------------------------------------------------------------- workers


def prepare_worker(spec_path: str) -> None:
    """Train, register and promote the model; write and publish the input CSV."""
    import numpy as np
    import yaml
    from sklearn.datasets import load_breast_cancer

    from conveyor.config import load_pipeline_config
    from conveyor.data.registry import init_registry, publish_file
    from conveyor.data.source import read_tracked_md5
    from conveyor.settings import Settings

    spec = json.loads(Path(spec_path).read_text())
    home = Path(os.environ["CONVEYOR_HOME"])
    settings = Settings.from_env()
    t0 = time.perf_counter()

    raw = yaml.safe_load((c.REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    raw["name"] = PIPELINE
    raw["model"].pop("search", None)
    raw["scoring"] = {
        "input": {"path": INPUT, "rev": "main", "format": "csv"},
        "output": "registry",
        "output_path": OUTPUT,
        "output_format": "parquet",
        "probabilities": True,
        "chunk_rows": spec["chunk_rows"],
        "watch": False,
    }
    yaml_path = home / "pipelines" / f"{PIPELINE}.yaml"
    yaml_path.parent.mkdir(parents=True, exist_ok=True)
    yaml_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_pipeline_config(yaml_path)

    version, _, _ = c.train_and_promote(settings, cfg, "bench_scoring")
    frame = load_breast_cancer(as_frame=True).frame
    model_s = time.perf_counter() - t0

    # The input: rows drawn with replacement from the 30 feature columns, written in steps.
    t1 = time.perf_counter()
    features = frame[list(cfg.feature_columns)]
    rng = np.random.default_rng(0)
    csv = home / "input.csv"
    rows = spec["rows"]
    with csv.open("w") as out:
        for start in range(0, rows, WRITE_ROWS):
            n = min(WRITE_ROWS, rows - start)
            part = features.iloc[rng.integers(0, len(features), n)]
            part.to_csv(out, index=False, header=start == 0)
    digest = hashlib.md5()
    with csv.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    registry = Path(settings.data_registry)
    init_registry(registry, home / "dvc-remote")
    sha = publish_file(registry, INPUT, csv, message=f"bench scoring input, {rows} rows")
    md5 = read_tracked_md5(registry, INPUT, sha)
    if md5 != digest.hexdigest():
        raise RuntimeError(f"published md5 {md5} != written file's {digest.hexdigest()}")
    c.emit(
        {
            "version": str(version),
            "model_name": cfg.model_name,
            "yaml": str(yaml_path),
            "csv": str(csv),
            "csv_bytes": csv.stat().st_size,
            "md5": md5,
            "sha": sha,
            "model_s": model_s,
            "input_s": time.perf_counter() - t1,
        }
    )


def conveyor_worker(yaml_path: str, run_id: str) -> None:
    """The scoring step alone in this fresh process (what the DAG's task runs)."""
    t0 = time.perf_counter()
    from conveyor.config import load_pipeline_config
    from conveyor.scoring.runs import score_with_production
    from conveyor.settings import Settings

    imports_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    record = score_with_production(
        load_pipeline_config(Path(yaml_path)),
        Settings.from_env(),
        dag_id=f"score_{PIPELINE}",
        run_id=run_id,
    )
    c.emit({"record": record.to_dict(), "imports_s": imports_s, "step_s": time.perf_counter() - t1})


# --------------------------------------------------------------------------- measuring


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_measured(argv: list[str], log: Path, *, timeout: float) -> dict[str, Any]:
    """Run ``argv``; wall seconds launch to exit, peak RSS (VmHWM sampled every 50 ms)."""
    env = dict(os.environ)
    # `mlflow` resolves helpers from PATH: the venv's bin first (as serving.py does).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    load = os.getloadavg()[0]
    peak_kb = 0
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            kb = _vm_hwm_kb(proc.pid)
            if kb:
                peak_kb = max(peak_kb, kb)
            if time.perf_counter() - started > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{argv[:4]} still running after {timeout:.0f} s")
            time.sleep(0.05)
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)[:300]} exited {proc.returncode}:\n{text[-4000:]}")
    results = [
        json.loads(line[len(c.RESULT_MARK) :])
        for line in text.splitlines()
        if line.startswith(c.RESULT_MARK)
    ]
    return {
        "wall_s": wall,
        "peak_rss_mb": peak_kb / 1024 if peak_kb else None,
        "loadavg_1m": round(load, 2),
        "result": results[-1] if results else None,
    }


def same_labels(conveyor_out: Path, mlflow_out: Path) -> bool:
    """Conveyor's Parquet ``prediction`` column equals mlflow's JSON labels, row by row."""
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(conveyor_out, columns=["prediction"])["prediction"].to_numpy()
    data = json.loads(mlflow_out.read_text())
    theirs = data["predictions"] if isinstance(data, dict) else data
    theirs = np.asarray(
        [next(iter(x.values())) if isinstance(x, dict) else x for x in theirs], dtype=ours.dtype
    )
    return ours.shape == theirs.shape and bool((ours == theirs).all())


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1M", help="rows to score, e.g. 1M or 10M")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="scoring.chunk_rows")
    parser.add_argument(
        "--result-name", default=NAME, help="bench/results/<name>.json (bench-scale: another)"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 rows (smoke run)")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--conveyor", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare_worker(args.prepare)
        return 0
    if args.conveyor:
        conveyor_worker(*args.conveyor)
        return 0

    home = c.bench_env(NAME)
    rows = 2_000 if args.quick else c.parse_sizes(args.rows)[0]
    chunk_rows = min(args.chunk_rows, 500) if args.quick else args.chunk_rows
    started = time.perf_counter()
    timeout = max(600.0, rows / 1_000_000 * 600)

    spec = home / "prepare.json"
    spec.write_text(json.dumps({"rows": rows, "chunk_rows": chunk_rows}))
    prep, prep_wall = c.run_worker([__file__, "--prepare", str(spec)], timeout=timeout)
    print(
        f"  model {PIPELINE} v{prep['version']} in {prep['model_s']:.1f} s; input "
        f"{c.human_rows(rows)} rows, {prep['csv_bytes'] / 2**20:,.0f} MB CSV in "
        f"{prep['input_s']:.1f} s",
        flush=True,
    )

    mlflow_out = home / "mlflow-predictions.json"
    ways: dict[str, dict[str, Any]] = {}
    # mlflow first: it reads the CSV the registry holds (the same bytes Conveyor fetches).
    ways["mlflow"] = run_measured(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "models",
            "predict",
            "-m",
            f"models:/{prep['model_name']}/{prep['version']}",
            "-i",
            prep["csv"],
            "-t",
            "csv",
            "-o",
            str(mlflow_out),
            "--env-manager",
            "local",
        ],
        home / "mlflow.log",
        timeout=timeout,
    )
    ways["conveyor"] = run_measured(
        [sys.executable, __file__, "--conveyor", prep["yaml"], f"bench-{os.getpid()}"],
        home / "conveyor.log",
        timeout=timeout,
    )
    record = ways["conveyor"]["result"]["record"]
    if record["rows"] != rows or record["input"]["md5"] != prep["md5"]:
        raise RuntimeError(f"conveyor scored something else: {record}")
    for way in ways.values():
        way["rows_per_s"] = rows / way["wall_s"]
    registry = Path(os.environ["CONVEYOR_DATA_REGISTRY"])
    agree = same_labels(registry / OUTPUT, mlflow_out)
    if not agree:
        raise RuntimeError("conveyor and mlflow disagree on the same rows: not the same model?")
    for name, way in ways.items():
        print(
            f"  {name:8s} {way['wall_s']:7.1f} s  {way['rows_per_s']:10,.0f} rows/s  "
            f"peak RSS {c.secs(way['peak_rss_mb'], 0)} MB",
            flush=True,
        )
    report(args, rows, chunk_rows, prep, prep_wall, ways, agree, started)
    return 0


def report(args, rows, chunk_rows, prep, prep_wall, ways, agree, started) -> None:
    ours, base = ways["conveyor"], ways["mlflow"]
    worker = ours["result"]
    record = worker["record"]
    ratio = ours["rows_per_s"] / base["rows_per_s"] if base["rows_per_s"] else None
    peak = record["peak_rss_mb"]
    peak_sampled = ours["peak_rss_mb"]
    peak_mb = max(x for x in (peak, peak_sampled) if x is not None)
    label = c.human_rows(rows)
    md = c.print_table(
        f"Batch scoring, {label} rows x 30 features from one CSV ({prep['csv_bytes'] / 2**20:,.0f} "
        f"MB): Conveyor's scoring step vs `mlflow models predict --env-manager local` "
        f"(baseline), same model (v{prep['version']}) and file; one fresh process each, "
        "wall = launch to exit",
        [
            "way",
            "wall s",
            "rows/s",
            "vs mlflow",
            "peak RSS MB",
            "load avg 1m at start",
            "output",
        ],
        [
            [
                "conveyor",
                c.secs(ours["wall_s"], 1),
                f"{ours['rows_per_s']:,.0f}",
                c.ratio(ratio),
                f"{peak_mb:,.0f}",
                f"{ours['loadavg_1m']:.1f}",
                "Parquet: prediction + 2 probabilities, new DVC version, lineage record",
            ],
            [
                "mlflow",
                c.secs(base["wall_s"], 1),
                f"{base['rows_per_s']:,.0f}",
                "1.00x",
                c.secs(base["peak_rss_mb"], 0),
                f"{base['loadavg_1m']:.1f}",
                "JSON: labels",
            ],
        ],
    )
    inside = [
        ["imports (conveyor.scoring.runs, config, settings)", c.secs(worker["imports_s"])],
        [
            "score_with_production: pin, load, fetch, schema check, score, publish",
            c.secs(worker["step_s"]),
        ],
        [
            f"  of which the scoring pass ({record['rows_per_second']:,.0f} rows/s)",
            c.secs(record["seconds"]),
        ],
        ["process start, exit and the rest", c.secs(ours["wall_s"] - worker["step_s"])],
    ]
    md += "\n\n" + c.print_table(
        f"Where Conveyor's {c.secs(ours['wall_s'], 1)} s go (chunk_rows {chunk_rows:,})",
        ["part", "s"],
        inside,
    )
    meets_ratio = ratio is not None and ratio >= GOAL_RATIO
    meets_peak = peak_mb <= GOAL_PEAK_MB
    summary = [
        [
            f"rows/s vs mlflow (goal >= {GOAL_RATIO:g}x)",
            c.ratio(ratio),
            "met" if meets_ratio else "missed",
        ],
        [
            f"conveyor peak RSS, {label} rows (goal <= {GOAL_PEAK_MB:,.0f} MB"
            + (", at 1M rows)" if rows != 1_000_000 else ")"),
            f"{peak_mb:,.0f} MB (step's own VmHWM {peak:,.0f}, sampled {c.secs(peak_sampled, 0)})",
            "met" if meets_peak else "missed",
        ],
        ["same labels from both on every row", str(agree), ""],
        [
            "model + input preparation (not measured)",
            f"{prep_wall:.1f} s",
            "",
        ],
    ]
    md += "\n\n" + c.print_table("Batch scoring summary", ["measure", "value", "goal"], summary)

    plt = c.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = ["conveyor", "mlflow"]
    ax.bar(names, [ways[n]["rows_per_s"] for n in names], color=["tab:blue", "tab:gray"])
    ax.set_ylabel("rows per second (launch to exit)")
    ax.set_title(f"Batch scoring, {label} rows")
    c.save_plot(fig, args.result_name)

    c.write_result(
        args.result_name,
        {
            "rows": rows,
            "chunk_rows": chunk_rows,
            "model_version": prep["version"],
            "input_bytes": prep["csv_bytes"],
            "conveyor": {
                "wall_s": ours["wall_s"],
                "rows_per_s": ours["rows_per_s"],
                "peak_rss_mb": peak_mb,
                "peak_rss_mb_recorded": peak,
                "peak_rss_mb_sampled": peak_sampled,
                "imports_s": worker["imports_s"],
                "step_s": worker["step_s"],
                "scoring_pass_s": record["seconds"],
                "scoring_pass_rows_per_s": record["rows_per_second"],
                "loadavg_1m": ours["loadavg_1m"],
            },
            "mlflow": {
                "wall_s": base["wall_s"],
                "rows_per_s": base["rows_per_s"],
                "peak_rss_mb": base["peak_rss_mb"],
                "loadavg_1m": base["loadavg_1m"],
            },
            "ratio": ratio,
            "peak_rss_mb": peak_mb,
            "goals": {"ratio": GOAL_RATIO, "peak_rss_mb_at_1m": GOAL_PEAK_MB},
            "meets_goals": {"ratio": meets_ratio, "peak_rss": meets_peak},
            "same_labels": agree,
            "prepare_s": prep_wall,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
