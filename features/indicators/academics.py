"""Academics (智): each subject's result term by term, and the student's whole set of subjects.

Computed in DuckDB over the lake (`<lake>/<table>.parquet`, identifiers already pseudonyms), with
memory bounded by a term or a bucket of students, never by the city:
1. one aggregate pass over `grades`, bucket of students by bucket (ranges of student_id when the
   lake is sorted by student, so a bucket reads only its row groups): each (student, subject)
   career becomes one row holding the term's share for every term;
2. term by term, city-wide, from those rows: z from the (grade, subject) group's mean and SD,
   the percentile from a histogram of the group's shares, slope and volatility in closed form
   over the shares of terms t-3..t (by term index: a value dated term t reads terms <= t only,
   a gap is not filled by an older term, so a point-in-time join never sees the future).
`event_timestamp` is the term's `end_date` at 00:00 UTC: a term's results are known when it ends.
The output is written term by term (row groups in term order), straight into the family's file.

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

import pyarrow.parquet as pq

from features.indicators.duck import (
    Term,
    copy,
    entity_ranges,
    files_sql,
    lake_table,
    load_grade_of,
    load_terms,
    sibling,
    sql_list,
    sql_str,
    typed,
    window_terms,
    workspace,
    write_family,
    write_family_queries,
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
        grades_path = Path(lake_dir) / "grades.parquet"
        exam_rows = pq.ParquetFile(grades_path).metadata.num_rows
        buckets = max(1, math.ceil(exam_rows / 2 / ROWS_PER_BUCKET))  # ~2 exams per subject and term
        # 1. One aggregate pass over the grades, bucket of students by bucket: each (student, subject)
        #    career as one row with a share per term (the mean over that term's exams) and the
        #    student's grade in each school year.
        years = sorted({t.school_year for t in terms})
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE grade_years AS
            SELECT student_id, {', '.join(f'max(grade) FILTER (WHERE school_year = {y}) AS {_grade(y)}' for y in years)}
            FROM grade_of GROUP BY student_id
        """)
        shares = ", ".join(f"avg(least(score / full_mark, 1.0)) FILTER (WHERE term_id = {sql_str(t.term_id)}) "
                           f"AS {_share(t)}" for t in terms)
        (scratch / "careers").mkdir()
        careers = [copy(con, f"""
            WITH c AS (
                SELECT student_id, subject, {shares} FROM read_parquet({grades})
                WHERE score IS NOT NULL AND full_mark > 0 AND {condition}
                GROUP BY student_id, subject)
            SELECT c.*, {', '.join(f'g.{_grade(y)}' for y in years)}
            FROM c LEFT JOIN grade_years g ON g.student_id = c.student_id
        """, scratch / "careers" / f"b{i}.parquet")
            for i, condition in enumerate(entity_ranges(grades_path, "student_id", buckets))]
        # 2. Term by term across the city, written straight into the family's file in term order.
        return write_family_queries(con, family, [_term_sql(term, terms, careers) for term in terms], out_path)


def _share(term: Term) -> str:
    return f"share_{term.idx}"


def _grade(school_year: int) -> str:
    return f"grade_{school_year}"


def _term_sql(term: Term, terms: list[Term], careers: list[Path]) -> str:
    """Rows of one term: share, z and percentile within (grade, subject) city-wide, slope and
    volatility over the terms t-3..t the career has a share in, failed.

    z comes from the group's mean and population SD (a hash aggregate); the percentile from a
    histogram of the group's shares: rank - 1 is the number of the group's shares strictly below
    (ties share the lowest rank), as `percent_rank` gives, without sorting the rows themselves.
    Both read only the grade, subject and share columns of the careers. Slope and volatility are
    the closed forms over the (at most 4) shares of the window, centred on their means: least
    squares slope sum((x - mean x)(y - mean y)) / sum((x - mean x)^2) with x the term offset
    (0, -1, -2, -3; a missing term is missing, not replaced by an older one), and the sample SD;
    both need 2 terms. With one, the slope is NaN and the volatility empty, as DuckDB's
    `regr_slope` and `stddev_samp` over a one-row frame gave when they computed them (so
    student_academics' trend, an `avg` over subjects, stays NaN when a subject has one term).
    """
    window = [(_share(t), t.idx - term.idx) for t in window_terms(terms, term, WINDOW_TERMS)]
    n = " + ".join(f"({y} IS NOT NULL)::INTEGER" for y, _ in window)
    sum_x = " + ".join(f"CASE WHEN {y} IS NULL THEN 0 ELSE {x} END" for y, x in window)
    sum_y = " + ".join(f"coalesce({y}, 0.0)" for y, _ in window)
    sxx = " + ".join(f"CASE WHEN {y} IS NULL THEN 0.0 ELSE ({x} - mx) * ({x} - mx) END" for y, x in window)
    sxy = " + ".join(f"coalesce(({x} - mx) * ({y} - my), 0.0)" for y, x in window)
    syy = " + ".join(f"coalesce(({y} - my) * ({y} - my), 0.0)" for y, _ in window)
    source = f"read_parquet({files_sql(careers)})"
    share, grade = _share(term), _grade(term.school_year)
    graded = f"{share} IS NOT NULL AND {grade} IS NOT NULL"
    return f"""
        WITH groups AS (
            SELECT {grade} AS grade, subject, avg({share}) AS mean, stddev_pop({share}) AS sd, count(*) AS size
            FROM {source} WHERE {graded} GROUP BY ALL),
        below AS (
            SELECT grade, subject, share,
                   sum(c) OVER (PARTITION BY grade, subject ORDER BY share) - c AS below
            FROM (SELECT {grade} AS grade, subject, {share} AS share, count(*) AS c
                  FROM {source} WHERE {graded} GROUP BY ALL)),
        r AS (
            SELECT *, ({sum_x}) / n AS mx, ({sum_y}) / n AS my FROM (
                SELECT student_id, subject, {grade} AS grade, {share} AS share,
                       {', '.join(y for y, _ in window)}, {n} AS n
                FROM {source} WHERE {share} IS NOT NULL))
        SELECT r.student_id AS student_key, r.subject, {term.end_sql} AS event_timestamp, r.grade, r.share,
               CASE WHEN r.grade IS NOT NULL THEN coalesce((r.share - groups.mean) / nullif(groups.sd, 0), 0.0) END AS z,
               CASE WHEN r.grade IS NOT NULL THEN
                   CASE WHEN groups.size > 1 THEN 100.0 * below.below / (groups.size - 1) ELSE 0.0 END END AS pct,
               CASE WHEN r.n >= 2 THEN ({sxy}) / ({sxx}) ELSE 'NaN'::DOUBLE END AS slope_4t,
               CASE WHEN r.n >= 2 THEN sqrt(({syy}) / (r.n - 1)) END AS volatility_4t,
               CASE WHEN r.share < {FAIL_SHARE} - {_EPS} THEN 1 ELSE 0 END AS failed
        FROM r LEFT JOIN groups ON groups.grade = r.grade AND groups.subject = r.subject
               LEFT JOIN below ON below.grade = r.grade AND below.subject = r.subject AND below.share = r.share
    """


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
            parts.append(typed(family, f"""
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
            """))
        return write_family_queries(con, family, parts, out_path)


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
