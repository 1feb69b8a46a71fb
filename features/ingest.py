"""Ingest: an export folder (CONTRACT.md) → validated, pseudonymized Parquet in the lake.

Per table, streamed in batches so memory stays bounded whatever the file size:
1. read (CSV as text, Parquet as typed) and check every cell against its declared rule;
2. replace identifiers with keyed pseudonyms and drop names and national ids at once, so no
   later step (or file) ever holds them;
3. stage the good rows, then in DuckDB (out of core): refuse duplicate keys and rows whose
   foreign key points at nothing, and merge with the lake: a re-exported row replaces the
   earlier row it covers (same key), everything else stays;
4. every refused row goes to the quarantine with file, row, column, value (pseudonymized where
   it is an identifier) and the rule it broke.
All tables land in one new lake version, committed atomically at the end (see `features.lake`).
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import LOAD_ORDER, TABLES, Column, Table
from features.lake import QUARANTINE, LakeVersion
from privacy.pseudonyms import Pseudonymizer

BATCH_ROWS = 1 << 20
QUARANTINE_SCHEMA = pa.schema([
    ("table", pa.string()), ("file", pa.string()), ("row", pa.int64()),
    ("column", pa.string()), ("value", pa.string()), ("rule", pa.string()),
])
# Dates are stored as midnight timestamps: every reader (pandas, DuckDB, Feast) takes them as is.
ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "date": pa.timestamp("us"), "bool": pa.bool_(),
               "str": pa.string(), "code": pa.string()}
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_TRUE, _FALSE = ["true", "1", "yes", "t", "y"], ["false", "0", "no", "f", "n"]


class IngestError(ValueError):
    """A table cannot be loaded at all (unreadable file, missing required column)."""


@dataclass
class TableReport:
    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0  # accepted from this export (new, replacing, or identical to the lake)
    rows_replaced: int = 0  # earlier lake rows superseded by a different re-exported row
    rows_quarantined: int = 0
    by_rule: Counter = field(default_factory=Counter)
    error: str | None = None


@dataclass
class IngestReport:
    tables: dict[str, TableReport] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [t.error for t in self.tables.values() if t.error]

    def as_dict(self) -> dict:
        return {
            name: {
                "files": t.files, "rows_read": t.rows_read, "rows_loaded": t.rows_loaded,
                "rows_replaced": t.rows_replaced, "rows_quarantined": t.rows_quarantined,
                "by_rule": dict(t.by_rule), "error": t.error,
            }
            for name, t in self.tables.items()
        }

    def render(self) -> str:
        lines = [f"{'table':<22}{'read':>11}{'loaded':>11}{'replaced':>10}{'quarantined':>13}  rules broken"]
        for t in self.tables.values():
            rules = ", ".join(f"{rule}: {count}" for rule, count in t.by_rule.most_common())
            if t.error:
                rules = f"ERROR {t.error}"
            lines.append(f"{t.table:<22}{t.rows_read:>11}{t.rows_loaded:>11}{t.rows_replaced:>10}"
                         f"{t.rows_quarantined:>13}  {rules}")
        return "\n".join(lines)


def ingest(export_dir: Path, *, lake_dir: Path, pseudonymizer: Pseudonymizer,
           memory_limit: str = "4GB", threads: int = 2) -> IngestReport:
    """Load every contract table found in `export_dir` into a new lake version, atomically."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise IngestError(f"export folder {export_dir} does not exist")
    report = IngestReport()
    version = LakeVersion(lake_dir)
    try:
        with duckdb.connect(config={"memory_limit": memory_limit, "threads": threads,
                                    "temp_directory": str(version.path / "_spill")}) as db:
            for name in LOAD_ORDER:
                files = table_files(export_dir, name)
                if files:
                    report.tables[name] = _ingest_table(TABLES[name], files, version, pseudonymizer, db)
        shutil.rmtree(version.path / "_stage", ignore_errors=True)
        shutil.rmtree(version.path / "_spill", ignore_errors=True)
        version.commit()
    except BaseException:
        version.abort()
        raise
    return report


