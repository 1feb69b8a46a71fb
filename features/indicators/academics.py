"""Academics (智): each subject's result term by term, and the student's whole set of subjects.

Computed in DuckDB over the lake (`<lake>/<table>.parquet`, identifiers already pseudonyms), with
memory bounded by a term or a bucket of students, never by the city:
1. one pass over `grades` splits each exam's share of full mark into one folder per term (the
   lake is sorted by student, so a per-term filter could not skip anything);
2. term by term, city-wide: the subject share, then z and percentile within (grade, subject);
3. bucket of students by bucket: each career's slope and volatility with a window over the
   terms t-3..t (RANGE frame on the term index), so a value dated term t reads terms <= t only
   and a point-in-time join never sees the future.
`event_timestamp` is the term's `end_date` at 00:00 UTC: a term's results are known when it ends.
The output is written term by term (row groups in term order).

Family `student_subject_term` (entities student, subject; one row per student, subject, term):
    grade          int    the student's grade (1-12) in the term's school year (class_memberships
                          joined with classes); empty if the student has no class that year
    share          float  score as a share of full mark, 0-1: the mean of the midterm and final
                          shares (the one exam sat if only one was); a score above its full mark
                          counts as 1. Mean rather than final only: the midterm is half the
                          term's evidence and the mean halves exam-day noise
    z              float  standard score of `share` among all students of the same grade, term and
                          subject city-wide (population SD: the city is a census, not a sample;
                          0 when everyone in the group has the same share; empty without a grade)
    pct            float  percentile rank 0-100 in the same group: 100 * (rank - 1) / (n - 1),
                          tied shares get the lowest rank, a group of one gets 0
    slope_4t       float  least-squares slope of `share` per term over the last 4 terms up to and
                          including this one (terms t-3..t in which the subject was graded; needs
                          2); -0.05 = losing 5 % of full mark a term
    volatility_4t  float  sample SD of `share` over the same window (needs 2 terms)
    failed         int    1 if share < 0.6 (below 60 % of full mark, the pass line), else 0

Family `student_academics` (entity student; one row per student and term), over the student's
ACADEMIC subjects that term: every subject except NON_ACADEMIC_SUBJECTS (music, art, pe, labor),
which are scored under 美, 体 and 劳 instead:
    grade            int    as above
    subjects         int    academic subjects graded this term
    mean_share       float  mean `share` over them (0-1)
    mean_z           float  mean `z` over them
    imbalance_sd     float  偏科: sample SD of `z` across the subjects (needs 2 with a z)
    imbalance_range  float  偏科: best z minus worst z (needs 2 with a z)
    failed_subjects  int    subjects with `failed` = 1
    trend            float  mean `slope_4t` over the subjects that have one

`student_academics` is aggregated from `student_subject_term`: it reads the sibling Parquet in the
same output folder when it is newer than every lake table, and otherwise builds it in a scratch
folder first (see `sibling`), so it is correct in any order and fastest after its sibling.

The helpers below (workspace, terms, typed COPY, writing a family's exact Arrow schema) are shared
by every student family module in this package.
"""

from __future__ import annotations

import math
from pathlib import Path

from features.indicators.duck import (
    copy,
    exams_by_term,
    files_sql,
    lake_table,
    load_grade_of,
    load_terms,
    sibling,
    sql_list,
    sql_str,
    term_exams,
    typed,
    workspace,
    write_family,
)
from features.indicators.family import TERM_TTL, IndicatorFamily

WINDOW_TERMS = 4  # slope_4t and volatility_4t: terms t-3..t
# Student-subject-term rows per chunk of students whose careers are windowed together (memory bound).
ROWS_PER_BUCKET = 12_000_000
FAIL_SHARE = 0.6  # below 60 % of full mark is a fail
_EPS = 1e-9  # a mean of two shares can land a hair off 0.6
NON_ACADEMIC_SUBJECTS = ("music", "art", "pe", "labor")



