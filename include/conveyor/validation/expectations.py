"""Data validation with Great Expectations.

The pipeline YAML's ``validation:`` section (:class:`conveyor.config.ValidationSpec`) is
turned into a GX ``ExpectationSuite`` (:func:`build_suite`) and run on a pandas frame
in an ephemeral GX context (:func:`validate_frame`). The result is a small JSON-safe
summary; a failed validation raises :class:`~conveyor.errors.ValidationFailed` whose
message lists every broken expectation on its own line, with examples of the bad
values. Optionally GX renders its Data Docs HTML for the run.

Bad data never surfaces as a traceback from inside GX: a missing column, a wrong dtype,
an empty frame, NaN/inf or strings in a numeric column all end as a
``ValidationFailed`` with readable lines.

Importing this module is cheap (stdlib and Conveyor only); pandas and GX (5-10 s to
import cold) are imported on first use.

Cost: GX's engine spends about 7 ms of Python per expectation resolving its metric
graph, whatever the data size (0.7 s for 92 expectations). The expectation types the
suite is built from (column set, row count, dtype family, not-null, range, allowed set)
are therefore computed in one vectorised pandas/numpy pass by
:mod:`conveyor.validation.computed`, and each expectation's own GX ``_validate`` builds
its result from those metrics: the same ``ExpectationValidationResult`` GX's engine
would return (tests/unit/test_validation_computed.py compares them). GX's engine runs
only for what that path leaves to it: free-form expectation types, missing or
duplicated columns, type or range checks on ``object`` columns. Results use GX's BASIC
format (counts and 5 examples), never COMPLETE. The Data Docs (``docs_dir``) are GX's
own store and renderer working from the merged results; rendering, not checking, is
then most of a call's time (about 1 s for a 92-expectation suite).
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.config import ValidationSpec
from conveyor.errors import ConfigError, DataError, ValidationFailed
from conveyor.settings import disable_telemetry

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["build_suite", "read_dataset", "validate_frame"]

#: How many example values a failure keeps (GX ``partial_unexpected_count``).
EXAMPLES = 5

#: Result format: counts plus a few examples. "COMPLETE" would collect every
#: unexpected value and index, which is slow and large on big frames.
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES}

# Accepted pandas dtypes per ColumnSpec.type: numpy names, pandas nullable extension
# dtypes (GX resolves those by *class* name, "Int64Dtype"; "Int64" matches nothing), and
# the Python type names GX uses to check the values of ``object`` columns one by one.
_INT_DTYPES = [
    *(f"{p}int{b}" for p in ("", "u") for b in (8, 16, 32, 64)),
    *(f"{p}Int{b}Dtype" for p in ("", "U") for b in (8, 16, 32, 64)),
    "int",
]
_FLOAT_DTYPES = [
    *("float16", "float32", "float64", "Float32Dtype", "Float64Dtype", "float"),
    *_INT_DTYPES,
]
_BOOL_DTYPES = ["bool", "BooleanDtype"]

#: Bounds used to reject +/-inf in float columns that set no min/max.
_FLOAT_MAX = sys.float_info.max

#: Data Docs site name inside the ephemeral context.
_DOCS_SITE = "conveyor"

#: Local copies of the CDN files GX's Data Docs templates link to (see the folder's
#: README.md); a generated site gets them under ``static/vendor/``.
_ASSETS = Path(__file__).with_name("data_docs_assets")
_VENDOR = "static/vendor"
#: CDN URL in GX 1.x's templates -> file under :data:`_ASSETS`.
_CDN_FILES = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "js/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "css/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "js/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": "js/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "js/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "js/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "js/vega-embed.min.js",
}
#: GX's navbar logo comes from its S3 bucket with a timestamp query (a request per view);
#: the site's own static/images/ holds the same file.
_GX_LOGO = re.compile(
    r"https://great-expectations-web-assets\.s3\.[\w.-]+\.amazonaws\.com/([\w.-]+\.png)(?:\?[^\"]*)?"
)
_VEGA = frozenset(v for v in _CDN_FILES.values() if v.startswith("js/vega"))
_REMOTE_TAG = re.compile(r"<(?:script|link)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"[^>]*>")
_SRI = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"")

#: Key in an expectation's ``meta`` naming the ColumnSpec.type it checks.
_META_TYPE = "conveyor_column_type"

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _import_gx():
    """Import Great Expectations with its usage statistics switched off."""
    disable_telemetry()
    import great_expectations as gx

    return gx


# --------------------------------------------------------------------------- reading


def read_dataset(path: str | Path, fmt: str = "csv") -> pd.DataFrame:
    """Read a CSV or parquet file into a pandas frame.

    An empty (0-byte or blank) file gives an empty frame, so validation reports what is
    broken (missing columns, row count) instead of a pandas parse error.

    Raises
    ------
    DataError
        If the file is missing or cannot be parsed at all.
    ConfigError
        If ``fmt`` is neither ``csv`` nor ``parquet``.
    """
    import pandas as pd

    path = Path(path)
    if fmt not in ("csv", "parquet"):
        raise ConfigError(
            f"Unknown data format {fmt!r} for {path}: set data.format to 'csv' or 'parquet'"
        )
    if not path.is_file():
        raise DataError(
            f"Dataset {path} does not exist: check data.path in the pipeline YAML and "
            "that the DVC pull step succeeded"
        )
    if path.stat().st_size == 0:
        log.warning("Dataset %s is empty (0 bytes)", path)
        return pd.DataFrame()
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        # One pass (low_memory=False): pandas' default parses a large CSV in chunks and
        # types each chunk on its own, so one bad value in a numeric column leaves the
        # column half floats, half strings, and the report then counts every string.
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        log.warning("Dataset %s has no columns or rows", path)
        return pd.DataFrame()
    except Exception as exc:  # pandas/pyarrow raise many unrelated types here
        reason = " ".join(str(exc).split())[:300].rstrip(".") or type(exc).__name__
        raise DataError(
            f"Cannot read {path} as {fmt}: {reason}. Check that the file really is "
            f"{fmt} (data.format in the pipeline YAML) and that the data registry holds "
            "the intended revision of it"
        ) from exc


# --------------------------------------------------------------------------- suite


def _expectation_class(name: str):
    """The GX expectation class registered under snake_case ``name``."""
    _import_gx()
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import (
        get_expectation_impl,
        list_registered_expectation_implementations,
    )

    try:
        return get_expectation_impl(name)
    except ExpectationNotFoundError:
        pass
    import difflib

    close = difflib.get_close_matches(name, list_registered_expectation_implementations(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"Unknown Great Expectations expectation type {name!r} under "
        f"validation.expectations{hint} (see https://greatexpectations.io/expectations)"
    )


def _make(cls, where: str, **kwargs):
    """Instantiate an expectation; bad kwargs become a ConfigError."""
    try:
        return cls(**kwargs)
    except Exception as exc:  # pydantic.ValidationError, TypeError, InvalidExpectation...
        reason = " ".join(str(exc).split())[:500]
        name = _CAMEL.sub("_", cls.__name__).lower()
        raise ConfigError(
            f"Invalid expectation {name} ({where}) with kwargs {kwargs!r}: {reason}"
        ) from None


def build_suite(spec: ValidationSpec, suite_name: str):
    """Build the GX ``ExpectationSuite`` described by ``spec``.

    Table level: the column set (exactly the listed columns when ``exact_columns``,
    else each listed column exists) and the row count. Per column: the dtype family,
    not-null unless ``nullable``, ``min``/``max`` (float columns always reject +/-inf),
    the ``allowed`` set. Then the free-form ``expectations``, looked up by name.

    Raises
    ------
    ConfigError
        If a free-form expectation type is unknown or its kwargs are invalid.
    """
    gx = _import_gx()
    import great_expectations.expectations as gxe

    # Collected in a list and passed to the constructor: ``suite.add_expectation``
    # needs an active Data Context, and this suite is built before there is one.
    expectations: list = []
    add = expectations.append
    names = list(spec.columns)

    if spec.exact_columns:
        add(gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=True))
    else:
        for name in names:
            add(gxe.ExpectColumnToExist(column=name))
    add(gxe.ExpectTableRowCountToBeBetween(min_value=spec.min_rows, max_value=spec.max_rows))

    for name, col in spec.columns.items():
        where = f"validation.columns.{name}"
        meta = {_META_TYPE: col.type}
        if col.type == "str":
            # GX's type-list check does not recognise pandas 3's default ``str`` dtype;
            # the single-type check compares the dtype's scalar type, which works.
            add(gxe.ExpectColumnValuesToBeOfType(column=name, type_="str", meta=meta))
        else:
            if col.type == "float":
                dtypes = _FLOAT_DTYPES
            elif col.type == "int":
                # CSV readers turn an int column with gaps into float64.
                dtypes = _FLOAT_DTYPES if col.nullable else _INT_DTYPES
            else:
                dtypes = _BOOL_DTYPES
            add(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=dtypes, meta=meta))
        if not col.nullable:
            add(gxe.ExpectColumnValuesToNotBeNull(column=name))
        lo, hi = col.min, col.max
        if col.type == "float" and (lo is None or hi is None):
            lo = -_FLOAT_MAX if lo is None else lo
            hi = _FLOAT_MAX if hi is None else hi
        if lo is not None or hi is not None:
            add(
                _make(
                    gxe.ExpectColumnValuesToBeBetween,
                    where,
                    column=name,
                    min_value=lo,
                    max_value=hi,
                )
            )
        if col.allowed is not None:
            add(_make(gxe.ExpectColumnValuesToBeInSet, where, column=name, value_set=col.allowed))

    for i, exp in enumerate(spec.expectations):
        cls = _expectation_class(exp.type)
        add(_make(cls, f"validation.expectations[{i}]", **exp.kwargs))
    return gx.ExpectationSuite(name=suite_name, expectations=expectations)


# --------------------------------------------------------------------------- running


@contextmanager
def _no_batch_fingerprint():
    """Skip GX's md5 fingerprint of the whole frame (a batch marker nobody reads).

    GX hashes every frame under 1 GB (``HASH_THRESHOLD``) with
    ``pd.util.hash_pandas_object``; on 1M x 30 floats that costs more than all the
    checks together. The threshold is restored afterwards.
    """
    from great_expectations.execution_engine import pandas_execution_engine as engine

    saved = getattr(engine, "HASH_THRESHOLD", None)
    if saved is None:
        yield
        return
    engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = saved


def _context(docs_dir: Path | None):
    """An ephemeral GX context: in-memory stores, no progress bars, one docs site."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites[_DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    return gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            data_docs_sites=sites,
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )


class _GxRun:
    """What GX's engine produced for one call: its context and validation definition
    (for the Data Docs), the results of the expectations it evaluated, the batch meta."""

    def __init__(self, context, definition, results: list, meta: dict, batch_id) -> None:
        self.context = context
        self.definition = definition
        self.results = results
        self.meta = meta
        self.batch_id = batch_id


def _run_gx(df, suite, pending: list, docs_path: Path | None) -> _GxRun:
    """Evaluate ``pending`` (expectations of ``suite``) with GX's engine on ``df``.

    The ephemeral context holds the whole suite and a validation definition, as
    ``ValidationDefinition.run`` would use; only the pending expectations go through
    GX's metric graph (``Validator`` of GX 1.x, the one ``run`` builds).
    """
    gx = _import_gx()
    from great_expectations.util import convert_to_json_serializable
    from great_expectations.validator.v1_validator import Validator

    context = _context(docs_path)
    batch_definition = (
        context.data_sources.add_pandas("conveyor")
        .add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("whole")
    )
    stored = context.suites.add(suite)  # gives every expectation of ``suite`` its id
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=stored)
    )
    validator = Validator(
        batch_definition=batch_definition,
        batch_parameters={"dataframe": df},
        result_format=_RESULT_FORMAT,
    )
    with _no_batch_fingerprint():
        results = (
            validator._validate_expectation_configs([e.configuration for e in pending])
            if pending
            else []
        )
        wrapped = validator._wrapped_validator  # loads the batch (for its meta)
        meta = {
            "great_expectations_version": gx.__version__,
            "batch_spec": convert_to_json_serializable(wrapped.active_batch_spec),
            "batch_markers": wrapped.active_batch_markers,
            "active_batch_definition": convert_to_json_serializable(
                wrapped.active_batch_definition
            ),
        }
    return _GxRun(context, definition, results, meta, validator.active_batch_id)