def table_files(export_dir: Path, name: str) -> list[Path]:
    folder = export_dir / name
    if folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".parquet"))
    return [p for p in (export_dir / f"{name}.csv", export_dir / f"{name}.parquet") if p.exists()]


def read_table_file(path: Path, table: str):
    """One whole export file as a pandas frame (CSV as text); for small files and tools."""
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path).to_pandas()
        import pandas as pd

        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pa.ArrowException, UnicodeDecodeError) as error:
        raise IngestError(f"{table}: cannot read {path.name}: {error}") from error


# --- one table ------------------------------------------------------------------------------

def _ingest_table(table: Table, files: list[Path], version: LakeVersion, pseudonymizer: Pseudonymizer,
                  db: duckdb.DuckDBPyConnection) -> TableReport:
    report = TableReport(table.name, [f.name for f in files])
    stage = version.path / "_stage" / table.name
    stage.mkdir(parents=True)
    quarantine_path = version.path / QUARANTINE / f"{table.name}.parquet"
    try:
        headers = {path: _header(path, table) for path in files}  # all checked before any row loads
        schema = _lake_schema(table).append(pa.field("_file", pa.int32())).append(pa.field("_row", pa.int64()))
        # Staged files live for one ingest: fast compression beats small files.
        with pq.ParquetWriter(stage / "good.parquet", schema, compression="lz4") as good, \
                pq.ParquetWriter(stage / "bad.parquet", QUARANTINE_SCHEMA) as bad:
            for file_index, path in enumerate(files):
                for batch, rows in _batches(path, table, headers[path], bad):
                    report.rows_read += batch.num_rows
                    accepted, refused = _check_batch(table, batch, rows, path.name, pseudonymizer)
                    good.write_table(accepted.append_column("_file", pa.array(
                        np.full(accepted.num_rows, file_index, dtype=np.int32))).select(schema.names).cast(schema))
                    bad.write_table(refused)
        _merge(table, files, stage, version, db, report, quarantine_path)
    except IngestError as error:
        report.error = str(error)
        report.rows_read = report.rows_loaded = report.rows_quarantined = 0
        quarantine_path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report


def _header(path: Path, table: Table) -> list[str]:
    """The file's column names, checked for every required column; nothing is loaded otherwise."""
    try:
        if path.suffix == ".parquet":
            names = pq.ParquetFile(path).schema_arrow.names
        else:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                names = next(csv.reader([handle.readline()]), [])
    except (OSError, ValueError, pa.ArrowException, UnicodeDecodeError) as error:
        raise IngestError(f"{table.name}: cannot read {path.name}: {error}") from error
    normalized = [str(name).strip().lower() for name in names]
    missing = [c for c in table.required if c not in normalized]
    if missing:
        raise IngestError(
            f"{table.name}: {path.name} has no column {', '.join(repr(c) for c in missing)} "
            f"(required by CONTRACT.md); nothing of {table.name} was loaded"
        )
    return names


