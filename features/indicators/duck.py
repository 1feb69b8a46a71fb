"""DuckDB plumbing for the indicator families: bounded sessions, lake views, exact-schema writers.

One home for it, below the family modules (fitness, teachers and classes use it), so no family
imports another family's helpers.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import TABLES
from features.indicators.family import IndicatorFamily

MEMORY_LIMIT = "3GB"
THREADS = 2
CHUNK_ROWS = 400_000  # tests per student bucket in the window query (~0.5 GB peak)
HISTORY_CHUNK_ROWS = 150_000  # tests per student bucket in the history query (its JSON grows with the career)
BATCH_ROWS = 100_000  # rows per Arrow batch read back from DuckDB
ROW_GROUP_BYTES = 128 << 20
_DUCK_TYPES = {"str": "VARCHAR", "code": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "date": "TIMESTAMP",
               "bool": "BOOLEAN"}


def sql_literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def spill_dir(out_path: Path) -> Path:
    """DuckDB's temporary folder for one family build: beside the output, removed afterwards."""
    return Path(out_path).parent / f".{Path(out_path).stem}.{uuid.uuid4().hex[:8]}.spill"


@contextmanager
def duck_session(spill: Path, *, memory_limit: str = MEMORY_LIMIT, threads: int = THREADS
                 ) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB bounded to `memory_limit`, spilling to `spill`, timestamps in UTC."""
    spill = Path(spill)
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads,
                                 "temp_directory": str(spill), "preserve_insertion_order": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def register_lake(con: duckdb.DuckDBPyConnection, lake_dir: Path, tables: list[str]) -> set[str]:
    """A view per lake table; a table the lake lacks becomes an empty view with the contract's
    columns, so one query serves a full lake and a partial one. Returns the tables present."""
    present = set()
    for name in tables:
        path = Path(lake_dir) / f"{name}.parquet"
        if path.exists():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(path)})")
            present.add(name)
        else:
            columns = ", ".join(f"NULL::{_DUCK_TYPES[c.kind]} AS {c.name}"
                                for c in TABLES[name].columns if not c.personal)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} WHERE FALSE")
    return present


def student_buckets(con: duckdb.DuckDBPyConnection, relation: str, key: str,
                    rows_per_bucket: int = CHUNK_ROWS) -> list[str]:
    """SQL conditions cutting `relation` into whole-entity buckets of about `rows_per_bucket` rows."""
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    buckets = max(1, math.ceil(rows / rows_per_bucket))
    if buckets == 1:
        return ["TRUE"]
    return [f"hash({key}) % {buckets} = {b}" for b in range(buckets)]


class FamilyWriter:
    """Writes a family's Parquet with exactly `family.arrow_schema()`, atomically (temp file, rename).

    Rows come as DuckDB queries or Arrow batches, each cast to the schema by column name, so the
    file always has the declared key columns, `event_timestamp` (UTC, µs) and fields in order.
    """

    def __init__(self, family: IndicatorFamily, out_path: Path):
        self.family, self.out_path = family, Path(out_path)
        self.schema = family.arrow_schema()
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out_path.with_name(f".{self.out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self.rows = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0

    def __enter__(self) -> FamilyWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def add_query(self, con: duckdb.DuckDBPyConnection, sql: str) -> None:
        for batch in con.sql(sql).to_arrow_reader(BATCH_ROWS):
            self.add_batch(batch)

    def add_batch(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        arrays = [batch.column(f.name).cast(f.type) for f in self.schema]
        self._buffer.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._buffered += self._buffer[-1].nbytes
        self.rows += batch.num_rows
        if self._buffered >= ROW_GROUP_BYTES or sum(b.num_rows for b in self._buffer) >= 1_000_000:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.writer.write_table(pa.Table.from_batches(self._buffer, schema=self.schema))
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.out_path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def term_ends(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, str, str]]:
    """The lake's terms in time order: (term_id, school_year, end, previous end) as SQL timestamp
    literals. A term's values become true at its end; "in the term" means after the previous
    term's end (for the first term: from its start), up to and including this end."""
    rows = con.execute("""
        SELECT term_id, school_year, end_date,
               coalesce(lag(end_date) OVER (ORDER BY end_date, term_id), start_date - INTERVAL 1 DAY) AS previous_end
        FROM terms WHERE end_date IS NOT NULL ORDER BY end_date, term_id
    """).fetchall()
    return [(term_id, int(year), f"TIMESTAMP {sql_literal(end)}", f"TIMESTAMP {sql_literal(previous)}")
            for term_id, year, end, previous in rows]
