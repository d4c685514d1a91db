"""Memory: peak RSS of the training step divided by the in-memory dataset size.

For each size a fresh interpreter imports what the training task imports, records its
RSS (the baseline), then does what the task does with the validated snapshot, through
the same core functions: read the Parquet file column by column
(``conveyor.data.frames.read_parquet_columns``), keep only the training rows
(``conveyor.data.splits.split_part``) and fit the pipeline (``conveyor.modeling.training.train_model``:
HistGradientBoostingClassifier, numeric preprocessing ``auto``, i.e. none for it; one
thread). Peak RSS comes from the kernel's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` between phases), cross-checked with ``ru_maxrss``.

* task peak / data: (peak RSS during read + split + fit - baseline) / dataset bytes
  (goal: <= 3x);
* fit peak / train rows: the peak while ``train_model`` runs, above the RSS just before
  it, divided by the bytes of the training part it receives;
* baseline: the straightforward way in another fresh interpreter, as Conveyor did it
  before (``pandas.read_parquet``, both split parts alive, median imputation and
  standard scaling in front of the trees): task peak / data and Conveyor / baseline.

    uv run python bench/memory.py [--sizes 10k,100k,1M] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import _common as c

NAME = "memory"
GOAL_RATIO = 3.0
DEFAULT_SIZES = "10k,100k,1M"


def worker(parquet: str, rows: int, way: str) -> None:
    """One training step on ``parquet``: ``conveyor`` (the task's code path) or
    ``baseline`` (the straightforward one); reports peaks above the post-import RSS."""
    t0 = time.perf_counter()
    import pandas as pd
    import pyarrow.parquet  # noqa: F401
    import sklearn.compose
    import sklearn.ensemble
    import sklearn.impute
    import sklearn.model_selection
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401
    import threadpoolctl  # noqa: F401

    from conveyor.config import PipelineConfig, PreprocessSpec
    from conveyor.data.frames import read_parquet_columns
    from conveyor.data.splits import split_frame, split_part
    from conveyor.modeling.training import train_model

    cfg = PipelineConfig.model_validate(c.pipeline_dict("bench_memory", "data/bench.csv"))
    if way == "baseline":
        model = cfg.model.model_copy(update={"preprocess": PreprocessSpec(impute=True, scale=True)})
        cfg = cfg.model_copy(update={"model": model})
    import_s = time.perf_counter() - t0
    c.trim_memory()
    base = c.rss_bytes()
    c.reset_peak_rss()

    t = time.perf_counter()
    if way == "baseline":
        frame = pd.read_parquet(parquet)
        train, _test = split_frame(frame, cfg)  # the frame and both parts stay alive
    else:
        frame = read_parquet_columns(parquet)
        train = split_part(frame, cfg, "train")
    data_bytes = int(frame.memory_usage(deep=True).sum())
    if way == "conveyor":
        del frame  # as the training task: only the training rows stay
        gc.collect()
    train_bytes = int(train.memory_usage(deep=True).sum())
    load_s = time.perf_counter() - t
    peak_load = c.peak_rss_bytes()

    c.trim_memory()
    before_fit = c.rss_bytes()
    c.reset_peak_rss()
    t = time.perf_counter()
    result = train_model(train, cfg, n_jobs=1)
    fit_s = time.perf_counter() - t
    peak_fit = c.peak_rss_bytes()
    maxrss = c.ru_maxrss_bytes()
    assert result.train_rows == len(train)
    peak = max(peak_load, peak_fit)
    c.emit(
        {
            "rows": rows,
            "way": way,
            "import_s": import_s,
            "load_s": load_s,
            "fit_s": fit_s,
            "baseline_rss": base,
            "data_bytes": data_bytes,
            "train_bytes": train_bytes,
            "peak_rss": peak,
            "task_peak_extra": peak - base,
            "load_peak_extra": peak_load - base,
            "rss_before_fit": before_fit,
            "fit_peak_extra": peak_fit - before_fit,
            "ru_maxrss": maxrss,
            "ru_maxrss_extra": maxrss - base,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="rows, e.g. 10k,100k,1M")
    parser.add_argument("--quick", action="store_true", help="2000 rows, no baseline")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline way")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.worker[2])
        return 0

    home = c.bench_env("memory")
    sizes = sorted(c.parse_sizes("2000" if args.quick else args.sizes))
    if args.quick:
        args.no_baseline = True
    started = time.perf_counter()
    results = []
    for rows in sizes:
        path = Path(home) / f"snapshot_{rows}.parquet"
        frame = c.make_frame(rows)
        frame.to_parquet(path, index=False)
        del frame
        result, wall = c.run_worker(
            [__file__, "--worker", str(path), str(rows), "conveyor"], timeout=1800
        )
        result["wall_s"] = wall
        result["baseline_ratio"] = result["vs_baseline"] = None
        if not args.no_baseline:
            naive, _ = c.run_worker(
                [__file__, "--worker", str(path), str(rows), "baseline"], timeout=1800
            )
            result["baseline_peak_extra"] = naive["task_peak_extra"]
            result["baseline_ratio"] = naive["task_peak_extra"] / naive["data_bytes"]
            result["vs_baseline"] = result["task_peak_extra"] / naive["task_peak_extra"]
        path.unlink()
        result["task_ratio"] = result["task_peak_extra"] / result["data_bytes"]
        result["fit_ratio"] = result["fit_peak_extra"] / result["train_bytes"]
        result["ru_maxrss_ratio"] = result["ru_maxrss_extra"] / result["data_bytes"]
        results.append(result)
        print(
            f"  {c.human_rows(rows):>5s} rows: data {c.mb(result['data_bytes'])} MiB, task peak "
            f"+{c.mb(result['task_peak_extra'])} MiB ({result['task_ratio']:.2f}x), "
            f"fit {result['fit_s']:.1f} s",
            flush=True,
        )

    rows_md = [
        [
            c.human_rows(r["rows"]),
            c.mb(r["data_bytes"]),
            c.mb(r["baseline_rss"]),
            c.mb(r["load_peak_extra"]),
            c.mb(r["task_peak_extra"]),
            c.ratio(r["task_ratio"]),
            c.ratio(r["ru_maxrss_ratio"]),
            c.mb(r["fit_peak_extra"]),
            c.ratio(r["fit_ratio"]),
            c.secs(r["fit_s"], 1),
            c.ratio(r["baseline_ratio"]),
            c.ratio(r["vs_baseline"]),
        ]
        for r in results
    ]
    md = c.print_table(
        f"Training step peak RSS / dataset size ({c.N_FEATURES} float features + target, "
        f"HistGradientBoostingClassifier, 1 thread; goal task peak <= {GOAL_RATIO}x data; "
        "baseline: pandas.read_parquet, both split parts, impute + scale)",
        [
            "rows",
            "data MiB",
            "RSS after imports MiB",
            "read+split peak MiB",
            "task peak MiB",
            "task peak/data",
            "ru_maxrss/data",
            "fit peak MiB",
            "fit peak/train part",
            "fit s",
            "baseline peak/data",
            "Conveyor / baseline",
        ],
        rows_md,
    )

    plt = c.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    xs = [r["rows"] for r in results]
    ax.plot(xs, [r["task_ratio"] for r in results], "o-", label="task peak / data")
    ax.plot(xs, [r["fit_ratio"] for r in results], "o-", label="fit peak / train part")
    if all(r["baseline_ratio"] is not None for r in results):
        ax.plot(xs, [r["baseline_ratio"] for r in results], "o--", label="baseline / data")
    ax.axhline(GOAL_RATIO, color="red", linestyle="--", label=f"goal {GOAL_RATIO}x")
    c.rows_axis(ax, ylabel="peak extra RSS / bytes", title="Training memory")
    c.save_plot(fig, NAME)

    largest = results[-1]
    c.write_result(
        NAME,
        {
            "sizes": sizes,
            "goal_ratio": GOAL_RATIO,
            "per_size": results,
            "task_ratio_largest": largest["task_ratio"],
            "meets_goal": largest["task_ratio"] <= GOAL_RATIO,
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