def _batches(path: Path, table: Table, header: list[str], bad: pq.ParquetWriter) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """Batches of the contract columns (original names → contract names) and their row numbers
    (1 = first data row). Malformed CSV lines go straight to the quarantine."""
    wanted = {str(name): str(name).strip().lower() for name in header}
    wanted = {raw: name for raw, name in wanted.items() if name in {c.name for c in table.columns}}
    try:
        if path.suffix == ".parquet":
            next_row = 1
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=list(wanted)):
                rows = np.arange(next_row, next_row + batch.num_rows)
                next_row += batch.num_rows
                yield pa.Table.from_batches([batch]).rename_columns([wanted[n] for n in batch.schema.names]), rows
            return
        malformed: list[int] = []

        def skip(row) -> str:
            malformed.append(row.number - 1)  # physical line → data row (the header is line 1)
            bad.write_table(pa.table({
                "table": [table.name], "file": [path.name], "row": [row.number - 1], "column": [None],
                "value": [None], "rule": [f"malformed CSV line: {row.actual_columns} fields, expected {row.expected_columns}"],
            }, schema=QUARANTINE_SCHEMA))
            return "skip"

        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=32 << 20, use_threads=False, encoding="utf8"),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(
                column_types={raw: pa.string() for raw in header}, include_columns=list(wanted),
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
        next_row = 1
        for batch in reader:
            # Row numbers skip the malformed lines seen so far, so every good row keeps its own number.
            rows = _row_numbers(next_row, batch.num_rows, malformed)
            next_row = int(rows[-1]) + 1 if len(rows) else next_row
            yield pa.Table.from_batches([batch]).rename_columns([wanted[n] for n in batch.schema.names]), rows
    except (OSError, pa.ArrowException, UnicodeDecodeError) as error:
        raise IngestError(f"{table.name}: cannot read {path.name}: {error}") from error


def _row_numbers(start: int, count: int, skipped: list[int]) -> np.ndarray:
    if not skipped or skipped[-1] < start:
        return np.arange(start, start + count)
    candidates = np.arange(start, start + count + len(skipped))
    return candidates[~np.isin(candidates, skipped)][:count]


# --- checking cells -------------------------------------------------------------------------

def _check_batch(table: Table, batch: pa.Table, rows: np.ndarray, file_name: str, pseudonymizer: Pseudonymizer):
    """Typed good rows (pseudonymized, contract columns only) and one quarantine line per bad cell."""
    n = batch.num_rows
    broken = np.zeros(n, dtype=bool)
    lines = []
    columns = {}
    for column in table.columns:
        if column.personal:
            continue  # never parsed, never kept, never quarantined: dropped right here
        if column.name not in batch.column_names:
            columns[column.name] = pa.nulls(n, ARROW_TYPES[column.kind])
            continue
        raw = batch.column(column.name).combine_chunks()
        typed, problems = _parse(column, raw)
        for mask, rule in problems:
            if mask.any():
                broken |= mask
                lines.append((column, raw, mask, rule))
        columns[column.name] = typed
    for column in table.columns:
        if column.pseudonym and column.name in columns:
            columns[column.name] = pseudonymizer.array(column.pseudonym, columns[column.name])
    good = pa.table(columns).filter(pa.array(~broken)).append_column("_row", pa.array(rows[~broken]))
    refused = [
        pa.table({
            "table": [table.name] * int(mask.sum()),
            "file": [file_name] * int(mask.sum()),
            "row": pa.array(rows[mask]),
            "column": [column.name] * int(mask.sum()),
            "value": _quarantine_value(column, raw.filter(pa.array(mask)), pseudonymizer),
            "rule": [rule] * int(mask.sum()),
        }, schema=QUARANTINE_SCHEMA)
        for column, raw, mask, rule in lines
    ]
    refused = pa.concat_tables(refused) if refused else QUARANTINE_SCHEMA.empty_table()
    return good, refused


def _quarantine_value(column: Column, values: pa.Array, pseudonymizer: Pseudonymizer) -> pa.Array:
    text = values.cast(pa.string())
    return pseudonymizer.array(column.pseudonym, text) if column.pseudonym else text


def _parse(column: Column, raw: pa.Array) -> tuple[pa.Array, list[tuple[np.ndarray, str]]]:
    """Text or typed values → the column's type, with (mask, rule) for every broken rule."""
    target = ARROW_TYPES[column.kind]
    if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type) or pa.types.is_null(raw.type):
        text = pc.utf8_trim_whitespace(raw.cast(pa.string()))
        empty = _mask(pc.or_kleene(pc.is_null(text), pc.equal(text, "")))
        typed, unparsable, rule = _from_text(column, text)
    else:
        empty = _mask(pc.is_null(raw))
        typed, unparsable, rule = _from_typed(column, raw, target)
    problems = []
    if not column.nullable:
        problems.append((empty, "required value is empty"))
    unparsable &= ~empty
    problems.append((unparsable, rule))
    valid = ~empty & ~unparsable
    if column.low is not None:
        outside = _mask(pc.or_kleene(pc.less(typed, column.low), pc.greater(typed, column.high))) & valid
        unit = f" {column.unit}" if column.unit else ""
        problems.append((outside, f"out of range {column.low:g}-{column.high:g}{unit}"))
    if column.codes:
        unknown = ~_mask(pc.is_in(typed, value_set=pa.array(column.codes))) & valid
        problems.append((unknown, f"not one of {', '.join(column.codes)}"))
    return typed, problems


