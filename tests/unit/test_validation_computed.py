"""The computed-results path of validation is equivalent to GX's own engine.

``conveyor.validation.computed`` computes the metrics of Conveyor's expectation types in
pandas/numpy and lets each expectation's own ``_validate`` build its result, instead of
GX's metric graph. Here GX's engine (``ValidationDefinition.run``, the path
``validate_frame`` used before) and the computed path run on the same good and bad
frames - nulls, out-of-range and infinite values, unseen categories, wrong dtypes,
nullable extension dtypes, missing and extra columns, no rows - and every result the
computed path produces must equal GX's: success, observed value, unexpected counts and
percents, missing counts, partial unexpected lists. ``validate_frame`` must then report
exactly the expectations GX finds broken, and its Data Docs page must show the bad
values and the same sections as a page GX renders from its own run.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import pytest

from conveyor.config import ColumnSpec, ExpectationSpec, ValidationSpec
from conveyor.errors import ValidationFailed
from conveyor.validation.computed import COMPUTED_TYPES, compute_result, frame_facts
from conveyor.validation.expectations import (
    _DOCS_SITE,
    _RESULT_FORMAT,
    _context,
    _import_gx,
    _no_batch_fingerprint,
    build_suite,
    validate_frame,
)

SPEC = ValidationSpec(
    min_rows=3,
    max_rows=1000,
    columns={
        "f": ColumnSpec(type="float", min=0.0, max=10.0),
        "g": ColumnSpec(type="float", nullable=True),
        "i": ColumnSpec(type="int", min=0, allowed=[0, 1, 2]),
        "n": ColumnSpec(type="int", nullable=True, max=100),
        "s": ColumnSpec(type="str", allowed=["a", "b"]),
        "b": ColumnSpec(type="bool"),
    },
    expectations=[
        # computed too: strict bounds, mostly below 1
        ExpectationSpec(
            type="expect_column_values_to_be_between",
            kwargs={"column": "g", "min_value": -5, "max_value": 5, "strict_max": True},
        ),
        ExpectationSpec(
            type="expect_column_values_to_be_in_set",
            kwargs={"column": "s", "value_set": ["a"], "mostly": 0.5},
        ),
        # not computed: left to GX's engine
        ExpectationSpec(
            type="expect_column_mean_to_be_between",
            kwargs={"column": "f", "min_value": 0, "max_value": 10},
        ),
        ExpectationSpec(type="expect_column_values_to_be_unique", kwargs={"column": "f"}),
    ],
)


def _good():
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "f": [1.0, 2.5, 10.0, 0.0],
            "g": [np.nan, -4.0, 4.9, 0.0],
            "i": [0, 1, 2, 3],
            "n": [1.0, np.nan, 100.0, 7.0],
            "s": ["a", "b", "a", "a"],
            "b": [True, False, True, True],
        }
    ).assign(i=lambda d: d["i"] % 3)  # allowed: 0, 1, 2


def _frames():
    import numpy as np
    import pandas as pd

    good = _good()
    yield "good", good
    yield (
        "nulls, out of range, inf, unseen categories",
        good.assign(
            f=[np.nan, 12345.678, -np.inf, 3.0],
            g=[5.0, np.nan, -7.0, np.inf],
            i=[0, 7, 2, 9],
            n=[np.nan, 101.0, np.nan, -3.0],
            s=["a", "Atlantis", None, "b"],
        ),
    )
    yield (
        "wrong dtypes",
        good.assign(
            f=["1.0", "x", "3", "4"],  # text in a float column (pandas str dtype)
            i=[0.0, 1.0, np.nan, 2.0],  # an int column read as float
            s=[1, 2, 3, 1],  # numbers in a str column
            b=[1, 0, 1, 1],  # ints in a bool column
        ),
    )
    yield (
        "object dtypes",
        good.assign(f=pd.Series([1.0, "?", 3.0, None], dtype=object), s=["a", 2, None, "b"]),
    )
    yield (
        "nullable extension dtypes",
        good.assign(
            f=pd.array([1.0, None, 11.0, 2.0], dtype="Float64"),
            i=pd.array([0, 1, None, 5], dtype="Int64"),
            b=pd.array([True, None, False, True], dtype="boolean"),
            s=pd.array(["a", None, "z", "b"], dtype="string[python]"),
        ),
    )
    yield "missing and extra columns", good.drop(columns=["g", "s"]).assign(extra=1)
    yield "no rows", good.head(0)
    yield "int32 and float32", good.astype({"i": "int32", "f": "float32"})


FRAMES = list(_frames())


def _normal(value):
    """Results as comparable plain data (NaN == NaN, numpy scalars unwrapped)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str):
        with contextlib.suppress(TypeError, ValueError):
            value = item()
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _gx_engine(df, spec, docs_dir: Path | None = None):
    """Every expectation through GX's own engine, as validate_frame ran them before:
    returns the results in suite order (and renders the Data Docs when asked)."""
    gx = _import_gx()
    context = _context(docs_dir)
    batch = (
        context.data_sources.add_pandas("reference")
        .add_dataframe_asset("gx")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(build_suite(spec, "gx"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="gx", data=batch, suite=suite)
    )
    with _no_batch_fingerprint():
        result = definition.run(batch_parameters={"dataframe": df}, result_format=_RESULT_FORMAT)
    if docs_dir is not None:
        context.build_data_docs(site_names=[_DOCS_SITE])
    by_id = {r.expectation_config.id: r for r in result.results}
    return [by_id[e.id] for e in suite.expectations]


@pytest.mark.parametrize(("case", "df"), FRAMES, ids=[c for c, _ in FRAMES])
def test_computed_results_equal_gx_engine(case, df):
    reference = _gx_engine(df, SPEC)
    expectations = build_suite(SPEC, "computed").expectations
    facts = frame_facts(df, _RESULT_FORMAT)
    computed = 0
    for expectation, gx_result in zip(expectations, reference, strict=True):
        ours = compute_result(expectation, facts)
        where = f"{case}: {expectation.expectation_type} on {getattr(expectation, 'column', '')}"
        if expectation.expectation_type not in COMPUTED_TYPES:
            assert ours is None, where
            continue
        if ours is None:  # left to GX: only when GX could not evaluate it or checks values
            column = getattr(expectation, "column", None)
            assert (
                gx_result.exception_info.get("raised_exception") is not False
                or column not in df.columns
                or df[column].dtype == object
                or df[column].dtype not in (int, float)
            ), where
            continue
        computed += 1
        assert ours.success == gx_result.success, where
        assert _normal(ours.result) == _normal(gx_result.result), where
        assert ours.exception_info == gx_result.exception_info, where
        # the same configuration (GX's engine adds the suite's id and the batch's id)
        config = gx_result.expectation_config.to_json_dict()
        config.pop("id")
        config["kwargs"].pop("batch_id")
        assert ours.expectation_config.to_json_dict() == config, where
    # the path is really taken: the table checks always, most column checks
    assert computed >= {"missing and extra columns": 10, "object dtypes": 15}.get(case, 18), case


@pytest.mark.parametrize(("case", "df"), FRAMES[1:], ids=[c for c, _ in FRAMES[1:]])
def test_validate_frame_reports_every_expectation_gx_finds_broken(case, df):
    reference = _gx_engine(df, SPEC)
    broken = sorted(
        (r.expectation_config.type, str(r.expectation_config.kwargs.get("column")))
        for r in reference
        if not r.success
    )
    if not broken:  # good data in other dtypes
        assert validate_frame(df, SPEC, suite_name="computed")["success"] is True
        return
    with pytest.raises(ValidationFailed) as info:
        validate_frame(df, SPEC, suite_name="computed")
    summary = info.value.summary
    assert summary["evaluated"] == len(reference)
    assert sorted((f["expectation"], str(f["column"])) for f in summary["failures"]) == broken
    lines = [x for x in str(info.value).splitlines() if x.startswith("  - ")]
    assert len(lines) == len(broken) == summary["failed"]
    # both in suite order
    for f, gx_result in zip(
        summary["failures"], [r for r in reference if not r.success], strict=True
    ):
        assert f["expectation"] == gx_result.expectation_config.type
        counted = gx_result.result.get("unexpected_count")
        if counted is not None and f["rows"] is None:  # rows: Conveyor's own re-count of text
            assert f["unexpected_count"] == counted, f


def test_good_frame_passes_both_ways():
    assert all(r.success for r in _gx_engine(_good(), SPEC))
    summary = validate_frame(_good(), SPEC, suite_name="computed")
    assert summary["success"] is True
    assert summary["evaluated"] == len(build_suite(SPEC, "x").expectations)
    assert all(e["success"] for e in summary["expectations"])


_SECTION = re.compile(r"<h\d[^>]*>(.*?)</h\d>", re.S)
_TAGS = re.compile(r"<[^>]+>")


def _sections(page: Path) -> list[str]:
    """The headings of a Data Docs page (overview, then one section per column)."""
    return [" ".join(_TAGS.sub(" ", h).split()) for h in _SECTION.findall(page.read_text())]


def test_data_docs_show_the_bad_values_and_the_same_sections_as_gx(tmp_path):
    df = dict(FRAMES)["nulls, out of range, inf, unseen categories"]
    _gx_engine(df, SPEC, tmp_path / "gx")
    gx_page = sorted((tmp_path / "gx" / "validations").rglob("*.html"))[-1]
    with pytest.raises(ValidationFailed) as info:
        validate_frame(df, SPEC, suite_name="gx", docs_dir=tmp_path / "ours")
    page = Path(info.value.summary["docs_index"])
    assert page.is_relative_to(tmp_path / "ours" / "validations")
    html = page.read_text()
    for bad in ("12345.678", "Atlantis", "-inf"):
        assert bad in html, bad
    assert _sections(page) == _sections(gx_page)
    assert len(_sections(page)) > len(SPEC.columns)
    # the statistics GX shows: evaluated / successful / unsuccessful counts
    ours_stats = re.findall(r"<td>(Evaluated|Successful|Unsuccessful)[^<]*</td>\s*<td>(\d+)", html)
    gx_stats = re.findall(
        r"<td>(Evaluated|Successful|Unsuccessful)[^<]*</td>\s*<td>(\d+)", gx_page.read_text()
    )
    assert ours_stats == gx_stats
