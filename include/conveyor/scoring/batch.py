"""Chunked batch scoring of a file: check it against the model's input schema, then score.

Two passes over the file, each holding one chunk (``chunk_rows`` rows) in memory, so
peak memory depends on the chunk size and the model, not on the file: the first pass
checks every value with the same rules and messages as the model service's
``/predict`` (:mod:`conveyor.serving.schema`) and stops before anything is scored; the
second pass scores and appends each chunk to the output (Parquet row groups or CSV
lines). Nothing here knows about MLflow, DVC or Airflow: the caller hands in a
:class:`~conveyor.serving.predictor.Predictor` and local paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.errors import DataError
from conveyor.serving.schema import MAX_LISTED_ERRORS, Column, InputSchema
from conveyor.serving.schema import _value_problem as value_problem

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.serving.predictor import Predictor

log = logging.getLogger(__name__)

Format = Literal["csv", "parquet"]
#: Name of the id column written when the input has none configured: the row number.
ROW_COLUMN = "row"
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"


@dataclass(frozen=True)
class ScoreStats:
    """What one scoring pass did."""

    rows: int
    chunks: int
    seconds: float
    rows_per_second: float
    output_path: str
    output_format: str
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_format(path: str | Path, declared: str | None = None) -> Format:
    """``csv`` or ``parquet``: the declared one, else from the file name."""
    if declared in ("csv", "parquet"):
        return declared  # type: ignore[return-value]
    return "parquet" if str(path).lower().endswith((".parquet", ".pq")) else "csv"


def _header(path: Path, fmt: Format) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    import pandas as pd

    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def iter_chunks(
    path: str | Path,
    schema: InputSchema,
    *,
    chunk_rows: int,
    fmt: Format | None = None,
    id_column: str | None = None,
) -> Iterator[pd.DataFrame]:
    """The schema's columns (plus ``id_column``) of ``path``, ``chunk_rows`` rows at a time.

    CSV string columns are read as text (a categorical ``"01"`` stays ``"01"``); numeric
    columns are typed per chunk, so a text value shows up as an ``object`` column that
    :func:`check_chunk` reports exactly.

    Raises
    ------
    DataError
        If the file lacks a column the model takes, or the id column.
    """
    import pandas as pd

    path = Path(path)
    fmt = file_format(path, fmt)
    present = set(_header(path, fmt))
    wanted = list(schema.names) + (
        [id_column] if id_column and id_column not in schema.names else []
    )
    missing = [c for c in wanted if c not in present]
    if missing:
        what = "id column" if missing == [id_column] else "column(s) the model takes"
        raise DataError(
            f"{path.name} lacks the {what} {missing}; the model's input schema is "
            f"{list(schema.names)}. Fix the file (or scoring.id_column) and publish it again"
        )
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=wanted):
            yield batch.to_pandas()
        return
    text = {c.name: str for c in schema.columns if c.kind == "str"}
    yield from pd.read_csv(path, usecols=wanted, dtype=text, chunksize=chunk_rows)


def check_chunk(frame: pd.DataFrame, schema: InputSchema, *, offset: int) -> list[dict[str, Any]]:
    """Every value of ``frame`` that ``/predict`` would refuse, as ``{row, column, message}``.

    ``row`` is the 0-based data row of the file (``offset`` + position in the chunk). At
    most :data:`MAX_LISTED_ERRORS` + 1 problems are described per column; the count of
    bad rows is exact (``count`` of the returned dict for that column).
    """
    problems: list[dict[str, Any]] = []
    for column in schema.columns:
        bad, values = _bad_values(frame[column.name], column)
        count = int(bad.sum())
        if not count:
            continue
        import numpy as np

        positions = np.flatnonzero(bad)[: MAX_LISTED_ERRORS + 1]
        for i, pos in enumerate(positions):
            problems.append(
                {
                    "row": offset + int(pos),
                    "column": column.name,
                    "message": value_problem(_plain(values[pos]), column, float("inf")),
                    "count": count if i == 0 else 0,
                }
            )
    return problems


def _plain(value: Any) -> Any:
    """A value as ``/predict`` would have received it from JSON (for the message)."""
    import math

    import numpy as np

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _bad_values(series: pd.Series, column: Column) -> tuple[Any, Any]:
    """Boolean mask of refused values, and the values to describe them with."""
    import numpy as np
    import pandas as pd

    missing = series.isna().to_numpy()
    numeric = pd.api.types.is_numeric_dtype(series.dtype) and series.dtype != bool
    values = series.to_numpy() if numeric else series.to_numpy(dtype=object)
    if column.kind in ("float", "int"):
        if series.dtype == bool:
            return np.ones(len(series), dtype=bool), values
        # text columns (object or pandas' str dtype): a value that is not a number is bad
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
        is_text = np.isnan(numbers) & ~missing
        if not numeric:
            # a Python bool is a number to pandas but not to the schema
            is_text |= np.fromiter((type(v) is bool for v in values), bool, len(values))
        infinite = np.isinf(numbers)
        bad = is_text | infinite
        if not column.nullable:
            bad |= missing
        if column.kind == "int":
            finite = np.isfinite(numbers)
            bad |= finite & (numbers != np.trunc(np.where(finite, numbers, 0.0)))
        return bad, values
    if column.kind == "bool":
        if series.dtype == bool:
            return np.zeros(len(series), dtype=bool), values
        ok = np.fromiter((type(v) in (bool, np.bool_) for v in values), bool, len(values))
        bad = ~ok & ~missing if column.nullable else ~ok
        return bad, values
    ok = np.fromiter((type(v) is str for v in values), bool, len(values))
    bad = ~ok & ~missing if column.nullable else ~ok
    return bad, values


def check_file(
    path: str | Path,
    schema: InputSchema,
    *,
    chunk_rows: int,
    fmt: Format | None = None,
    id_column: str | None = None,
    what: str = "the model",
) -> int:
    """Check every row of ``path`` against ``schema`` (one pass, chunked); return the rows.

    Raises
    ------
    DataError
        Naming the first problems (row, column, what is wrong) and how many rows are
        bad in all; raised after the whole file was read, before anything is scored.
    """
    problems: list[dict[str, Any]] = []
    bad_cells = 0
    rows = 0
    for chunk in iter_chunks(path, schema, chunk_rows=chunk_rows, fmt=fmt, id_column=id_column):
        found = check_chunk(chunk, schema, offset=rows)
        bad_cells += sum(p["count"] for p in found)
        if len(problems) <= MAX_LISTED_ERRORS:
            problems.extend(found)
        rows += len(chunk)
    if rows == 0:
        raise DataError(f"{Path(path).name} holds no rows: nothing to score")
    if problems:
        problems.sort(key=lambda p: (p["row"], p["column"]))
        first = problems[0]
        listed = "; ".join(
            f"row {p['row']}, column {p['column']!r}: {p['message']}" for p in problems[:5]
        )
        raise DataError(
            f"{Path(path).name} does not match the input schema of {what}: {bad_cells} bad "
            f"value(s) in {rows} rows, first at row {first['row']} (0-based data row). "
            f"{listed}. Nothing was scored: fix the file and publish it again"
        )
    return rows


def score_file(
    path: str | Path,
    predictor: Predictor,
    output: str | Path,
    *,
    chunk_rows: int,
    fmt: Format | None = None,
    output_format: Format = "parquet",
    id_column: str | None = None,
    probabilities: bool = True,
) -> ScoreStats:
    """Score ``path`` chunk by chunk into ``output``: ids, ``prediction``, ``proba_<class>``.

    Call :func:`check_file` first: values are fed to the model as read.
    """
    import numpy as np
    import pandas as pd

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    schema = predictor.schema
    writer: Any = None
    columns: list[str] = []
    rows = chunks = 0
    started = time.perf_counter()
    try:
        for chunk in iter_chunks(path, schema, chunk_rows=chunk_rows, fmt=fmt, id_column=id_column):
            labels, proba = predictor.predict_frame(chunk)
            out: dict[str, Any] = {}
            if id_column:
                out[id_column] = chunk[id_column].to_numpy()
            else:
                out[ROW_COLUMN] = np.arange(rows, rows + len(chunk), dtype=np.int64)
            out[PREDICTION_COLUMN] = labels
            if probabilities and proba is not None:
                for j, cls in enumerate(predictor.classes):
                    out[f"{PROBA_PREFIX}{cls}"] = proba[:, j]
            frame = pd.DataFrame(out, copy=False)
            if output_format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(output, table.schema)
                writer.write_table(table.cast(writer.schema))
            else:
                frame.to_csv(output, mode="a", header=not chunks, index=False)
            columns = list(frame.columns)
            rows += len(chunk)
            chunks += 1
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    log.info(
        "Scored %d rows in %d chunk(s) in %.2fs (%.0f rows/s) into %s",
        rows,
        chunks,
        seconds,
        rows / seconds if seconds else 0.0,
        output,
    )
    return ScoreStats(
        rows=rows,
        chunks=chunks,
        seconds=round(seconds, 3),
        rows_per_second=round(rows / seconds, 1) if seconds else 0.0,
        output_path=str(output),
        output_format=output_format,
        columns=columns,
    )
