"""Data validation with real Great Expectations on the real breast-cancer data.

Every bad-data case must end as a ``ValidationFailed`` whose message names the broken
expectation, the column and examples of the bad values: never a traceback from GX.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conveyor.config import ColumnSpec, ExpectationSpec, ValidationSpec, load_pipeline_config
from conveyor.errors import ConfigError, DataError, ValidationFailed
from conveyor.validation.expectations import build_suite, read_dataset, validate_frame

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "include" / "pipelines" / "breast_cancer.yaml"
HEADLINE = re.compile(
    r"^Data validation failed: (\d+) of (\d+) expectations broken for breast_cancer \((\d+) rows\)$"
)


@pytest.fixture(scope="module")
def spec() -> ValidationSpec:
    return load_pipeline_config(DEMO).validation


@pytest.fixture(scope="module")
def frame_once(spec):
    """The breast-cancer frame; building a suite here pays GX's import once per module."""
    from sklearn.datasets import load_breast_cancer

    build_suite(spec, "warm_up")
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture
def frame(frame_once):
    return frame_once.copy()


def fail(df, spec, **kwargs) -> ValidationFailed:
    """Validate ``df`` expecting failure; check the message's shape; return the error."""
    with pytest.raises(ValidationFailed) as info:
        validate_frame(df, spec, suite_name="breast_cancer", **kwargs)
    err = info.value
    lines = str(err).splitlines()
    head = HEADLINE.match(lines[0])
    assert head, lines[0]
    failed, evaluated, rows = map(int, head.groups())
    summary = err.summary
    assert (failed, evaluated, rows) == (summary["failed"], summary["evaluated"], summary["rows"])
    assert summary["success"] is False
    assert failed == len(summary["failures"]) >= 1
    # one line per broken expectation, then the how-to-fix line
    assert len([x for x in lines if x.startswith("  - ")]) == failed
    assert lines[-1].startswith("Fix the data")
    assert "Traceback" not in str(err)
    json.dumps(summary, allow_nan=False)  # JSON-safe, even with NaN/inf examples
    return err


def failure(err: ValidationFailed, expectation: str, column: str | None) -> dict:
    found = [
        f
        for f in err.summary["failures"]
        if f["expectation"] == expectation and f["column"] == column
    ]
    assert found, f"no {expectation} on {column!r} in {err.summary['failures']}"
    return found[0]


def test_good_frame_passes_and_writes_data_docs(frame, spec, tmp_path):
    summary = validate_frame(frame, spec, suite_name="breast_cancer", docs_dir=tmp_path / "docs")
    assert summary["success"] is True
    assert (summary["rows"], summary["columns"], summary["failed"]) == (569, 31, 0)
    # table checks + per column (type, not-null, range/allowed) + the free-form one
    assert summary["evaluated"] > 3 * len(spec.columns)
    # the page to open is this run's validation result, not the site's index
    page = Path(summary["docs_index"])
    assert page.parent.is_relative_to(tmp_path / "docs" / "validations")
    assert page.is_file() and "breast_cancer" in page.read_text()
    index = tmp_path / "docs" / "index.html"
    assert index.is_file() and "breast_cancer" in index.read_text()
    json.dumps(summary, allow_nan=False)


