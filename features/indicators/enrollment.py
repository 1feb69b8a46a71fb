"""Where a student is enrolled each school year: the scope every role check reads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from features.indicators.duck import FamilyWriter, duck_session, register_lake, spill_dir
from features.indicators.family import IndicatorFamily

FIELDS = {"school_year": "int", "class_id": "str", "school_id": "str", "grade": "int"}


def build_enrollment(lake_dir: Path, out_path: Path) -> int:
    """One row per student and school year, true from September 1st of that year.

    Through the families' shared plumbing (bounded memory, exact schema, atomic write); a lake
    without memberships or classes gives an empty file with the schema.
    """
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(STUDENT_ENROLLMENT, out_path) as out:
        register_lake(con, lake_dir, ["class_memberships", "classes"])
        out.add_query(con, """
            SELECT m.student_id AS student_key,
                   make_timestamptz(m.school_year, 9, 1, 0, 0, 0, 'UTC') AS event_timestamp,
                   m.school_year, m.class_id, c.school_id, c.grade
            FROM class_memberships m JOIN classes c USING (class_id)
            ORDER BY student_key, event_timestamp
        """)
    return out.rows


STUDENT_ENROLLMENT = IndicatorFamily(
    name="student_enrollment",
    entities=("student",),
    fields=FIELDS,
    ttl=timedelta(days=366),
    description="The class and school a student belongs to this school year (role scopes read it).",
    build=build_enrollment,
)
FAMILIES = (STUDENT_ENROLLMENT,)