def _store_and_build_docs(run: _GxRun, results: list) -> None:
    """Store the suite's results as ``ValidationDefinition.run`` does and let GX build
    its Data Docs site from them."""
    import datetime

    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    definition = run.definition
    statistics = calc_validation_statistics(results)
    run_id = RunIdentifier(run_time=datetime.datetime.now(datetime.UTC))
    suite_result = ExpectationSuiteValidationResult(
        results=results,
        success=statistics.success,
        suite_name=definition.suite.name,
        statistics={
            "evaluated_expectations": statistics.evaluated_expectations,
            "successful_expectations": statistics.successful_expectations,
            "unsuccessful_expectations": statistics.unsuccessful_expectations,
            "success_percent": statistics.success_percent,
        },
        meta={
            **run.meta,
            "validation_id": definition.id,
            "checkpoint_id": None,
            "run_id": run_id,
            "validation_time": run_id.run_time,
            "batch_parameters": {"dataframe": "<DATAFRAME>"},
        },
        batch_id=run.batch_id,
    )
    suite_id = ExpectationSuiteIdentifier(name=definition.suite.name)
    run.context.validation_results_store.store_validation_results(
        suite_validation_result=suite_result,
        suite_validation_result_identifier=ValidationResultIdentifier(
            batch_identifier=run.batch_id,
            expectation_suite_identifier=suite_id,
            run_id=run_id,
        ),
        expectation_suite_identifier=suite_id,
    )
    run.context.build_data_docs(site_names=[_DOCS_SITE])