REMOTE = re.compile(r"<(?:script|link)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"")
LOCAL = re.compile(r"<(?:script|link)\b[^>]*?(?:src|href)=\"([^\"#?]+\.(?:js|css))\"")


def test_data_docs_need_no_internet(frame, spec, tmp_path):
    """Issue 16: Data Docs loaded Bootstrap/jQuery from CDNs; offline the pages were
    unstyled, the index table empty and `$ is not defined`. Every script and stylesheet
    must be a file of the site itself."""
    frame.loc[0, "target"] = 2  # a failed run renders Data Docs too
    err = fail(frame, spec, docs_dir=tmp_path / "docs")
    site = tmp_path / "docs"
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 2
    for page in pages:
        text = page.read_text()
        assert REMOTE.findall(text) == [], page
        scripts = LOCAL.findall(text)
        assert any(s.endswith("jquery.min.js") for s in scripts), page
        for ref in scripts:
            assert (page.parent / ref).resolve().is_file(), f"{page}: {ref} missing"
    assert (site / "static/vendor/webfonts/fa-solid-900.woff2").is_file()
    assert Path(err.summary["docs_index"]).parent.is_relative_to(site / "validations")


def _browser_or_skip() -> str:
    import os
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        chromium = ""
    if not os.path.exists(chromium):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium and playwright are needed (make system-deps)")
        pytest.skip("no Chromium/playwright: make system-deps")
    return chromium


def test_data_docs_render_offline_in_a_browser(frame, spec, tmp_path):
    """The same site in Chromium with every network request refused: jQuery runs, Bootstrap
    styles the page, the index table lists this run, and no script error is raised."""
    from playwright.sync_api import sync_playwright

    chromium = _browser_or_skip()
    summary = validate_frame(frame, spec, suite_name="breast_cancer", docs_dir=tmp_path / "docs")
    result_page = Path(summary["docs_index"])
    remote, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def offline(route):
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    remote.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto(result_page.as_uri())
            assert page.evaluate("typeof window.jQuery") == "function"
            # Bootstrap 4's reboot sets the body margin to 0 (a browser's default is 8px)
            assert page.evaluate("getComputedStyle(document.body).margin") == "0px"
            page.goto((tmp_path / "docs" / "index.html").as_uri())
            page.wait_for_selector("table tbody tr td", timeout=30_000)
            assert "breast_cancer" in page.inner_text("table tbody")
        finally:
            browser.close()
    assert remote == [], remote
    assert errors == [], errors


def test_nan_in_target_names_not_null(frame, spec):
    frame.loc[[3, 50, 400], "target"] = float("nan")
    err = fail(frame, spec)
    assert (
        "  - expect_column_values_to_not_be_null on 'target': 3 unexpected (0.53%), "
        "e.g. [nan, nan, nan]"
    ) in str(err)
    # NaN turns the int column into float64: the type check says so and why
    assert "expect_column_values_to_be_in_type_list on 'target' [type=int]" in str(err)
    assert "observed dtype float64; 3 missing values" in str(err)
    assert failure(err, "expect_column_values_to_not_be_null", "target")["unexpected_count"] == 3


def test_missing_column(frame, spec):
    err = fail(frame.drop(columns=["mean radius"]), spec)
    text = str(err)
    assert "expect_table_columns_to_match_set: missing columns ['mean radius']" in text
    assert "expect_column_values_to_not_be_null on 'mean radius': not evaluated" in text
    assert "column 'mean radius' is missing" in text
    # the free-form expectation on that column is reported too, not crashed on
    assert "expect_column_mean_to_be_between on 'mean radius': not evaluated" in text
    assert "mean texture" not in text


def test_string_in_numeric_column_after_csv_round_trip(frame, spec, tmp_path):
    frame["mean radius"] = frame["mean radius"].astype(object)
    frame.loc[7, "mean radius"] = "abc"
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    df = read_dataset(path)
    err = fail(df, spec)
    text = str(err)
    assert (
        "expect_column_values_to_be_in_type_list on 'mean radius' [type=float]: 1 unexpected "
        "(0.18%), e.g. ['abc'] in a column of dtype str; it is not a number (row index 7)"
    ) in text
    # the range check cannot run on text: reported as such, with the dtype
    assert re.search(
        r"expect_column_values_to_be_between on 'mean radius' .*could not be evaluated, "
        r"column has dtype \w+",
        text,
    )
    assert {f["column"] for f in err.summary["failures"]} == {"mean radius"}


def test_one_bad_value_in_a_large_csv_is_reported_exactly(frame, spec, tmp_path):
    """Issue 16: 56,900 rows with "?" in one row of `worst area`. Read in chunks, the column
    came back half floats, half strings and the report said "24132 unexpected (42.4%),
    e.g. ['1362.0', ...]", never showing the "?". It must name the value and count 1."""
    import pandas as pd

    big = pd.concat([frame] * 100, ignore_index=True)
    assert len(big) == 56_900
    big["worst area"] = big["worst area"].astype(object)
    big.loc[40_000, "worst area"] = "?"
    path = tmp_path / "big.csv"
    big.to_csv(path, index=False)
    err = fail(read_dataset(path), spec)
    text = str(err)
    assert (
        "expect_column_values_to_be_in_type_list on 'worst area' [type=float]: 1 unexpected "
        "(0.0018%), e.g. ['?'] in a column of dtype str; it is not a number (row index 40000)"
    ) in text, text
    broken = failure(err, "expect_column_values_to_be_in_type_list", "worst area")
    assert (broken["unexpected_count"], broken["examples"], broken["rows"]) == (1, ["?"], [40000])
    # every other column was read as numbers: only `worst area` is reported
    assert {f["column"] for f in err.summary["failures"]} == {"worst area"}


def test_empty_file_reports_row_count_and_missing_columns(spec, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    df = read_dataset(path)
    assert df.shape == (0, 0)
    err = fail(df, spec)
    text = str(err)
    assert (
        "expect_table_row_count_to_be_between [min_value=100, max_value=10000000]: observed 0"
        in (text)
    )
    assert "expect_table_columns_to_match_set: missing columns [" in text
    assert "'target'" in text
    assert err.summary["rows"] == 0
    assert err.summary["failed"] == err.summary["evaluated"]


def test_out_of_range_and_infinite_values(frame, spec):
    frame.loc[10, "mean area"] = 1e9
    frame.loc[11, "worst area"] = float("inf")
    err = fail(frame, spec)
    text = str(err)
    assert (
        "expect_column_values_to_be_between on 'mean area' [min_value=0.0, max_value=7503.0]: "
        "1 unexpected (0.18%), e.g. [1000000000.0]"
    ) in text
    assert "expect_column_values_to_be_between on 'worst area'" in text
    assert "e.g. [inf]" in text
    assert failure(err, "expect_column_values_to_be_between", "worst area")["examples"] == ["inf"]


def test_inf_fails_even_without_min_max():
    import pandas as pd

    spec = ValidationSpec(columns={"x": ColumnSpec(type="float"), "y": ColumnSpec(type="float")})
    df = pd.DataFrame({"x": [1.0, float("-inf"), 3.0], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValidationFailed) as info:
        validate_frame(df, spec, suite_name="finite")
    text = str(info.value)
    assert "expect_column_values_to_be_between on 'x': 1 unexpected (33.3%), e.g. [-inf]" in text
    assert "'y'" not in text


def test_disallowed_target_value(frame, spec):
    frame.loc[0, "target"] = 2
    err = fail(frame, spec)
    assert (
        "  - expect_column_values_to_be_in_set on 'target' [value_set=[0, 1]]: "
        "1 unexpected (0.18%), e.g. [2]"
    ) in str(err)
    assert err.summary["failed"] == 1


def test_unknown_free_form_expectation_is_a_config_error(frame, spec):
    bad = spec.model_copy(
        update={
            "expectations": [
                ExpectationSpec(type="expect_column_mean_to_be_betwen", kwargs={"column": "x"})
            ]
        }
    )
    with pytest.raises(ConfigError, match="expect_column_mean_to_be_betwen") as info:
        validate_frame(frame, bad, suite_name="breast_cancer")
    assert "did you mean expect_column_mean_to_be_between" in str(info.value)
    wrong_kwargs = spec.model_copy(
        update={
            "expectations": [
                ExpectationSpec(type="expect_column_mean_to_be_between", kwargs={"colum": "x"})
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"expect_column_mean_to_be_between .*colum"):
        build_suite(wrong_kwargs, "breast_cancer")


def test_extra_column_with_exact_columns(frame, spec):
    assert spec.exact_columns is True
    frame["patient_id"] = range(len(frame))
    err = fail(frame, spec)
    assert "  - expect_table_columns_to_match_set: unexpected columns ['patient_id']" in str(err)
    assert err.summary["failed"] == 1
    # without exact_columns the extra column is fine
    loose = spec.model_copy(update={"exact_columns": False})
    assert validate_frame(frame, loose, suite_name="breast_cancer")["success"] is True


def test_str_and_bool_columns_with_pandas_default_dtypes():
    import pandas as pd

    spec = ValidationSpec(
        columns={
            "city": ColumnSpec(type="str", allowed=["Oslo", "Lima"]),
            "member": ColumnSpec(type="bool"),
            "visits": ColumnSpec(type="int", min=0),
        }
    )
    good = pd.DataFrame(
        {"city": ["Oslo", "Lima", "Oslo"], "member": [True, False, True], "visits": [0, 3, 9]}
    )
    assert validate_frame(good, spec, suite_name="people")["success"] is True
    bad = good.assign(city=["Oslo", "Rome", None], visits=[1, -2, 3])
    with pytest.raises(ValidationFailed) as info:
        validate_frame(bad, spec, suite_name="people")
    text = str(info.value)
    assert "expect_column_values_to_be_in_set on 'city' [value_set=['Oslo', 'Lima']]" in text
    assert "e.g. ['Rome']" in text
    assert "expect_column_values_to_not_be_null on 'city': 1 unexpected" in text
    assert "expect_column_values_to_be_between on 'visits' [min_value=0.0]" in text


def test_nullable_extension_dtypes_match_their_family():
    import pandas as pd

    spec = ValidationSpec(
        columns={
            "f": ColumnSpec(type="float", nullable=True),
            "i": ColumnSpec(type="int", nullable=True),
            "b": ColumnSpec(type="bool", nullable=True),
            "s": ColumnSpec(type="str", nullable=True),
        }
    )
    df = pd.DataFrame(
        {
            "f": pd.array([1.5, None], dtype="Float64"),
            "i": pd.array([1, None], dtype="Int64"),
            "b": pd.array([True, None], dtype="boolean"),
            "s": pd.array(["a", None], dtype="string[python]"),
        }
    )
    assert validate_frame(df, spec, suite_name="nullable")["success"] is True
    with pytest.raises(ValidationFailed) as info:
        validate_frame(df.assign(b=df["f"]), spec, suite_name="nullable")
    # the pandas dtype is named, not GX's scalar type ("float64")
    assert "expect_column_values_to_be_in_type_list on 'b' [type=bool]: observed dtype Float64" in (
        str(info.value)
    )


def test_unreadable_file_is_a_data_error(tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(128, 256)) * 40)
    with pytest.raises(DataError, match=r"garbage\.csv") as info:
        read_dataset(garbage)
    assert "Check that the file really is csv" in str(info.value)
    with pytest.raises(DataError, match="parquet"):
        read_dataset(garbage, "parquet")
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "nope.csv")


def test_parquet_round_trip(frame, tmp_path):
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    df = read_dataset(path, "parquet")
    assert df.shape == (569, 31)
    assert list(df.columns) == list(frame.columns)
