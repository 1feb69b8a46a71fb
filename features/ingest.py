"""Ingest: an export folder (CONTRACT.md) → validated, pseudonymized Parquet in the lake.

For each table: read → check the required columns (a missing one stops that table, loads
nothing of it) → check every cell against its declared rule → drop duplicate keys and rows whose
foreign key points at nothing → replace identifiers with keyed pseudonyms, drop names and
national ids → write the table atomically. Every rejected row goes to the quarantine with the
file, row, column, value (pseudonymized where it is an identifier) and the rule it broke.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import LOAD_ORDER, TABLES, Table
from features.lake import write_parquet
from privacy.pseudonyms import Pseudonymizer

QUARANTINE_COLUMNS = ["table", "file", "row", "column", "value", "rule"]


class IngestError(ValueError):
    """A table cannot be loaded at all (unreadable file, missing required column)."""


@dataclass
class TableReport:
    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0
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
                "rows_quarantined": t.rows_quarantined, "by_rule": dict(t.by_rule), "error": t.error,
            }
            for name, t in self.tables.items()
        }

    def render(self) -> str:
        lines = [f"{'table':<22}{'read':>9}{'loaded':>9}{'quarantined':>13}  rules broken"]
        for t in self.tables.values():
            rules = ", ".join(f"{rule}: {count}" for rule, count in t.by_rule.most_common())
            if t.error:
                rules = f"ERROR {t.error}"
            lines.append(f"{t.table:<22}{t.rows_read:>9}{t.rows_loaded:>9}{t.rows_quarantined:>13}  {rules}")
        return "\n".join(lines)


def ingest(export_dir: Path, *, lake_dir: Path, quarantine_dir: Path, pseudonymizer: Pseudonymizer) -> IngestReport:
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise IngestError(f"export folder {export_dir} does not exist")
    lake_dir.mkdir(parents=True, exist_ok=True)
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    report = IngestReport()
    for name in LOAD_ORDER:
        files = _table_files(export_dir, name)
        if not files:
            continue
        table_report = report.tables.setdefault(name, TableReport(name, [f.name for f in files]))
        try:
            rows, quarantine, rows_read = _load_table(TABLES[name], files, lake_dir, pseudonymizer)
        except IngestError as error:
            table_report.error = str(error)
            continue
        table_report.rows_read = rows_read
        table_report.rows_loaded = len(rows)
        table_report.rows_quarantined = quarantine["row_id"].nunique()
        table_report.by_rule.update(quarantine.drop_duplicates(["row_id", "rule"])["rule"])
        write_parquet(rows, lake_dir / f"{name}.parquet")
        write_parquet(quarantine.drop(columns="row_id"), quarantine_dir / f"{name}.parquet")
    return report


def read_table_file(path: Path, table: str) -> pd.DataFrame:
    """One export file as a frame of strings (CSV) or typed columns (Parquet)."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        # utf-8-sig accepts UTF-8 with or without a BOM; all cells as text, checked below.
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pa.ArrowException, UnicodeDecodeError) as error:
        raise IngestError(f"{table}: cannot read {path.name}: {error}") from error


def _table_files(export_dir: Path, name: str) -> list[Path]:
    folder = export_dir / name
    if folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".parquet"))
    return [p for p in (export_dir / f"{name}.csv", export_dir / f"{name}.parquet") if p.exists()]


def _load_table(table: Table, files: list[Path], lake_dir: Path, pseudonymizer: Pseudonymizer):
    frames, problems, rows_read = [], [], 0
    for path in files:
        raw = read_table_file(path, table.name)
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        missing = [c for c in table.required if c not in raw.columns]
        if missing:
            raise IngestError(
                f"{table.name}: {path.name} has no column {', '.join(repr(c) for c in missing)} "
                f"(required by CONTRACT.md); nothing of {table.name} was loaded"
            )
        rows_read += len(raw)
        clean, bad = _check_cells(table, raw)
        clean.insert(0, "row_id", [f"{path.name}:{i}" for i in clean.index])
        bad.insert(0, "file", path.name)
        frames.append(clean)
        problems.append(bad)
    rows = pd.concat(frames, ignore_index=True)
    quarantine = pd.concat(problems, ignore_index=True)

    # Keep only contract columns; personal data never goes further than this function.
    keep = ["row_id"] + [c.name for c in table.columns if not c.personal and c.name in rows.columns]
    rows = rows[keep]
    for column in table.columns:
        if column.pseudonym and column.name in rows.columns:
            rows[column.name] = pseudonymizer.series(column.pseudonym, rows[column.name])

    rejected = []
    if table.key:
        duplicate = rows.duplicated(list(table.key), keep="first")
        rejected.append(_rows_breaking(rows[duplicate], table.key[0], f"duplicate key ({', '.join(table.key)})"))
        rows = rows[~duplicate]
    for column, (parent, parent_column) in table.foreign_keys.items():
        known = _known_keys(lake_dir, parent, parent_column)
        unknown = ~rows[column].isin(known)
        rejected.append(_rows_breaking(rows[unknown], column, f"unknown {parent_column} (not in {parent})"))
        rows = rows[~unknown]

    quarantine = _pseudonymize_quarantine(table, quarantine, pseudonymizer)
    quarantine = pd.concat([quarantine, *rejected], ignore_index=True)
    if len(quarantine):
        quarantine["row"] = quarantine["row"].astype("int64")  # 1 = the first data row of the file
        quarantine["row_id"] = quarantine["file"] + ":" + quarantine["row"].astype(str)
    else:
        quarantine = pd.DataFrame(columns=QUARANTINE_COLUMNS + ["row_id"])
    quarantine["table"] = table.name
    return rows.drop(columns="row_id").reset_index(drop=True), quarantine[QUARANTINE_COLUMNS + ["row_id"]], rows_read