def validate_frame(
    df: pd.DataFrame,
    spec: ValidationSpec,
    *,
    suite_name: str,
    docs_dir: str | Path | None = None,
) -> dict:
    """Validate ``df`` against ``spec`` with Great Expectations.

    Returns a JSON-safe summary::

        {"success": bool, "rows": int, "columns": int, "evaluated": int, "failed": int,
         "failures": [{"expectation": "expect_...", "column": str | None,
                       "kwargs": {...}, "unexpected_count": int | None,
                       "unexpected_percent": float | None, "examples": [...],
                       "observed": ... | None, "error": str | None,
                       "rows": [row labels of the examples] | None}, ...],
         "expectations": [{"expectation": "expect_...", "column": str | None,
                           "success": bool}, ...],
         "docs_index": str | None}

    ``error`` is set when GX could not evaluate an expectation at all (missing column,
    values of the wrong type). If ``docs_dir`` is given, GX renders its Data Docs site
    there (also when validation fails), with its Bootstrap/jQuery/font files served from
    the site itself (:func:`serve_assets_locally`: it works offline), and ``docs_index``
    is the page to open for this run: its validation result page (whose navigation
    leads to the site's ``index.html``).

    Raises
    ------
    ValidationFailed
        If any expectation is broken; ``.summary`` holds the summary above and the
        message lists every broken expectation on its own line.
    ConfigError
        If a free-form expectation in ``spec`` is unknown or malformed, or ``docs_dir``
        cannot be written.
    """
    started = time.perf_counter()
    suite = build_suite(spec, suite_name)
    docs_path = None if docs_dir is None else Path(docs_dir).absolute()
    from conveyor.validation.computed import compute_result, frame_facts

    # One vectorised pass for the expectations Conveyor's suites are made of; GX's own
    # _validate builds each result from the computed metrics. GX's engine evaluates the
    # rest (other types, missing columns, object columns...).
    expectations = list(suite.expectations)
    facts = frame_facts(df, _RESULT_FORMAT)
    results = [compute_result(e, facts) for e in expectations]
    pending = [e for e, r in zip(expectations, results, strict=True) if r is None]
    if pending or docs_path is not None:
        try:
            run = _run_gx(df, suite, pending, docs_path)
        except Exception as exc:  # GX catches per-expectation errors; this is the rest
            log.debug("Great Expectations could not run suite %s", suite_name, exc_info=True)
            reason = " ".join(str(exc).split())[:500] or type(exc).__name__
            summary = {
                "success": False,
                "rows": len(df),
                "columns": len(df.columns),
                "evaluated": 0,
                "failed": 0,
                "failures": [],
                "docs_index": None,
                "error": reason,
            }
            raise ValidationFailed(
                f"Data validation failed: Great Expectations could not run the suite for "
                f"{suite_name} ({len(df)} rows): {type(exc).__name__}: {reason}",
                summary,
            ) from None
        # GX evaluates (and lists) expectations in its own order; report them in the
        # suite's order: table first, then column by column as in the YAML.
        by_id = {r.expectation_config.id: r for r in run.results}
        for e, r in zip(expectations, results, strict=True):
            if r is not None:  # computed before the context gave the expectation its id
                r.expectation_config.id = e.id
                r.expectation_config.kwargs["batch_id"] = run.batch_id  # as GX's engine sets
        results = [
            r if r is not None else by_id[e.id] for e, r in zip(expectations, results, strict=True)
        ]
    if docs_path is not None:
        try:
            _store_and_build_docs(run, results)
            serve_assets_locally(docs_path)
        except OSError as exc:
            raise ConfigError(
                f"Cannot write the Data Docs to {docs_path}: {exc}. Point docs_dir "
                "(the run's artifact directory) at a writable location"
            ) from exc
        docs_index = str(_result_page(docs_path) or docs_path / "index.html")
    else:
        docs_index = None

    failures = [_failure(r, df) for r in results if not r.success]
    summary = {
        "success": not failures,
        "rows": len(df),
        "columns": len(df.columns),
        "evaluated": len(results),
        "failed": len(failures),
        "failures": [{k: v for k, v in f.items() if not k.startswith("_")} for f in failures],
        # every expectation's outcome, in suite order (OpenLineage's assertions facet)
        "expectations": [
            {
                "expectation": r.expectation_config.type,
                "column": None
                if r.expectation_config.kwargs.get("column") is None
                else str(r.expectation_config.kwargs["column"]),
                "success": bool(r.success),
            }
            for r in results
        ],
        "docs_index": docs_index,
    }
    log.info(
        "Validated %s (%d rows, %d columns): %d of %d expectations broken, %.2f s",
        suite_name,
        summary["rows"],
        summary["columns"],
        summary["failed"],
        summary["evaluated"],
        time.perf_counter() - started,
    )
    if failures:
        raise ValidationFailed(_message(summary, failures, suite_name), summary)
    return summary


