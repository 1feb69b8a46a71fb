"""What the last ingest left: the lake version, each table's rows, and its quarantine in counts.

Read from the lake itself (`features.lake`): the version `lake` links to, the row count in each
table's Parquet footer, and the quarantine of that version grouped by table, column and rule.
Quarantined values are never shown, only how many rows broke which rule: a value may be a
mistyped identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from features.lake import QUARANTINE


@dataclass(frozen=True)
class QuarantineCount:
    table: str
    column: str
    rule: str
    rows: int


@dataclass(frozen=True)
class LakeTable:
    table: str
    rows: int
    rows_quarantined: int
    written_at: str


@dataclass(frozen=True)
class IngestSummary:
    lake_version: str | None
    tables: list[LakeTable]
    quarantine: list[QuarantineCount]


def ingest_summary(lake_dir: Path) -> IngestSummary:
    lake_dir = Path(lake_dir)
    if not lake_dir.exists():
        return IngestSummary(lake_version=None, tables=[], quarantine=[])
    version = lake_dir.resolve().name if lake_dir.is_symlink() else None
    quarantine = _quarantine_counts(lake_dir / QUARANTINE)
    quarantined_rows = _quarantined_rows(lake_dir / QUARANTINE)
    tables = []
    for path in sorted(lake_dir.glob("*.parquet")):
        tables.append(LakeTable(
            table=path.stem, rows=pq.ParquetFile(path).metadata.num_rows,
            rows_quarantined=quarantined_rows.get(path.stem, 0),
            written_at=datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")))
    return IngestSummary(lake_version=version, tables=tables, quarantine=quarantine)


def _quarantine_counts(folder: Path) -> list[QuarantineCount]:
    if not folder.is_dir():
        return []
    import duckdb

    counts = []
    with duckdb.connect() as db:
        for path in sorted(folder.glob("*.parquet")):
            if pq.ParquetFile(path).metadata.num_rows == 0:
                continue
            rows = db.execute(
                'SELECT "column", rule, count(DISTINCT (file, "row")) FROM read_parquet(?) '
                'GROUP BY ALL ORDER BY 3 DESC, 1, 2', [str(path)]).fetchall()
            counts.extend(QuarantineCount(path.stem, str(column), str(rule), int(n)) for column, rule, n in rows)
    return counts


def _quarantined_rows(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {}
    import duckdb

    totals = {}
    with duckdb.connect() as db:
        for path in sorted(folder.glob("*.parquet")):
            if pq.ParquetFile(path).metadata.num_rows:
                (n,) = db.execute('SELECT count(DISTINCT (file, "row")) FROM read_parquet(?)', [str(path)]).fetchone()
                totals[path.stem] = int(n)
    return totals