def _check_cells(table: Table, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse every contract column; return typed good rows and one quarantine line per bad cell."""
    typed = pd.DataFrame(index=raw.index)
    bad_cells = []
    for column in table.columns:
        if column.name not in raw.columns:
            continue
        values = raw[column.name]
        text = values.astype("string").str.strip()
        empty = text.isna() | (text == "")
        parsed, rule = _parse(column, text)
        broken = pd.Series(False, index=raw.index)
        if not column.nullable:
            broken |= empty
            bad_cells.append((empty, column.name, "required value is empty"))
        invalid = ~empty & parsed.isna()
        bad_cells.append((invalid, column.name, rule))
        broken |= invalid
        if column.low is not None:
            numbers = parsed.astype("float64")
            out = ~empty & ~invalid & ((numbers < column.low) | (numbers > column.high))
            bad_cells.append((out, column.name, f"out of range {column.low:g}-{column.high:g}{(' ' + column.unit) if column.unit else ''}"))
        if column.codes:
            unknown = ~empty & ~invalid & ~parsed.isin(column.codes)
            bad_cells.append((unknown, column.name, f"not one of {', '.join(column.codes)}"))
        typed[column.name] = parsed

    lines, bad_rows = [], pd.Series(False, index=raw.index)
    for mask, name, rule in bad_cells:
        mask = mask.fillna(False).astype(bool)
        bad_rows |= mask
        for index in raw.index[mask]:
            lines.append({"row": int(index) + 1, "column": name, "value": raw.at[index, name], "rule": rule})
    quarantine = pd.DataFrame(lines, columns=["row", "column", "value", "rule"])
    quarantine["value"] = quarantine["value"].astype("string")
    return typed[~bad_rows], quarantine


def _parse(column, text: pd.Series) -> tuple[pd.Series, str]:
    """Text → typed values (NaN/NA where unparseable) and the rule an unparseable cell breaks."""
    if column.kind == "int":
        numbers = pd.to_numeric(text, errors="coerce")
        whole = numbers.where(numbers == np.floor(numbers))
        return whole.astype("Int64"), "not a whole number"
    if column.kind == "float":
        return pd.to_numeric(text, errors="coerce").astype("float64"), "not a number"
    if column.kind == "date":
        dates = pd.to_datetime(text, errors="coerce", format="ISO8601")
        return dates.astype("datetime64[us]"), "not an ISO 8601 date"
    if column.kind == "bool":
        lowered = text.str.lower()
        mapping = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        return lowered.map(mapping).astype("boolean"), "not true/false"
    if column.kind == "code":
        return text.str.lower().replace("", pd.NA), "not a code"
    return text.replace("", pd.NA), "not text"


def _rows_breaking(rows: pd.DataFrame, column: str, rule: str) -> pd.DataFrame:
    file_and_row = rows["row_id"].str.rsplit(":", n=1, expand=True) if len(rows) else None
    return pd.DataFrame({
        "file": file_and_row[0] if file_and_row is not None else [],
        "row": (file_and_row[1].astype(int) + 1) if file_and_row is not None else [],
        "column": column,
        "value": rows[column].astype("string"),
        "rule": rule,
    })


def _pseudonymize_quarantine(table: Table, quarantine: pd.DataFrame, pseudonymizer: Pseudonymizer) -> pd.DataFrame:
    """Quarantined identifiers are pseudonymized too: the quarantine is data, not a leak."""
    for column in table.columns:
        hit = quarantine["column"] == column.name
        if column.pseudonym and hit.any():
            quarantine.loc[hit, "value"] = pseudonymizer.series(column.pseudonym, quarantine.loc[hit, "value"])
        if column.personal and hit.any():
            quarantine.loc[hit, "value"] = pd.NA
    return quarantine


def _known_keys(lake_dir: Path, table: str, column: str) -> pd.Series:
    path = lake_dir / f"{table}.parquet"
    if not path.exists():
        return pd.Series([], dtype="string")  # no parent loaded: every reference is unknown
    return pd.read_parquet(path, columns=[column])[column]
