"""Reading the validated Parquet snapshot into pandas with a low memory peak.

``pandas.read_parquet`` first reads the whole file into an Arrow table and then converts
it, so for a moment the data exists twice (plus decompression buffers): measured 2.6x
the frame's size at 1M rows x 31 columns (bench/memory.py). Reading one column at a time
keeps a single column in Arrow at once: about 1.3x. The training task reads the largest
frame of a run, so this is where the task's peak memory is decided.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def read_parquet_columns(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file column by column; same columns, order and dtypes as
    ``pandas.read_parquet`` (one block per column: nothing is consolidated)."""
    return _read_by_column(path)


def _read_by_column(path: str | Path, indices: Any = None) -> pd.DataFrame:
    """One column at a time into pandas; with ``indices`` (an Arrow array), only those
    rows of each column reach pandas."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns: dict[str, pd.Series] = {}
    # The columns share Arrow's buffers (no copy). Allocate them with the C library's
    # malloc, not Arrow's default mimalloc pool: mimalloc keeps freed pages for reuse, so
    # when the training task drops the full frame after the split, its memory would stay
    # in the process through the fit (bench/memory.py: 3.85x -> 2.77x the data at 1M rows).
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        for name in parquet.schema_arrow.names:
            table = parquet.read(columns=[name], use_pandas_metadata=True)
            if indices is not None:
                table = table.take(indices)
            part = table.to_pandas(self_destruct=True)
            del table
            if name in part.columns:  # not the pandas index
                columns[name] = part[name]
    finally:
        pa.set_memory_pool(previous)
    return pd.DataFrame(columns, copy=False)


def write_parquet_snapshot(frame: pd.DataFrame, target: Any) -> None:
    """Write the validated snapshot the later steps of the run read back.

    Dictionary encoding only for columns that are not floating point: Arrow tries it on
    every column by default and gives up on high-cardinality floats after encoding a
    dictionary page, which made a 1M x 31 float snapshot take 0.8 s to write instead of
    0.47 s (same file size within 3 %, same frame read back)."""
    import pandas as pd

    dictionary = [
        str(name) for name, dtype in frame.dtypes.items() if not pd.api.types.is_float_dtype(dtype)
    ]
    frame.to_parquet(target, index=False, use_dictionary=dictionary)


def read_parquet_rows(path: str | Path, positions: Any) -> pd.DataFrame:
    """Only the rows at ``positions`` (in that order) of a Parquet file, read column by
    column: equal to ``read_parquet_columns(path).iloc[positions]``, index included, but
    the other rows never reach pandas. The evaluation task needs the 20 % test rows of a
    snapshot; building the whole frame first and then copying them out took 1.9 s of its
    4 s handoff at 1M rows (bench/orchestration.py)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    positions = np.asarray(positions)
    out = _read_by_column(path, pa.array(positions))
    out.index = pd.Index(positions)
    return out
