"""DuckDB plumbing for the indicator families: bounded sessions, lake views, exact-schema writers.

One home for it, below the family modules, so no family imports another family's helpers.
Two generations live here side by side (the session/writer set used by fitness, teachers and
classes; the workspace/term set used by the student families); merging them is open work.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import TABLES
from features.indicators.family import IndicatorFamily

MEMORY_LIMIT = "3GB"
THREADS = 2
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
        con.execute("SET enable_progress_bar = false")
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


# --- the student families' set: terms, a scratch workspace, typed writes ---

_KIND_SQL = {"float": "DOUBLE", "int": "BIGINT", "str": "VARCHAR", "json": "VARCHAR"}


@dataclass(frozen=True)
class Term:
    term_id: str
    school_year: int
    idx: int  # school_year * 2 + term - 1: consecutive terms differ by 1, gaps stay gaps
    end: datetime  # end_date at 00:00 (UTC): when the term's values become true

    @property
    def end_sql(self) -> str:
        return f"TIMESTAMP '{self.end:%Y-%m-%d %H:%M:%S}'"


def lake_table(lake_dir: Path, table: str) -> str | None:
    """The lake file of `table` as a DuckDB string literal, or None if the lake lacks it."""
    path = Path(lake_dir) / f"{table}.parquet"
    return sql_str(str(path)) if path.exists() else None


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    return "(" + ", ".join(sql_str(v) for v in values) + ")" if values else "(NULL)"


def files_sql(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_str(str(p)) for p in paths) + "]"


@contextmanager
def workspace(out_path: Path, name: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """A DuckDB connection with bounded memory and a scratch folder beside the output, removed after."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = out_path.parent / f".{name}.build"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    con = duckdb.connect(config={
        "memory_limit": MEMORY_LIMIT, "threads": THREADS, "temp_directory": str(scratch / "spill"),
        "preserve_insertion_order": False,
    })
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        yield con, scratch
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)


def load_terms(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> list[Term]:
    """Temp table `terms` (term_id, school_year, idx, end_ts) and the terms in order; [] without a terms table."""
    source = lake_table(lake_dir, "terms")
    if source is None:
        con.execute("CREATE OR REPLACE TEMP TABLE terms (term_id VARCHAR, school_year BIGINT, idx BIGINT, "
                    "end_ts TIMESTAMP)")
        return []
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE terms AS
        SELECT term_id, school_year, school_year * 2 + term - 1 AS idx,
               date_trunc('day', end_date)::TIMESTAMP AS end_ts
        FROM read_parquet({source}) WHERE end_date IS NOT NULL ORDER BY idx
    """)
    rows = con.execute("SELECT term_id, school_year, idx, end_ts FROM terms ORDER BY idx").fetchall()
    idx = [r[2] for r in rows]
    if len(set(idx)) != len(idx):
        raise ValueError("terms: two term_ids share a (school_year, term); fix the terms export")
    return [Term(*r) for r in rows]


def load_grade_of(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> None:
    """Temp table `grade_of` (student_id, school_year, grade); empty if the lake lacks the tables."""
    memberships, classes = lake_table(lake_dir, "class_memberships"), lake_table(lake_dir, "classes")
    if memberships is None or classes is None:
        con.execute("CREATE OR REPLACE TEMP TABLE grade_of (student_id VARCHAR, school_year BIGINT, grade BIGINT)")
        return
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE grade_of AS
        SELECT m.student_id, m.school_year, any_value(c.grade) AS grade
        FROM read_parquet({memberships}) m JOIN read_parquet({classes}) c USING (class_id)
        GROUP BY m.student_id, m.school_year
    """)


def window_terms(terms: list[Term], term: Term, size: int) -> list[Term]:
    """The terms t-size+1..t that exist (by index, so a missing term is not replaced by an older one)."""
    return [t for t in terms if term.idx - size < t.idx <= term.idx]


def typed(family: IndicatorFamily, inner_sql: str, extra: tuple[str, ...] = ()) -> str:
    """SELECT the family's columns, in order, cast to their declared kinds (then `extra` as is), from `inner_sql`."""
    columns = [f"CAST({k} AS VARCHAR) AS {k}" for k in family.keys]
    columns.append("CAST(event_timestamp AS TIMESTAMP) AS event_timestamp")
    columns += [f"CAST({name} AS {_KIND_SQL[kind]}) AS {name}" for name, kind in family.fields.items()]
    columns += list(extra)
    return f"SELECT {', '.join(columns)} FROM ({inner_sql})"


def copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> Path:
    con.execute(f"COPY ({sql}) TO {sql_str(str(path))} (FORMAT parquet)")
    return path


def exams_by_term(con: duckdb.DuckDBPyConnection, grades: str, folder: Path,
                  subjects: tuple[str, ...] | None = None) -> dict[str, Path]:
    """One pass over lake `grades`: each exam's share of full mark, split into one folder per term.

    The lake is sorted by student, so a filter on term cannot skip any of it; reading it once
    and splitting beats scanning it again for every term. A score above its full mark counts as 1.
    Returns term_id → folder; read a term back with `term_exams`.
    """
    chosen = f"AND subject IN {sql_list(subjects)}" if subjects else ""
    con.execute(f"""
        COPY (
            SELECT student_id, subject, least(score / full_mark, 1.0) AS share, term_id
            FROM read_parquet({grades})
            WHERE score IS NOT NULL AND full_mark > 0 {chosen}
        ) TO {sql_str(str(folder))} (FORMAT parquet, PARTITION_BY (term_id))
    """)
    folders = [p for p in Path(folder).glob("term_id=*") if p.is_dir()] if Path(folder).is_dir() else []
    return {unquote(p.name.split("=", 1)[1]): p for p in folders}