def _from_text(column: Column, text: pa.Array) -> tuple[pa.Array, np.ndarray, str]:
    none = pa.scalar(None, pa.string())
    if column.kind in ("int", "float"):
        numeric = pc.match_substring_regex(text, _NUMBER)
        values = pc.if_else(numeric, text, none).cast(pa.float64())
        if column.kind == "float":
            return values, ~_mask(numeric), "not a number"
        whole = pc.and_kleene(numeric, pc.equal(pc.floor(values), values))
        return pc.if_else(whole, values, pa.scalar(None, pa.float64())).cast(pa.int64()), ~_mask(whole), "not a whole number"
    if column.kind == "date":
        dates = pc.strptime(text, format="%Y-%m-%d", unit="us", error_is_null=True)
        # strptime rolls impossible days over (2024-02-30 → 03-01): only a round trip proves a day.
        real_day = pc.equal(pc.strftime(dates, format="%Y-%m-%d"), text)
        dates = pc.if_else(real_day, dates, pa.scalar(None, pa.timestamp("us")))
        return dates, ~_mask(real_day), "not an ISO 8601 date (YYYY-MM-DD)"
    if column.kind == "bool":
        lowered = pc.utf8_lower(text)
        truth = pc.is_in(lowered, value_set=pa.array(_TRUE))
        known = pc.or_kleene(truth, pc.is_in(lowered, value_set=pa.array(_FALSE)))
        return pc.if_else(known, truth, pa.scalar(None, pa.bool_())), ~_mask(known), "not true/false"
    if column.kind == "code":
        lowered = pc.utf8_lower(text)
        return pc.if_else(pc.equal(lowered, ""), none, lowered), np.zeros(len(text), dtype=bool), "not a code"
    return pc.if_else(pc.equal(text, ""), none, text), np.zeros(len(text), dtype=bool), "not text"


def _from_typed(column: Column, raw: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray, str]:
    """A typed Parquet column: cast what casts; what does not is a broken rule, not a crash."""
    if column.kind in ("str", "code"):
        text = raw.cast(pa.string())
        return _from_text(column, text)
    if column.kind == "date" and (pa.types.is_timestamp(raw.type) or pa.types.is_date(raw.type)):
        return raw.cast(pa.timestamp("us")), np.zeros(len(raw), dtype=bool), "not a date"
    if column.kind in ("int", "float") and (pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type)):
        values = raw.cast(pa.float64())
        if column.kind == "float":
            return values, np.zeros(len(raw), dtype=bool), "not a number"
        whole = pc.equal(pc.floor(values), values)
        ints = pc.if_else(whole, values, pa.scalar(None, pa.float64())).cast(pa.int64())
        return ints, ~_mask(whole) & ~_mask(pc.is_null(raw)), "not a whole number"
    if column.kind == "bool" and pa.types.is_boolean(raw.type):
        return raw, np.zeros(len(raw), dtype=bool), "not true/false"
    return _from_text(column, raw.cast(pa.string()))