# --------------------------------------------------------------------------- data docs


def _result_page(site: Path) -> Path | None:
    """The validation result page of a site built from one validation (the ephemeral
    context holds only this run's), else None."""
    pages = sorted((site / "validations").rglob("*.html"))
    return pages[-1] if pages else None


def serve_assets_locally(site: str | Path) -> list[str]:
    """Make a GX Data Docs site work offline: copy the CDN files its pages link to into
    ``static/vendor/`` and point every page at those copies (relative links, so the site
    still works once copied elsewhere, e.g. to the run's artifacts).

    Subresource-integrity attributes of rewritten tags are dropped (they pin the CDN's
    copy). GX's navbar logo, fetched from GX's S3 bucket with a timestamp on every view,
    points at the copy in the site's ``static/images/``. The Vega scripts (about 800 kB) are copied only when a page draws a chart.
    A CDN URL Conveyor does not know (a newer GX) is left as it is and logged.

    Returns the asset files copied (relative to the site).
    """
    import shutil

    site = Path(site)
    needed: set[str] = set()
    unknown: set[str] = set()
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        charts = "vegaEmbed(" in text.split("</head>", 1)[-1]
        prefix = "../" * (len(page.relative_to(site).parts) - 1) + _VENDOR + "/"

        def local(match: re.Match, *, charts=charts, prefix=prefix) -> str:
            url = match.group(1)
            target = _CDN_FILES.get(url)
            if target is None:
                unknown.add(url)
                return match.group(0)
            if target in _VEGA and not charts:
                return ""
            needed.add(target)
            return _SRI.sub("", match.group(0)).replace(url, prefix + target)

        new = _REMOTE_TAG.sub(local, text)
        new = _GX_LOGO.sub(lambda m, p=prefix: f"{p}../images/{m.group(1)}", new)
        if new != text:
            page.write_text(new, encoding="utf-8")
    if "css/all.min.css" in needed:  # Font Awesome's stylesheet loads its fonts
        needed.update(f"webfonts/{f.name}" for f in (_ASSETS / "webfonts").glob("*.woff2"))
    for rel in sorted(needed):
        dest = site / _VENDOR / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_ASSETS / rel, dest)
    if unknown:
        log.warning(
            "Data Docs still link to %d CDN file(s) with no local copy: %s",
            len(unknown),
            sorted(unknown),
        )
    return sorted(needed)


