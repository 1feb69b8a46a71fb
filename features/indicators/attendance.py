"""Attendance, term by term.

Family `student_attendance` (entity student; one row per student and term in lake `attendance`,
dated the term's end_date at 00:00 UTC):
    days_enrolled       int    school days the student was enrolled this term
    days_absent         int    days absent this term
    attendance_rate     float  1 - days_absent / days_enrolled (0-1; empty if 0 days enrolled;
                               an absence count above the days enrolled gives 0)
    rate_change         float  attendance_rate minus the previous term's (term t-1 itself, not an
                               older one); empty if the student has no rate for t-1
    attendance_rate_4t  float  1 - absent / enrolled days summed over the last 4 terms (t-3..t)

Built one term at a time from terms <= t only. A lake without `attendance` yields an empty file.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators.duck import (
    lake_table,
    load_terms,
    sql_list,
    sql_str,
    typed,
    window_terms,
    workspace,
    write_family,
    write_family_queries,
)
from features.indicators.family import TERM_TTL, IndicatorFamily

WINDOW_TERMS = 4


def _rate(absent: str, enrolled: str) -> str:
    return f"CASE WHEN {enrolled} > 0 THEN greatest(0.0, 1.0 - {absent} / {enrolled}) END"


def build_attendance(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_ATTENDANCE
    with workspace(out_path, family.name) as (con, scratch):
        source = lake_table(lake_dir, "attendance")
        terms = load_terms(con, lake_dir)
        if source is None or not terms:
            return write_family(family, [], out_path)
        parts = []
        for term in terms:
            recent = window_terms(terms, term, WINDOW_TERMS)
            previous = [t.term_id for t in recent if t.idx == term.idx - 1]
            this = sql_str(term.term_id)
            parts.append(typed(family, f"""
                WITH a AS (
                    SELECT student_id, term_id, sum(days_enrolled)::DOUBLE AS enrolled,
                           sum(days_absent)::DOUBLE AS absent
                    FROM read_parquet({source})
                    WHERE term_id IN {sql_list([t.term_id for t in recent])}
                      AND days_enrolled IS NOT NULL AND days_absent IS NOT NULL
                    GROUP BY student_id, term_id
                ), w AS (
                    SELECT student_id,
                           max(enrolled) FILTER (WHERE term_id = {this}) AS enrolled,
                           max(absent) FILTER (WHERE term_id = {this}) AS absent,
                           max(enrolled) FILTER (WHERE term_id IN {sql_list(previous)}) AS enrolled_prev,
                           max(absent) FILTER (WHERE term_id IN {sql_list(previous)}) AS absent_prev,
                           sum(enrolled) AS enrolled_4t, sum(absent) AS absent_4t
                    FROM a GROUP BY student_id
                    HAVING count(*) FILTER (WHERE term_id = {this}) > 0
                )
                SELECT student_id AS student_key, {term.end_sql} AS event_timestamp,
                       enrolled AS days_enrolled, absent AS days_absent,
                       {_rate('absent', 'enrolled')} AS attendance_rate,
                       {_rate('absent', 'enrolled')} - {_rate('absent_prev', 'enrolled_prev')} AS rate_change,
                       {_rate('absent_4t', 'enrolled_4t')} AS attendance_rate_4t
                FROM w
            """))
        return write_family_queries(con, family, parts, out_path)


STUDENT_ATTENDANCE = IndicatorFamily(
    name="student_attendance",
    entities=("student",),
    fields={
        "days_enrolled": "int", "days_absent": "int", "attendance_rate": "float", "rate_change": "float",
        "attendance_rate_4t": "float",
    },
    ttl=TERM_TTL,
    description="Attendance per term: days enrolled and absent, rate, change vs the previous term, 4-term rate.",
    build=build_attendance,
)

FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_ATTENDANCE,)
