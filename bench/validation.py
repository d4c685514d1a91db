"""Validation: Great Expectations (``conveyor.validation.expectations.validate_frame``) vs plain pandas.

Generated data of N rows x 30 float columns is checked against the same spec both ways:
the column set, the row count, each column's dtype, not-null and a min/max range (92
checks). The pandas version counts failures and keeps five examples per check, as GX's
BASIC result format does, so neither side can stop early.

``validate_frame`` computes the metrics of these expectation types in one vectorised
pandas/numpy pass and lets each GX expectation's own ``_validate`` build its result
(``conveyor.validation.computed``); GX's metric-graph engine, about 7 ms of Python per
expectation, only runs for expectation types or columns that path leaves to it (none
here). Two ratios, for the fixed cost per call and the work per row:

* per call: GX time / pandas time at each size (goal at 1M rows: <= 2x);
* marginal per row: (GX(largest) - GX(smallest)) / (pandas(largest) - pandas(smallest)),
  the slope, i.e. what each additional row costs.

The Data Docs the operator renders for every run (``docs_dir``) are GX's renderer's
work on top of that: timed separately at the largest size ("GX + Data Docs"), not part
of the ratio, since the pandas checks render no report.

Peak memory, two ways: the first full-size call in a fresh interpreter (after a 100-row
call that pays GX's one-time set-up), peak RSS above the RSS before it (kernel high-water
mark, reset just before); and the peak of allocations traced by ``tracemalloc`` during a
later call. Each engine and size runs in its own fresh interpreter.

    uv run python bench/validation.py [--sizes 10k,100k,1M] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from typing import Any

import _common as c

NAME = "validation"
GOAL_RATIO = 2.0
DEFAULT_SIZES = "10k,100k,1M"


def spec():
    from conveyor.config import ValidationSpec

    return ValidationSpec.model_validate(
        {
            "min_rows": 1,
            "max_rows": 100_000_000,
            "columns": c.column_specs(target=False),
        }
    )


# --------------------------------------------------------------------------- the checks

_FLOAT_KINDS = "fiu"


def pandas_checks(df, spec) -> dict[str, Any]:
    """The checks ``validate_frame`` runs, by hand: columns, rows, dtype, not-null, range."""
    failures: list[dict[str, Any]] = []
    evaluated = 0
    names = list(spec.columns)

    evaluated += 1
    missing = sorted(set(names) - set(df.columns))
    unexpected = sorted(set(df.columns) - set(names))
    if missing or unexpected:
        failures.append({"check": "columns", "missing": missing, "unexpected": unexpected})
    evaluated += 1
    rows = len(df)
    if rows < spec.min_rows or (spec.max_rows is not None and rows > spec.max_rows):
        failures.append({"check": "row_count", "observed": rows})

    for name, col in spec.columns.items():
        if name not in df.columns:
            continue
        series = df[name]
        evaluated += 1
        if col.type == "float" and series.dtype.kind not in _FLOAT_KINDS:
            failures.append({"check": "dtype", "column": name, "observed": str(series.dtype)})
        if not col.nullable:
            evaluated += 1
            nulls = int(series.isna().sum())
            if nulls:
                failures.append({"check": "not_null", "column": name, "unexpected": nulls})
        lo = -sys.float_info.max if col.min is None else col.min
        hi = sys.float_info.max if col.max is None else col.max
        evaluated += 1
        # NaN compares False on both sides, so nulls are left to the not-null check (as GX).
        bad = (series < lo) | (series > hi)
        count = int(bad.sum())
        if count:
            failures.append(
                {
                    "check": "between",
                    "column": name,
                    "unexpected": count,
                    "examples": series[bad].head(5).tolist(),
                }
            )
    return {"success": not failures, "evaluated": evaluated, "failed": len(failures)}


# --------------------------------------------------------------------------- worker


def worker(engine: str, rows: int, repeats: int) -> None:
    t0 = time.perf_counter()
    import pandas  # noqa: F401

    if engine in ("gx", "gx_docs"):
        import tempfile

        from conveyor.validation.expectations import _import_gx, validate_frame

        _import_gx()
        docs = engine == "gx_docs"

        def run(frame):
            if not docs:
                return validate_frame(frame, s, suite_name="bench")
            with tempfile.TemporaryDirectory() as tmp:
                return validate_frame(frame, s, suite_name="bench", docs_dir=tmp)
    else:

        def run(frame):
            return pandas_checks(frame, s)

    import_s = time.perf_counter() - t0
    s = spec()
    frame = c.make_frame(rows, target=False)
    data_bytes = int(frame.memory_usage(deep=True).sum())

    # Memory first, on the first full-size call: later calls reuse memory the allocator
    # already holds, so their RSS does not grow. A call on 100 rows beforehand pays GX's
    # one-time set-up (lazy imports, registries) outside the measurement.
    run(frame.head(100))
    c.trim_memory()
    before = c.rss_bytes()
    resettable = c.reset_peak_rss()
    t = time.perf_counter()
    first = run(frame)
    first_s = time.perf_counter() - t
    peak = c.peak_rss_bytes()
    assert first["success"], first
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(frame)
        times.append(time.perf_counter() - t)
    # Allocations seen by tracemalloc (numpy and pandas buffers included), whatever the
    # allocator reuses; slower, so after the timed calls.
    gc.collect()
    tracemalloc.start()
    run(frame)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    c.emit(
        {
            "engine": engine,
            "rows": rows,
            "import_s": import_s,
            "first_call_s": first_s,
            "call_s": c.median(times),
            "calls_s": times,
            "evaluated": first["evaluated"],
            "data_bytes": data_bytes,
            "rss_before": before,
            "peak_extra_bytes": max(0, peak - before),
            "peak_reset": resettable,
            "traced_peak_bytes": traced_peak,
        }
    )


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="rows, e.g. 10k,100k,1M")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per size")
    parser.add_argument("--quick", action="store_true", help="200 rows, one repeat")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), max(1, args.repeats))
        return 0

    c.bench_env("validation")
    sizes = sorted(c.parse_sizes("200" if args.quick else args.sizes))
    repeats = 1 if args.quick else max(1, args.repeats)
    started = time.perf_counter()
    results: dict[str, dict[int, dict]] = {"gx": {}, "pandas": {}}
    for rows in sizes:
        for engine in ("pandas", "gx"):
            result, _ = c.run_worker(
                [__file__, "--worker", engine, str(rows), "--repeats", str(repeats)], timeout=900
            )
            results[engine][rows] = result
            print(
                f"  {engine:6s} {c.human_rows(rows):>5s} rows: {result['call_s']:.3f} s per call, "
                f"peak +{c.mb(result['peak_extra_bytes'])} MiB",
                flush=True,
            )

    table = []
    per_size = []
    for rows in sizes:
        gx, pd_ = results["gx"][rows], results["pandas"][rows]
        call_ratio = gx["call_s"] / pd_["call_s"] if pd_["call_s"] else None
        mem_ratio = (
            gx["peak_extra_bytes"] / pd_["peak_extra_bytes"] if pd_["peak_extra_bytes"] else None
        )
        per_size.append(
            {
                "rows": rows,
                "data_bytes": gx["data_bytes"],
                "gx_call_s": gx["call_s"],
                "gx_first_call_s": gx["first_call_s"],
                "pandas_call_s": pd_["call_s"],
                "call_ratio": call_ratio,
                "gx_peak_extra_bytes": gx["peak_extra_bytes"],
                "pandas_peak_extra_bytes": pd_["peak_extra_bytes"],
                "memory_ratio": mem_ratio,
                "gx_traced_peak_bytes": gx["traced_peak_bytes"],
                "pandas_traced_peak_bytes": pd_["traced_peak_bytes"],
                "traced_ratio": gx["traced_peak_bytes"] / pd_["traced_peak_bytes"]
                if pd_["traced_peak_bytes"]
                else None,
                "gx_peak_vs_data": gx["peak_extra_bytes"] / gx["data_bytes"],
                "expectations": gx["evaluated"],
            }
        )
        table.append(
            [
                c.human_rows(rows),
                c.mb(gx["data_bytes"]),
                c.secs(pd_["call_s"], 3),
                c.secs(gx["call_s"], 3),
                c.ratio(call_ratio),
                c.mb(pd_["peak_extra_bytes"]),
                c.mb(gx["peak_extra_bytes"]),
                c.ratio(mem_ratio),
                c.ratio(gx["peak_extra_bytes"] / gx["data_bytes"]),
                c.mb(pd_["traced_peak_bytes"]),
                c.mb(gx["traced_peak_bytes"]),
            ]
        )
    small, large = sizes[0], sizes[-1]
    # The report the operator renders every run, at the largest size only.
    docs, _ = c.run_worker(
        [__file__, "--worker", "gx_docs", str(large), "--repeats", str(repeats)], timeout=900
    )
    print(f"  GX + Data Docs {c.human_rows(large):>5s} rows: {docs['call_s']:.3f} s per call")
    marginal = None
    gx_fixed = None
    if large > small:
        d_gx = results["gx"][large]["call_s"] - results["gx"][small]["call_s"]
        d_pd = results["pandas"][large]["call_s"] - results["pandas"][small]["call_s"]
        # Below ~5 ms of pandas work the difference is noise: no slope to report.
        marginal = d_gx / d_pd if d_pd > 0.005 and d_gx > 0 else None
        slope = d_gx / (large - small)
        gx_fixed = results["gx"][small]["call_s"] - slope * small
    md = c.print_table(
        f"GX validate_frame vs plain pandas checks ({per_size[0]['expectations']} checks on "
        f"{c.N_FEATURES} float columns; median of {repeats} calls; pandas = baseline)",
        [
            "rows",
            "data MiB",
            "pandas s",
            "GX s",
            "GX/pandas",
            "pandas peak MiB",
            "GX peak MiB",
            "GX/pandas mem",
            "GX peak/data",
            "pandas traced MiB",
            "GX traced MiB",
        ],
        table,
    )
    top = per_size[-1]
    summary = [
        [
            f"per call at {c.human_rows(large)} rows (goal <= {GOAL_RATIO}x)",
            c.ratio(top["call_ratio"]),
        ],
        [
            f"marginal per row, {c.human_rows(small)} -> {c.human_rows(large)}",
            c.ratio(marginal),
        ],
        ["GX fixed cost per call (intercept, s)", c.secs(gx_fixed, 3)],
        ["GX first call in a process (s)", c.secs(results["gx"][large]["first_call_s"], 3)],
        [
            f"GX + Data Docs per call at {c.human_rows(large)} rows (s, not in the ratio)",
            c.secs(docs["call_s"], 3),
        ],
        [
            "import great_expectations + conveyor.validation (s)",
            c.secs(results["gx"][large]["import_s"]),
        ],
        ["import pandas (s)", c.secs(results["pandas"][large]["import_s"])],
    ]
    md += "\n\n" + c.print_table("Validation summary", ["measure", "value"], summary)

    plt = c.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(sizes, [results["pandas"][r]["call_s"] for r in sizes], "o-", label="pandas")
    ax1.plot(sizes, [results["gx"][r]["call_s"] for r in sizes], "o-", label="GX")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("rows (30 float columns)")
    ax1.set_ylabel("seconds per call")
    ax1.set_title("Validation time")
    ax1.legend()
    ax2.plot(
        sizes,
        [results["pandas"][r]["peak_extra_bytes"] / 2**20 for r in sizes],
        "o-",
        label="pandas",
    )
    ax2.plot(sizes, [results["gx"][r]["peak_extra_bytes"] / 2**20 for r in sizes], "o-", label="GX")
    ax2.plot(
        sizes, [results["gx"][r]["data_bytes"] / 2**20 for r in sizes], "k--", label="data size"
    )
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("rows (30 float columns)")
    ax2.set_ylabel("peak extra RSS (MiB)")
    ax2.set_title("Validation peak memory")
    ax2.legend()
    c.save_plot(fig, NAME)

    c.write_result(
        NAME,
        {
            "sizes": sizes,
            "repeats": repeats,
            "goal_ratio": GOAL_RATIO,
            "per_size": per_size,
            "per_call_ratio_largest": top["call_ratio"],
            "marginal_ratio": marginal,
            "gx_fixed_s": gx_fixed,
            "gx_docs_call_s_largest": docs["call_s"],
            "gx_docs_first_call_s_largest": docs["first_call_s"],
            "meets_goal": top["call_ratio"] is not None and top["call_ratio"] <= GOAL_RATIO,
            "raw": {
                **{e: {str(r): v for r, v in d.items()} for e, d in results.items()},
                "gx_docs": {str(large): docs},
            },
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
