"""The drift report: ``drift.json``, an HTML page and one PNG plot per drifted feature.

Written to a local directory and then copied as a whole into the run's artifact location
(local or S3), where the task's "Drift report" link points. The page is static HTML with
no scripts, so it renders from any file server, including Conveyor's ``/conveyor`` view.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from conveyor.monitoring.drift import DriftReport, FeatureDrift, json_safe

#: Plots per report at most (the most drifted features first).
MAX_PLOTS = 30


def _plot_name(feature: str) -> str:
    return "feature-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", feature) + ".png"


def _plot(feature: FeatureDrift, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(feature.buckets))
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=90)
    ax.bar(x - 0.2, feature.reference_shares, width=0.4, label="training (reference)")
    ax.bar(x + 0.2, feature.current_shares, width=0.4, label="live window")
    ax.set_xticks(x, feature.buckets, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(f"{feature.name}: PSI {feature.psi:.3f}, {feature.test} p={feature.p_value:.2g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _row(feature: FeatureDrift, plots: dict[str, str]) -> str:
    cells = [
        html.escape(feature.name),
        feature.kind,
        f"{feature.psi:.3f}",
        f"{feature.distance:.3f}",
        f"{feature.test} {feature.statistic:.3f}",
        f"{feature.p_value:.2g}",
        "" if feature.reference_mean is None else f"{feature.reference_mean:.4g}",
        "" if feature.current_mean is None else f"{feature.current_mean:.4g}",
        ("<b>DRIFT</b> " if feature.drifted else "") + html.escape(feature.reason),
    ]
    if feature.name in plots:
        cells[0] = f'<a href="#{html.escape(plots[feature.name])}">{cells[0]}</a>'
    style = ' style="background:#fde2e1"' if feature.drifted else ""
    return f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def write_report(
    report: DriftReport, out_dir: str | Path, *, context: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write ``drift.json``, ``index.html`` and the plots into ``out_dir``.

    Parameters
    ----------
    report : DriftReport
        The computed drift.
    out_dir : str or Path
        A local directory (created).
    context : dict, optional
        Facts shown on the page and stored in the JSON (model version, window, outcome).

    Returns
    -------
    dict
        File name -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = dict(context or {})
    written: dict[str, str] = {}
    plots: dict[str, str] = {}
    by_psi = sorted(report.features, key=lambda f: -f.psi)
    for feature in [f for f in by_psi if f.drifted][:MAX_PLOTS]:
        name = _plot_name(feature.name)
        _plot(feature, out / name)
        plots[feature.name] = name
        written[name] = str(out / name)
    summary = json_safe({**report.to_dict(), "context": context, "plots": plots})
    # allow_nan=False: drift.json is strict JSON (an infinite PSI is null, see to_dict)
    (out / "drift.json").write_text(json.dumps(summary, indent=2, default=str, allow_nan=False))
    written["drift.json"] = str(out / "drift.json")
    facts = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in context.items()
    )
    verdict_colour = "#b00020" if report.dataset_drift else "#1b7f3b"
    images = "".join(
        f'<figure id="{html.escape(file)}"><img src="{html.escape(file)}" '
        f'alt="{html.escape(feature)}"><figcaption>{html.escape(feature)}</figcaption></figure>'
        for feature, file in plots.items()
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}figure{{display:inline-block}}</style>
</head><body>
<h1>Drift report</h1>
<p style="color:{verdict_colour};font-size:1.2em">{html.escape(report.summary())}</p>
<ul>{facts}</ul>
<p>A feature drifts when its change is large (PSI &ge; {report.psi_threshold}, or distance
&ge; {report.distance_threshold} &mdash; the KS statistic for numeric features, the total
variation distance for categorical ones &mdash; or unseen categorical values in
&ge; {report.unseen_share:.0%} of the window) <i>and</i> not noise (test p &lt;
{report.ks_pvalue}); dataset drift when &ge; {report.drift_share:.0%} of features drift.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>distance</th><th>test statistic</th><th>p-value</th>
<th>training mean</th><th>live mean</th><th>verdict</th></tr>
{"".join(_row(f, plots) for f in by_psi)}
</table>
<h2>Drifted features</h2>{images or "<p>None.</p>"}
</body></html>
"""
    (out / "index.html").write_text(page)
    written["index.html"] = str(out / "index.html")
    return written
