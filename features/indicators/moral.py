"""Moral education (德): conduct records and the moral/political subject, term by term.

Family `student_moral` (entity student; one row per student and term with a conduct record or a
moral-subject grade, dated the term's end_date at 00:00 UTC), from lake `conduct_records` and
`grades`:
    volunteer_hours    float  volunteer service hours recorded this term
    honors             float  honors (三好学生, commendations ...) this term
    discipline_events  float  discipline records this term
    class_duty         float  class duty (值日) recorded this term, as exported (days)
    discipline_4t      float  discipline records over the last 4 terms up to this one (t-3..t)
    moral_share        float  share of full mark (0-1) in the moral/political subjects
                              (MORAL_SUBJECTS: 道德与法治 / 思想政治), mean of midterm and final,
                              averaged over those graded this term; empty if none

The four conduct counts are 0 when the student has conduct records this term but none of that
kind (records list what happened), and empty when the student has no conduct record at all this
term (nothing is known). A lake without `conduct_records` (or `grades`) still gets the other half.
Built one term at a time from terms <= t only.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators.duck import (
    exams_by_term,
    lake_table,
    load_terms,
    sql_list,
    sql_str,
    term_exams,
    typed,
    window_terms,
    workspace,
    write_family,
    write_family_queries,
)
from features.indicators.family import TERM_TTL, IndicatorFamily

MORAL_SUBJECTS = ("politics", "morality")  # 思想政治 / 道德与法治 (the contract's code is politics)
CONDUCT_KINDS = {  # field -> conduct_records.kind
    "volunteer_hours": "volunteer_hours", "honors": "honor", "discipline_events": "discipline",
    "class_duty": "class_duty",
}
WINDOW_TERMS = 4


def build_moral(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_MORAL
    with workspace(out_path, family.name) as (con, scratch):
        conduct, grades = lake_table(lake_dir, "conduct_records"), lake_table(lake_dir, "grades")
        terms = load_terms(con, lake_dir)
        if (conduct is None and grades is None) or not terms:
            return write_family(family, [], out_path)
        exams = exams_by_term(con, grades, scratch / "exams", MORAL_SUBJECTS) if grades is not None else None
        parts = []
        for term in terms:
            this = sql_str(term.term_id)
            recent = sql_list([t.term_id for t in window_terms(terms, term, WINDOW_TERMS)])
            if conduct is not None:
                sums = ", ".join(f"sum(value) FILTER (WHERE kind = '{kind}') AS {name}"
                                 for name, kind in CONDUCT_KINDS.items())
                conduct_sql = f"""
                    SELECT student_id, {sums} FROM read_parquet({conduct})
                    WHERE term_id = {this} AND value IS NOT NULL GROUP BY student_id"""
                recent_sql = f"""
                    SELECT student_id, sum(value) AS discipline_4t FROM read_parquet({conduct})
                    WHERE term_id IN {recent} AND kind = 'discipline' AND value IS NOT NULL
                    GROUP BY student_id"""
            else:
                nulls = ", ".join(f"NULL::DOUBLE AS {name}" for name in CONDUCT_KINDS)
                conduct_sql = f"SELECT NULL::VARCHAR AS student_id, {nulls} WHERE false"
                recent_sql = "SELECT NULL::VARCHAR AS student_id, NULL::DOUBLE AS discipline_4t WHERE false"
            if exams is not None:
                grades_sql = f"""
                    SELECT student_id, avg(share) AS moral_share FROM (
                        SELECT student_id, subject, avg(share) AS share FROM {term_exams(exams, term)}
                        GROUP BY student_id, subject)
                    GROUP BY student_id"""
            else:
                grades_sql = "SELECT NULL::VARCHAR AS student_id, NULL::DOUBLE AS moral_share WHERE false"
            known = "c.student_id IS NOT NULL"
            counts = ", ".join(f"CASE WHEN {known} THEN coalesce(c.{name}, 0) END AS {name}"
                               for name in CONDUCT_KINDS)
            parts.append(typed(family, f"""
                WITH c AS ({conduct_sql}), r AS ({recent_sql}), g AS ({grades_sql}),
                k AS (SELECT student_id FROM c UNION SELECT student_id FROM g)
                SELECT k.student_id AS student_key, {term.end_sql} AS event_timestamp, {counts},
                       CASE WHEN {known} THEN coalesce(r.discipline_4t, 0) END AS discipline_4t,
                       g.moral_share
                FROM k LEFT JOIN c ON c.student_id = k.student_id
                       LEFT JOIN r ON r.student_id = k.student_id LEFT JOIN g ON g.student_id = k.student_id
            """))
        return write_family_queries(con, family, parts, out_path)


STUDENT_MORAL = IndicatorFamily(
    name="student_moral",
    entities=("student",),
    fields={**{name: "float" for name in CONDUCT_KINDS}, "discipline_4t": "float", "moral_share": "float"},
    ttl=TERM_TTL,
    description="德 per term: volunteer hours, honors, discipline (this term and last 4 terms), class duty, "
                "moral/political subject share of full mark.",
    build=build_moral,
)

FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_MORAL,)
