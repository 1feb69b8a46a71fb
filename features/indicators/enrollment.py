"""Where a student is enrolled each school year: the scope every role check reads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb

from features.indicators.family import IndicatorFamily

FIELDS = {"school_year": "int", "class_id": "str", "school_id": "str", "grade": "int"}


def build_enrollment(lake_dir: Path, out_path: Path) -> int:
    """One row per student and school year, true from September 1st of that year."""
    with duckdb.connect() as db:
        db.execute(f"""
            COPY (
                SELECT m.student_id AS student_key,
                       make_timestamptz(m.school_year, 9, 1, 0, 0, 0, 'UTC') AS event_timestamp,
                       m.school_year, m.class_id, c.school_id, c.grade
                FROM read_parquet('{lake_dir / "class_memberships.parquet"}') m
                JOIN read_parquet('{lake_dir / "classes.parquet"}') c USING (class_id)
                ORDER BY student_key, event_timestamp
            ) TO '{out_path}' (FORMAT parquet)
        """)
        return db.execute(f"SELECT count(*) FROM read_parquet('{out_path}')").fetchone()[0]


FAMILIES = (
    IndicatorFamily(
        name="student_enrollment",
        entities=("student",),
        fields=FIELDS,
        ttl=timedelta(days=366),
        description="The class and school a student belongs to this school year (role scopes read it).",
        build=build_enrollment,
    ),
)
