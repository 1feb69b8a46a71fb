"""Aesthetic (美) and labor (劳) education: activity records and arts, music, labor and PE grades.

Family `student_aesthetic_labor` (entity student; one row per student and term with an activity
record or a grade in one of GRADE_SUBJECTS, dated the term's end_date at 00:00 UTC), from lake
`activity_records` and `grades`:
    arts_hours    float  arts practice hours this term (aesthetic / arts_practice_hours)
    performances  float  performances and exhibitions this term (aesthetic / performance)
    labor_hours   float  labor hours this term (labor / labor_hours)
    labor_skill   float  labor-skill rating this term, 1-5 (labor / labor_skill; mean if several);
                         empty if not rated this term (schools usually rate once a school year)
    music_share   float  share of full mark in music (0-1), mean of midterm and final; empty if not graded
    art_share     float  the same in art (美术)
    labor_share   float  the same in labor (劳动)
    pe_share      float  the same in PE (体育与健康), for the 体 domain

arts_hours, performances and labor_hours are 0 when the student has activity records this term
but none of that kind, and empty when the student has none at all this term. Activity kinds
other than the four above are ignored. Built one term at a time from that term's rows only.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators.duck import (
    exams_by_term,
    lake_table,
    load_terms,
    sql_str,
    term_exams,
    typed,
    workspace,
    write_family,
    write_family_queries,
)
from features.indicators.family import TERM_TTL, IndicatorFamily

ACTIVITY_KINDS = {  # field -> (domain, kind, aggregate)
    "arts_hours": ("aesthetic", "arts_practice_hours", "sum"),
    "performances": ("aesthetic", "performance", "sum"),
    "labor_hours": ("labor", "labor_hours", "sum"),
    "labor_skill": ("labor", "labor_skill", "avg"),
}
COUNTED = ("arts_hours", "performances", "labor_hours")  # 0 when absent among a term's records
GRADE_SUBJECTS = {"music_share": "music", "art_share": "art", "labor_share": "labor", "pe_share": "pe"}


def build_aesthetic_labor(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_AESTHETIC_LABOR
    with workspace(out_path, family.name) as (con, scratch):
        activity, grades = lake_table(lake_dir, "activity_records"), lake_table(lake_dir, "grades")
        terms = load_terms(con, lake_dir)
        if (activity is None and grades is None) or not terms:
            return write_family(family, [], out_path)
        exams = (exams_by_term(con, grades, scratch / "exams", tuple(GRADE_SUBJECTS.values()))
                 if grades is not None else None)
        parts = []
        for term in terms:
            this = sql_str(term.term_id)
            if activity is not None:
                aggregates = ", ".join(
                    f"{agg}(value) FILTER (WHERE domain = '{domain}' AND kind = '{kind}') AS {name}"
                    for name, (domain, kind, agg) in ACTIVITY_KINDS.items())
                activity_sql = f"""
                    SELECT student_id, {aggregates} FROM read_parquet({activity})
                    WHERE term_id = {this} AND value IS NOT NULL GROUP BY student_id"""
            else:
                nulls = ", ".join(f"NULL::DOUBLE AS {name}" for name in ACTIVITY_KINDS)
                activity_sql = f"SELECT NULL::VARCHAR AS student_id, {nulls} WHERE false"
            if exams is not None:
                pivot = ", ".join(f"max(share) FILTER (WHERE subject = '{subject}') AS {name}"
                                  for name, subject in GRADE_SUBJECTS.items())
                grades_sql = f"""
                    SELECT student_id, {pivot} FROM (
                        SELECT student_id, subject, avg(share) AS share FROM {term_exams(exams, term)}
                        GROUP BY student_id, subject)
                    GROUP BY student_id"""
            else:
                nulls = ", ".join(f"NULL::DOUBLE AS {name}" for name in GRADE_SUBJECTS)
                grades_sql = f"SELECT NULL::VARCHAR AS student_id, {nulls} WHERE false"
            known = "a.student_id IS NOT NULL"
            activity_columns = ", ".join(
                f"CASE WHEN {known} THEN coalesce(a.{name}, 0) END AS {name}" if name in COUNTED else f"a.{name}"
                for name in ACTIVITY_KINDS)
            grade_columns = ", ".join(f"g.{name}" for name in GRADE_SUBJECTS)
            parts.append(typed(family, f"""
                WITH a AS ({activity_sql}), g AS ({grades_sql}),
                k AS (SELECT student_id FROM a UNION SELECT student_id FROM g)
                SELECT k.student_id AS student_key, {term.end_sql} AS event_timestamp,
                       {activity_columns}, {grade_columns}
                FROM k LEFT JOIN a ON a.student_id = k.student_id LEFT JOIN g ON g.student_id = k.student_id
            """))
        return write_family_queries(con, family, parts, out_path)


STUDENT_AESTHETIC_LABOR = IndicatorFamily(
    name="student_aesthetic_labor",
    entities=("student",),
    fields={**{name: "float" for name in ACTIVITY_KINDS}, **{name: "float" for name in GRADE_SUBJECTS}},
    ttl=TERM_TTL,
    description="美/劳 per term: arts practice hours, performances, labor hours and skill, "
                "music, art, labor and PE shares of full mark.",
    build=build_aesthetic_labor,
)

FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_AESTHETIC_LABOR,)