def term_exams(exams: dict[str, Path], term: Term) -> str:
    """A FROM item with (student_id, subject, share) of one term's exams, from `exams_by_term`."""
    part = exams.get(term.term_id)
    if part is not None and any(part.glob("*.parquet")):
        return f"read_parquet({sql_str(str(part / '*.parquet'))})"
    return "(SELECT NULL::VARCHAR AS student_id, NULL::VARCHAR AS subject, NULL::DOUBLE AS share WHERE false)"


def write_family(family: IndicatorFamily, parts: list[Path], out_path: Path) -> int:
    """Concatenate part files, in order, into `out_path` with exactly `family.arrow_schema()`; rows written.

    DuckDB reads and writes in parallel (in the parts' order) and casts every column to its
    declared kind; the file is written beside the target and renamed, so a reader sees the old file
    or the new one. No parts: an empty file with the schema.
    """
    schema = family.arrow_schema()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    if not parts:
        pq.write_table(schema.empty_table(), tmp, compression="zstd")
        os.replace(tmp, out_path)
        return 0
    columns = _written_columns(family)
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "threads": THREADS,
                                 "preserve_insertion_order": True})  # parts in the order given
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"COPY (SELECT {', '.join(columns)} FROM read_parquet({files_sql(parts)})) "
                    f"TO {sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)")
    finally:
        con.close()
    written = pq.ParquetFile(tmp)
    if not written.schema_arrow.equals(schema, check_metadata=False):
        tmp.unlink()
        raise RuntimeError(f"{family.name}: DuckDB wrote {written.schema_arrow}, not the declared {schema}")
    rows = written.metadata.num_rows
    os.replace(tmp, out_path)
    return rows


def write_family_queries(con: duckdb.DuckDBPyConnection, family: IndicatorFamily, queries: list[str],
                         out_path: Path) -> int:
    """Write the rows of `queries`, one after the other, into `out_path`; rows written.

    Each query (selecting the family's keys, `event_timestamp` and fields by name) is cast to the
    family's kinds in SQL and streamed, batch by batch, into one `FamilyWriter`, so memory is
    bounded by one query whatever the number of queries (one COPY over a UNION ALL of them all
    holds every branch's state at once and runs out of memory at city scale), and every row is
    encoded once: copying each query to a part file and concatenating the parts encoded the
    family twice (at 250k students, the concatenation alone was 40 % of student_subject_term).
    """
    columns = ", ".join(_written_columns(family))
    with FamilyWriter(family, out_path) as out:
        for query in queries:
            out.add_query(con, f"SELECT {columns} FROM ({query})")
    return out.rows


def _written_columns(family: IndicatorFamily) -> list[str]:
    """The family's columns as written to its file: keys, tz-aware event time, fields cast to their kinds."""
    columns = [f"CAST({key} AS VARCHAR) AS {key}" for key in family.keys]
    columns.append("CAST(event_timestamp AS TIMESTAMPTZ) AS event_timestamp")
    return columns + [f"CAST({name} AS {_KIND_SQL[kind]}) AS {name}" for name, kind in family.fields.items()]


def entity_ranges(path: Path, column: str, buckets: int) -> list[str]:
    """SQL conditions cutting the Parquet file at `path` into about `buckets` buckets of whole
    `column` values (students, say), each read without the whole file where possible.

    A file sorted on `column` (each row group's values after the previous group's) with at least
    `buckets` row groups is cut into ranges of `column` at row-group boundaries, so a bucket's scan
    skips every other row group on their statistics. Otherwise the buckets are by hash (each bucket
    then reads the whole file). Either way every row falls in exactly one bucket (NULLs in the
    first).
    """
    if buckets <= 1:
        return ["TRUE"]
    hashed = [f"hash({column}) % {buckets} = {b}" for b in range(buckets)]
    metadata = pq.ParquetFile(path).metadata
    index = metadata.schema.to_arrow_schema().names.index(column)
    groups = []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max:
            return hashed
        groups.append((stats.min, stats.max))
    if len(groups) < buckets or any(earlier[1] > later[0] for earlier, later in zip(groups, groups[1:])):
        return hashed
    cuts = sorted({groups[round(j * len(groups) / buckets)][0] for j in range(1, buckets)})
    conditions = [f"({column} IS NULL OR {column} < {sql_str(cuts[0])})"]
    conditions += [f"{column} >= {sql_str(low)} AND {column} < {sql_str(high)}" for low, high in zip(cuts, cuts[1:])]
    conditions.append(f"{column} >= {sql_str(cuts[-1])}")
    return conditions


def lake_mtime(lake_dir: Path) -> float:
    return max((p.stat().st_mtime for p in Path(lake_dir).glob("*.parquet")), default=0.0)


def fresh_output(lake_dir: Path, path: Path, columns: list[str] | None = None) -> bool:
    """A sibling output that is newer than every lake table (and has the needed columns)."""
    if not path.exists() or path.stat().st_mtime < lake_mtime(lake_dir):
        return False
    if columns is None:
        return True
    names = set(pq.read_schema(path).names)
    return all(c in names for c in columns)


def sibling(lake_dir: Path, out_dir: Path, family: IndicatorFamily, scratch: Path) -> Path:
    """The family's Parquet in the output folder if fresh with its exact schema, else built into `scratch`."""
    path = Path(out_dir) / f"{family.name}.parquet"
    if fresh_output(lake_dir, path) and pq.read_schema(path).equals(family.arrow_schema(), check_metadata=False):
        return path
    built = Path(scratch) / f"{family.name}.parquet"
    family.build(Path(lake_dir), built)
    return built


# ============================================================================================
# student_subject_term
# ============================================================================================
