"""Drift check: ``conveyor.monitoring.drift`` on N rows x 30 features vs the same statistics by hand.

Reference = generated training data, current = another draw with 5 of the 30 features
shifted (so some features drift and the report has something to say). Timed in one
fresh process per size:

* **conveyor**: ``build_profile`` on the reference (deciles, bin shares, a 5,000-value
  sample per feature; done once per model, at training time) and ``compute_drift`` of the
  current rows against that profile (PSI over the deciles + two-sample KS test per feature);
* **plain** (baseline): the textbook numpy/scipy version a script would write: deciles of
  the reference, bin shares of both, PSI, and ``scipy.stats.ks_2samp`` on the two full
  columns.

Ratio = conveyor (profile + check) / plain, and the check alone / plain (the check is what
the monitoring DAG runs every time; the profile is stored with the model). Peak RSS
above the RSS before each step (kernel high-water mark, reset before it).

    uv run python bench/drift.py [--sizes 10k,100k,1M] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import _common as c

NAME = "drift"
DEFAULT_SIZES = "10k,100k,1M"
SHIFTED = 5


def plain_drift(reference, current, columns: list[str]) -> dict[str, Any]:
    """PSI over the reference's deciles + full two-sample KS, per column (the baseline)."""
    import numpy as np
    from scipy.stats import ks_2samp

    out = {}
    for name in columns:
        ref = reference[name].to_numpy(dtype="float64")
        cur = current[name].to_numpy(dtype="float64")
        edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
        e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / ref.size
        a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10) / cur.size
        e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
        psi = float(np.sum((a - e) * np.log(a / e)))
        test = ks_2samp(ref, cur)
        out[name] = (psi, float(test.pvalue))
    return out


def worker(rows: int) -> None:
    import pandas  # noqa: F401
    import scipy.stats  # noqa: F401

    from conveyor.config import PipelineConfig
    from conveyor.monitoring.drift import build_profile, compute_drift

    cfg = PipelineConfig.model_validate(c.pipeline_dict("bench_drift", "data/bench.csv"))
    reference = c.make_frame(rows, seed=1)
    current = c.make_frame(rows, seed=2)
    features = list(cfg.feature_columns)
    for name in features[:SHIFTED]:
        current[name] = (current[name] + 1.5).clip(-10, 10)
    data_bytes = int(current[features].memory_usage(deep=True).sum())
    # One small call of each first: lazy imports and first-call costs outside the timing.
    small = build_profile(reference.head(200), cfg)
    compute_drift(small, current.head(200))
    plain_drift(reference.head(200), current.head(200), features)

    out: dict[str, Any] = {"rows": rows, "data_bytes": data_bytes}
    for step, fn in (
        ("profile", lambda: build_profile(reference, cfg)),
        ("plain", lambda: plain_drift(reference, current, features)),
    ):
        c.trim_memory()
        before = c.rss_bytes()
        c.reset_peak_rss()
        t = time.perf_counter()
        value = fn()
        out[f"{step}_s"] = time.perf_counter() - t
        out[f"{step}_peak_extra"] = max(0, c.peak_rss_bytes() - before)
        if step == "profile":
            profile = value
        else:
            plain = value
    c.trim_memory()
    before = c.rss_bytes()
    c.reset_peak_rss()
    t = time.perf_counter()
    report = compute_drift(profile, current)
    out["check_s"] = time.perf_counter() - t
    out["check_peak_extra"] = max(0, c.peak_rss_bytes() - before)
    out["drifted"] = sorted(report.drifted)
    out["plain_drifted"] = sorted(n for n, (psi, p) in plain.items() if psi >= 0.2 or p < 0.01)
    out["expected_drifted"] = sorted(features[:SHIFTED])
    c.emit(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="rows, e.g. 10k,100k,1M")
    parser.add_argument("--quick", action="store_true", help="2000 rows")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    c.bench_env(NAME)
    sizes = sorted(c.parse_sizes("2000" if args.quick else args.sizes))
    started = time.perf_counter()
    results = []
    for rows in sizes:
        r, _ = c.run_worker([__file__, "--worker", str(rows)], timeout=1200)
        r["total_s"] = r["profile_s"] + r["check_s"]
        r["ratio"] = r["total_s"] / r["plain_s"]
        r["check_ratio"] = r["check_s"] / r["plain_s"]
        results.append(r)
        print(
            f"  {c.human_rows(rows):>5s} rows: profile {r['profile_s']:.2f} s, check "
            f"{r['check_s']:.2f} s, plain {r['plain_s']:.2f} s",
            flush=True,
        )
    md = c.print_table(
        f"Drift check, {c.N_FEATURES} float features, {SHIFTED} shifted: conveyor.drift vs "
        "plain numpy/scipy (baseline: deciles + PSI + full two-sample KS per column)",
        [
            "rows",
            "data MiB",
            "profile s",
            "check s",
            "plain s",
            "(profile+check)/plain",
            "check/plain",
            "check peak MiB",
            "plain peak MiB",
            "drifted (conveyor)",
            "drifted (plain)",
        ],
        [
            [
                c.human_rows(r["rows"]),
                c.mb(r["data_bytes"]),
                c.secs(r["profile_s"], 2),
                c.secs(r["check_s"], 2),
                c.secs(r["plain_s"], 2),
                c.ratio(r["ratio"]),
                c.ratio(r["check_ratio"]),
                c.mb(r["check_peak_extra"]),
                c.mb(r["plain_peak_extra"]),
                len(r["drifted"]),
                len(r["plain_drifted"]),
            ]
            for r in results
        ],
    )
    plt = c.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    xs = [r["rows"] for r in results]
    for key, label in (("profile_s", "profile"), ("check_s", "check"), ("plain_s", "plain")):
        ax.plot(xs, [r[key] for r in results], "o-", label=label)
    c.rows_axis(ax, ylabel="seconds", title="Drift check", logy=True)
    c.save_plot(fig, NAME)
    largest = results[-1]
    c.write_result(
        NAME,
        {
            "sizes": sizes,
            "per_size": results,
            "ratio_largest": largest["ratio"],
            "check_ratio_largest": largest["check_ratio"],
            "elapsed_s": time.perf_counter() - started,
            "markdown": md,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