# --------------------------------------------------------------------------- reporting

_TYPE_CHECKS = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type")
_SKIP_KWARGS = {"column", "batch_id", "result_format", "catch_exceptions", "include_config"}


def _json_safe(value: Any, limit: int = 20) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, NaN/inf as strings, long lists cut."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        safe = [_json_safe(v, limit) for v in items[:limit]]
        if len(items) > limit:
            safe.append(f"... {len(items) - limit} more")
        return safe
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        try:
            return _json_safe(item(), limit)
        except (TypeError, ValueError):
            pass
    return str(value)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (so it prints as 1.5, not np.float64(1.5))."""
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _show(values: list) -> str:
    """Values as a short Python-looking list (NaN shown as nan, long strings cut)."""
    shown = []
    for value in values:
        text = repr(_plain(value))
        shown.append(text if len(text) <= 40 else text[:37] + "...")
    return "[" + ", ".join(shown) + "]"


def _exception_message(r) -> str | None:
    """GX's message for an expectation it could not evaluate, else None."""
    info = r.exception_info or {}
    if "raised_exception" not in info:  # keyed by metric id when a metric failed
        info = next(iter(info.values()), {}) if info else {}
    if not isinstance(info, dict) or not info.get("raised_exception"):
        return None
    return " ".join(str(info.get("exception_message") or "unknown error").split())[:300]


def _dtype(df, column) -> str | None:
    """The column's dtype as text, or None if there is no such column."""
    try:
        if column not in df.columns:
            return None
        dtype = df.dtypes[column]
    except (TypeError, ValueError):  # unhashable label
        return None
    if hasattr(dtype, "index"):  # a Series: the label is duplicated
        return "/".join(sorted({str(d) for d in dtype})) + " (duplicated column)"
    return str(dtype)


def _failure(r, df) -> dict:
    config = r.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in _SKIP_KWARGS and v is not None}
    family = (config.meta or {}).get(_META_TYPE)
    if family is not None:  # Conveyor's dtype check: name the family, not 20 dtypes
        kwargs = {"type": family}
    res = r.result or {}
    column = config.kwargs.get("column")
    examples = list(res.get("partial_unexpected_list") or [])[:EXAMPLES]
    observed = res.get("observed_value")
    failure = {
        "expectation": config.type,
        "column": None if column is None else str(column),
        "kwargs": _json_safe(kwargs),
        "unexpected_count": _json_safe(res.get("unexpected_count")),
        "unexpected_percent": _json_safe(res.get("unexpected_percent")),
        "examples": _json_safe(examples),
        "observed": _json_safe(observed),
        "error": None,
        "rows": None,
        "_kwargs": kwargs,
        "_examples": examples,
        "_observed": observed,
        "_details": (res.get("details") or {}).get("mismatched"),
        "_hint": "",
        "_missing": False,
    }
    error = _exception_message(r)
    dtype = _dtype(df, column) if column is not None else None
    if error is not None:
        if column is not None and dtype is None:
            error = f"column {column!r} is missing"
            failure["_missing"] = True
        elif dtype is not None:
            error = f"column has dtype {dtype}: {error}"
        failure["error"] = error
    elif config.type in _TYPE_CHECKS and dtype:
        # GX reports the dtype's scalar type ("float64" for Float64, "CategoricalDtypeType");
        # the pandas dtype is what the user knows.
        failure["observed"] = failure["_observed"] = dtype
        if df.columns.is_unique and _not_numbers(failure, df[column], family):
            pass
        elif not examples and df.columns.is_unique:
            failure["_hint"] = _type_hint(df[column], family)
    return failure