def _mask(array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _lake_schema(table: Table) -> pa.Schema:
    return pa.schema([(c.name, ARROW_TYPES[c.kind]) for c in table.columns if not c.personal])


# --- keys, foreign keys and the merge with the lake (DuckDB, out of core) ------------------------

def _merge(table: Table, files: list[Path], stage: Path, version: LakeVersion, db, report: TableReport,
           quarantine_path: Path) -> None:
    columns = [c.name for c in table.columns if not c.personal]
    cols = ", ".join(_q(c) for c in columns)
    db.execute(f"CREATE OR REPLACE TEMP VIEW staged AS SELECT * FROM read_parquet('{stage / 'good.parquet'}')")
    refusals = []
    if table.key:
        # Candidates by a hash aggregate over one integer (cheap); exact ranking only on their rows (rare).
        key = ", ".join(_q(c) for c in table.key)
        refusals.append(
            f"SELECT _file, _row, {_q(table.key[0])}::VARCHAR AS value, '{table.key[0]}' AS col, "
            f"'duplicate key ({', '.join(table.key)})' AS rule FROM (SELECT *, row_number() OVER "
            f"(PARTITION BY {key} ORDER BY _file, _row) AS nth FROM staged WHERE hash({key}) IN "
            f"(SELECT h FROM (SELECT hash({key}) AS h FROM staged) GROUP BY h HAVING count(*) > 1)) WHERE nth > 1"
        )
    for column, (parent, parent_column) in table.foreign_keys.items():
        parent_path = version.table_path(parent) if version.table_path(parent).exists() else version.current_table(parent)
        known = (f"SELECT DISTINCT {_q(parent_column)} AS k FROM read_parquet('{parent_path}')" if parent_path
                 else "SELECT NULL::VARCHAR AS k WHERE false")
        refusals.append(
            f"SELECT _file, _row, {_q(column)}::VARCHAR AS value, '{column}' AS col, "
            f"'unknown {parent_column} (not in {parent})' AS rule FROM staged "
            f"ANTI JOIN ({known}) parent ON staged.{_q(column)} = parent.k WHERE {_q(column)} IS NOT NULL"
        )
    file_names = "[" + ", ".join(f"'{f.name}'" for f in files) + "]"
    refused_sql = " UNION ALL ".join(refusals) or "SELECT NULL::INT AS _file, NULL::BIGINT AS _row, NULL AS value, NULL AS col, NULL AS rule WHERE false"
    db.execute(f"CREATE OR REPLACE TEMP TABLE refused AS {refused_sql}")
    db.execute(
        f"COPY (SELECT '{table.name}' AS \"table\", {file_names}[_file + 1] AS file, _row AS row, col AS \"column\", "
        f"value, rule FROM refused UNION ALL SELECT * FROM read_parquet('{stage / 'bad.parquet'}') "
        f"ORDER BY file, row, \"column\") TO '{quarantine_path}' (FORMAT parquet)"
    )
    db.execute(
        f"CREATE OR REPLACE TEMP VIEW accepted AS SELECT {cols} FROM staged ANTI JOIN refused USING (_file, _row)"
    )
    stats = db.execute(
        f"SELECT count(*) AS rows, count(DISTINCT (\"row\", file)) FROM read_parquet('{quarantine_path}')"
    ).fetchone()
    report.rows_quarantined = int(stats[1])
    report.by_rule.update(dict(db.execute(
        f"SELECT rule, count(DISTINCT (file, \"row\")) FROM read_parquet('{quarantine_path}') GROUP BY rule"
    ).fetchall()))
    report.rows_loaded = int(db.execute("SELECT count(*) FROM accepted").fetchone()[0])

    target = version.table_path(table.name)
    old = version.current_table(table.name)
    # Rows ordered by their first key column (the student, for most tables): readers that go
    # student by student read neighbouring rows, and Parquet compresses them better.
    order = _q((table.key or table.replace_by or columns)[0])
    if old is None:
        db.execute(f"COPY (SELECT * FROM accepted ORDER BY {order}) TO '{target}' (FORMAT parquet)")
        return
    by = ", ".join(_q(c) for c in table.replace_by) if table.replace_by else None
    db.execute(f"CREATE OR REPLACE TEMP VIEW old AS SELECT {cols} FROM read_parquet('{old}')")
    if by:
        covered = f"SELECT * FROM old SEMI JOIN accepted USING ({by})"
        kept = f"SELECT * FROM old ANTI JOIN accepted USING ({by})"
    else:  # nothing identifies a row: a re-export replaces the whole table
        covered, kept = "SELECT * FROM old", "SELECT * FROM old WHERE false"
    changed = db.execute(f"SELECT count(*) FROM ({covered} EXCEPT ALL SELECT * FROM accepted)").fetchone()[0]
    covered_rows = db.execute(f"SELECT count(*) FROM ({covered})").fetchone()[0]
    report.rows_replaced = int(changed)
    if changed == 0 and covered_rows == report.rows_loaded:
        version.keep(table.name)  # the export says nothing new: the lake keeps the very same file
        return
    db.execute(
        f"COPY (SELECT * FROM ({kept} UNION ALL SELECT * FROM accepted) ORDER BY {order}) "
        f"TO '{target}' (FORMAT parquet)"
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
