"""What every dataset adapter shares: write contract tables, and check them against the declared rules.

`write_tables` puts the contract columns first, in the order `features.contract` declares them,
then any extra columns (ingest ignores extras; they are kept in the adapter's output for
traceability). Dates are written as ISO 8601 text, codes lower-case, identifiers as text.

`check_tables` applies the rules `features.contract.TABLES` declares (required columns, types,
empty cells, ranges, codes, duplicate keys, and foreign keys *within the tables given*) without
ingest. The tests use it beside a real ingest; it needs no key and no lake.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import TABLES

ISO = "%Y-%m-%d"


def days_after(start: pd.Series, days: pd.Series) -> pd.Series:
    """ISO dates `days` (whole days) after `start` (both Series); empty where either is missing."""
    start = pd.to_datetime(start)
    days = pd.to_numeric(days, errors="coerce")
    known = start.notna() & days.notna()
    result = pd.Series(None, index=days.index, dtype=object)
    offset = pd.to_timedelta(days[known].astype("int64"), unit="D")
    result[known] = (start[known] + offset).dt.strftime(ISO)
    return result


def birth_date_from_age(age: pd.Series, on: date) -> pd.Series:
    """Placeholder birth date for someone `age` whole years old on `on`: the middle of the
    possible range, i.e. `on` minus age minus half a year (clamped to a real calendar day)."""
    def one(a) -> str | None:
        if pd.isna(a):
            return None
        middle = pd.Timestamp(on) - pd.DateOffset(years=int(a), months=6)
        return middle.strftime(ISO)
    return age.map(one).astype(object)


def write_tables(out_dir: Path, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Write `<table>.parquet` for each table; returns rows written per table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, frame in tables.items():
        table = TABLES[name]
        missing = [c for c in table.required if c not in frame.columns]
        if missing:
            raise ValueError(f"adapter bug: {name} lacks required column(s) {', '.join(missing)}")
        declared = [c.name for c in table.columns if c.name in frame.columns]
        extras = [c for c in frame.columns if c not in declared]
        frame = frame[declared + extras].reset_index(drop=True)
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
        counts[name] = len(frame)
    return counts


def read_tables(out_dir: Path) -> dict[str, pd.DataFrame]:
    """The contract tables an adapter wrote into `out_dir`."""
    return {p.stem: pd.read_parquet(p) for p in sorted(Path(out_dir).glob("*.parquet")) if p.stem in TABLES}


def check_tables(tables: dict[str, pd.DataFrame]) -> list[str]:
    """Every way the given tables break `features.contract.TABLES`; empty when all rows are valid.

    Foreign keys are checked against the parent tables given here (an adapter must write every
    parent it references), so the result does not depend on what a lake already holds.
    """
    problems: list[str] = []
    for name, frame in tables.items():
        table = TABLES.get(name)
        if table is None:
            problems.append(f"{name}: not a contract table")
            continue
        for missing in (c for c in table.required if c not in frame.columns):
            problems.append(f"{name}: missing required column {missing}")
        for column in table.columns:
            if column.name not in frame.columns or column.personal:
                continue
            values = frame[column.name]
            text = values.astype("string").str.strip()
            empty = text.isna() | (text == "")
            if not column.nullable and empty.any():
                problems.append(f"{name}.{column.name}: {int(empty.sum())} empty")
            present = values[~empty]
            if column.kind in ("int", "float"):
                numbers = pd.to_numeric(present, errors="coerce")
                bad = numbers.isna() | ((numbers != np.floor(numbers)) if column.kind == "int" else False)
                if bad.any():
                    problems.append(f"{name}.{column.name}: {int(bad.sum())} not {column.kind}")
                if column.low is not None:
                    outside = (numbers < column.low) | (numbers > column.high)
                    if outside.any():
                        problems.append(f"{name}.{column.name}: {int(outside.sum())} outside "
                                        f"{column.low:g}-{column.high:g} (e.g. {numbers[outside].iloc[0]})")
            elif column.kind == "date":
                parsed = pd.to_datetime(present.astype(str), format=ISO, errors="coerce")
                if parsed.isna().any():
                    problems.append(f"{name}.{column.name}: {int(parsed.isna().sum())} not ISO dates")
            elif column.kind == "bool":
                if not present.astype(str).str.lower().isin(["true", "false", "1", "0", "yes", "no"]).all():
                    problems.append(f"{name}.{column.name}: values that are not true/false")
            elif column.kind == "code":
                codes = present.astype(str)
                if (codes != codes.str.lower()).any():
                    problems.append(f"{name}.{column.name}: codes not lower-case")
                if column.codes and not codes.isin(column.codes).all():
                    unknown = sorted(set(codes) - set(column.codes))[:5]
                    problems.append(f"{name}.{column.name}: unknown codes {unknown}")
        if table.key and all(k in frame.columns for k in table.key):
            duplicates = frame.duplicated(list(table.key)).sum()
            if duplicates:
                problems.append(f"{name}: {int(duplicates)} duplicate keys {table.key}")
        for column, (parent, parent_column) in table.foreign_keys.items():
            if column not in frame.columns:
                continue
            known = tables[parent][parent_column] if parent in tables else pd.Series([], dtype=object)
            values = frame[column].dropna()
            unknown = ~values.isin(set(known))
            if unknown.any():
                problems.append(f"{name}.{column}: {int(unknown.sum())} not in {parent}.{parent_column}")
    return problems


__all__ = ["ISO", "birth_date_from_age", "check_tables", "days_after", "read_tables", "write_tables"]