def _not_numbers(failure: dict, series, family: str | None) -> bool:
    """For a numeric column that holds text: report exactly the values that are not numbers.

    GX's own type check counts every value whose Python type is wrong, so a column read as
    text because of one ``"?"`` reports all its rows, with valid numbers as examples.
    Here the count, the share, the examples and their row labels are the values that
    really are not numbers. Returns whether any were found (``failure`` updated in place).
    """
    if family not in ("float", "int") or series.dtype.kind in "iufcb":
        return False
    import pandas as pd

    bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
    count = int(bad.sum())
    if not count:
        return False
    values = series[bad]
    examples = values.head(EXAMPLES).tolist()
    rows = [_plain(label) for label in values.index[:EXAMPLES]]
    failure.update(
        unexpected_count=count,
        unexpected_percent=100.0 * count / len(series),
        examples=_json_safe(examples),
        rows=_json_safe(rows),
        _examples=examples,
        _hint=(
            f"; {'it is' if count == 1 else 'they are'} not "
            f"{'a number' if count == 1 else 'numbers'} (row index{'es' if len(rows) > 1 else ''} "
            f"{', '.join(map(str, rows))}{' ...' if count > len(rows) else ''})"
        ),
    )
    return True


def _type_hint(series, family: str | None) -> str:
    """Why a column has the wrong dtype, with the values that caused it."""
    kind = series.dtype.kind
    if family in ("float", "int") and kind not in "iufcb":
        import pandas as pd

        numbers = pd.to_numeric(series, errors="coerce")
        bad = series[numbers.isna() & series.notna()].head(EXAMPLES).tolist()
        if bad:
            return f"; values that are not numbers, e.g. {_show(bad)}"
    if family == "int" and kind == "f":
        missing = int(series.isna().sum())
        if missing:
            return (
                f"; {missing} missing values make pandas read the int column as float "
                "(set nullable: true if they are allowed)"
            )
    return ""


def _pct(value: float | None) -> str:
    if value is None:
        return ""
    return f" ({value:.1f}%)" if value >= 1 or value == 0 else f" ({value:.2g}%)"


def _kwargs_text(kwargs: dict) -> str:
    parts = []
    for key, value in kwargs.items():
        if isinstance(value, float) and abs(value) == _FLOAT_MAX:
            continue  # the implicit +/-inf guard of float columns
        value = _plain(value)
        if isinstance(value, list | tuple | set) and len(value) > 10:
            value = f"<{len(value)} values>"
        text = value if key == "type" else repr(value)
        parts.append(f"{key}={text}")
    return f" [{', '.join(parts)}]" if parts else ""


def _line(f: dict) -> str:
    head = f"  - {f['expectation']}"
    if f["column"] is not None:
        head += f" on {f['column']!r}"
    if f["_missing"]:
        return f"{head}: not evaluated, {f['error']}"
    if f["expectation"] == "expect_column_to_exist" and not f["kwargs"]:
        return f"{head}: the column is missing"
    details = f["_details"]
    if not details:
        head += _kwargs_text(f["_kwargs"])
    if f["error"]:
        return f"{head}: could not be evaluated, {f['error']}"
    if details:
        parts = []
        for key, label in (("missing", "missing columns"), ("unexpected", "unexpected columns")):
            names = list(details.get(key) or [])
            if names:
                more = f" and {len(names) - 50} more" if len(names) > 50 else ""
                parts.append(f"{label} {_show(names[:50])}{more}")
        if parts:
            return f"{head}: {'; '.join(parts)}"
    if f["unexpected_count"]:
        text = f"{head}: {f['unexpected_count']} unexpected{_pct(f['unexpected_percent'])}"
        if f["_examples"]:
            text += f", e.g. {_show(f['_examples'])}"
        if f["expectation"] in _TYPE_CHECKS and f["_observed"]:
            text += f" in a column of dtype {f['_observed']}"
        return text + f["_hint"]
    observed = f["_observed"]
    if isinstance(observed, list | tuple):
        observed = _show(list(observed)[:50])
    elif isinstance(observed, str) and f["expectation"] in _TYPE_CHECKS:
        observed = f"dtype {observed}"
    else:
        observed = repr(_plain(observed))
    return f"{head}: observed {observed}{f['_hint']}"


def _message(summary: dict, failures: list[dict], suite_name: str) -> str:
    lines = [
        f"Data validation failed: {summary['failed']} of {summary['evaluated']} expectations "
        f"broken for {suite_name} ({summary['rows']} rows)"
    ]
    lines += [_line(f) for f in failures]
    fix = "Fix the data, or the expectations under validation: in the pipeline YAML, and re-run"
    if summary["docs_index"]:  # the path itself may be temporary: the caller publishes it
        fix += "; the Data Docs report shows every result"
    lines.append(fix + ".")
    return "\n".join(lines)
