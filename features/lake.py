"""The lake: one Parquet file per contract table, every identifier already a pseudonym."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def read_lake(lake_dir: Path, table: str) -> pd.DataFrame:
    path = lake_dir / f"{table}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"lake has no table {table!r} ({path}); run `portrait ingest` first")
    return pd.read_parquet(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file beside the target, then rename: readers see old or new, never half."""
    tmp = path.with_suffix(".parquet.tmp")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Microsecond timestamps: DuckDB (Feast's offline store) cannot read tz-aware nanoseconds.
    pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=True)
    os.replace(tmp, path)