def build_subject_terms(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_SUBJECT_TERM
    with workspace(out_path, family.name) as (con, scratch):
        grades = lake_table(lake_dir, "grades")
        terms = load_terms(con, lake_dir)
        if grades is None or not terms:
            return write_family(family, [], out_path)
        load_grade_of(con, lake_dir)
        exams = exams_by_term(con, grades, scratch / "exams")
        (exam_rows,) = con.execute(f"SELECT count(*) FROM read_parquet({grades})").fetchall()[0]
        buckets = max(1, math.ceil(exam_rows / 2 / ROWS_PER_BUCKET))  # ~2 exams per subject and term
        (scratch / "shares").mkdir()
        (scratch / "parts").mkdir()
        # 1. Term by term across the city: share, then z and percentile within (grade, subject).
        shares = []
        for term in terms:
            shares.append(copy(con, f"""
                WITH s AS (
                    SELECT e.student_id, e.subject, avg(e.share) AS share, any_value(g.grade) AS grade
                    FROM {term_exams(exams, term)} e LEFT JOIN grade_of g
                      ON g.student_id = e.student_id AND g.school_year = {term.school_year}
                    GROUP BY e.student_id, e.subject
                )
                SELECT student_id, subject, {term.idx} AS term_idx, grade, share,
                       CASE WHEN grade IS NOT NULL THEN coalesce(
                           (share - avg(share) OVER w) / nullif(stddev_pop(share) OVER w, 0), 0.0) END AS z,
                       CASE WHEN grade IS NOT NULL THEN 100.0 * percent_rank() OVER (w ORDER BY share) END AS pct
                FROM s WINDOW w AS (PARTITION BY grade, subject)
            """, scratch / "shares" / f"t{term.idx}.parquet"))
        # 2. Students bucket by bucket: each career's slope and volatility over the terms t-3..t
        #    (a RANGE frame on the term index: earlier terms only, a gap is not filled by an older term).
        for bucket in range(buckets):
            careers = typed(family, f"""
                SELECT s.student_id AS student_key, s.subject, t.end_ts AS event_timestamp, s.term_idx,
                       s.grade, s.share, s.z, s.pct,
                       regr_slope(s.share, s.term_idx) OVER w AS slope_4t,
                       stddev_samp(s.share) OVER w AS volatility_4t,
                       CASE WHEN s.share < {FAIL_SHARE} - {_EPS} THEN 1 ELSE 0 END AS failed
                FROM read_parquet({files_sql(shares)}) s JOIN terms t ON t.idx = s.term_idx
                WHERE hash(s.student_id) % {buckets} = {bucket}
                WINDOW w AS (PARTITION BY s.student_id, s.subject ORDER BY s.term_idx
                             RANGE BETWEEN {WINDOW_TERMS - 1} PRECEDING AND CURRENT ROW)
            """, extra=("term_idx",))
            target = sql_str(str(scratch / "parts" / f"b{bucket}"))
            con.execute(f"COPY ({careers}) TO {target} (FORMAT parquet, PARTITION_BY (term_idx))")
        # Written term by term, so a reader filtering on one term skips all but a group or two.
        parts = sorted((scratch / "parts").glob("b*/term_idx=*/*.parquet"),
                       key=lambda p: (int(p.parent.name.split("=")[1]), int(p.parent.parent.name[1:]), p.name))
        return write_family(family, parts, out_path)


# ============================================================================================
# student_academics
# ============================================================================================


def build_academics(lake_dir: Path, out_path: Path) -> int:
    family = STUDENT_ACADEMICS
    with workspace(out_path, family.name) as (con, scratch):
        terms = load_terms(con, lake_dir)
        if not terms or lake_table(lake_dir, "grades") is None:
            return write_family(family, [], out_path)
        source = sql_str(str(sibling(lake_dir, Path(out_path).parent, STUDENT_SUBJECT_TERM, scratch)))
        parts = []
        for term in terms:
            parts.append(copy(con, typed(family, f"""
                SELECT student_key, {term.end_sql} AS event_timestamp,
                       any_value(grade) AS grade, count(*) AS subjects,
                       avg(share) AS mean_share, avg(z) AS mean_z,
                       CASE WHEN count(z) >= 2 THEN stddev_samp(z) END AS imbalance_sd,
                       CASE WHEN count(z) >= 2 THEN max(z) - min(z) END AS imbalance_range,
                       sum(failed) AS failed_subjects, avg(slope_4t) AS trend
                FROM read_parquet({source})
                WHERE event_timestamp = {term.end_sql}::TIMESTAMPTZ
                  AND subject NOT IN {sql_list(NON_ACADEMIC_SUBJECTS)}
                GROUP BY student_key
            """), scratch / f"part-{term.idx}.parquet"))
        return write_family(family, parts, out_path)


STUDENT_SUBJECT_TERM = IndicatorFamily(
    name="student_subject_term",
    entities=("student", "subject"),
    fields={
        "grade": "int", "share": "float", "z": "float", "pct": "float",
        "slope_4t": "float", "volatility_4t": "float", "failed": "int",
    },
    ttl=TERM_TTL,
    description="Each subject's term result: share of full mark, city z and percentile within grade, "
                "4-term slope and volatility, failed.",
    build=build_subject_terms,
    online=False,  # read by the growth model offline; the portrait shows it through student_academics
)

STUDENT_ACADEMICS = IndicatorFamily(
    name="student_academics",
    entities=("student",),
    fields={
        "grade": "int", "subjects": "int", "mean_share": "float", "mean_z": "float",
        "imbalance_sd": "float", "imbalance_range": "float", "failed_subjects": "int", "trend": "float",
    },
    ttl=TERM_TTL,
    description="智 per term over the academic subjects: mean share and z, subject imbalance (偏科), "
                "failed subjects, trend. Runs after student_subject_term (reads its output).",
    build=build_academics,
    reads=("student_subject_term",),
)

# student_subject_term first: student_academics reads its output.
FAMILIES: tuple[IndicatorFamily, ...] = (STUDENT_SUBJECT_TERM, STUDENT_ACADEMICS)
