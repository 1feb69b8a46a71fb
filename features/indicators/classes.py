"""Class and course indicators: how a class did in a term, and how a training course is taken up.

- `class_outcomes` (entity class): one row per class and term of its school year, true at the
  term's end, from the class's students (class memberships of that school year): exam results of
  the term, the fitness tests of the school year dated up to the term's end, attendance of the term.
- `course_stats` (entity course, a `training_courses` course): one row per course and term, true
  at the term's end: enrolments and completions so far, from their own dates.

DuckDB SQL over the lake Parquet, one query per term (bounded memory whatever the city's size);
a lake without a family's required tables gives an empty file with the family's schema.
"""

from __future__ import annotations

import math
from pathlib import Path

from features.indicators.duck import (
    FamilyWriter,
    duck_session,
    entity_ranges,
    register_lake,
    spill_dir,
    sql_literal,
    term_ends,
)
from features.indicators.family import TERM_TTL, IndicatorFamily
from features.indicators.fitness import scored_fitness

PASS_SHARE = 0.6  # a result passes at 60 % of its full mark
GRADE_ROWS_PER_BUCKET = 20_000_000  # exam rows per bucket of students in the results pass (memory bound)

CLASS_FIELDS: dict[str, str] = {
    "term_id": "str",
    "school_year": "int",
    "school_id": "str",
    "grade": "int",
    "students": "int",  # students of the class this school year (class memberships)
    # A student's result in a subject this term is the final exam's score / full mark, or the
    # midterm's when the term has no final; the class's results are those of its students.
    "results": "int",  # (student, subject) results of the term
    "mean_score_share": "float",  # mean of score / full mark over all results (all subjects)
    "pass_rate": "float",  # share of results ≥ 60 % of the full mark
    "fitness_tested": "int",  # students with a scored fitness test of this school year dated ≤ term end
    "mean_fitness_total": "float",  # their mean total score (CSPHS 2014)
    "fitness_pass_rate": "float",  # share of them at pass or better (达标率: total ≥ 60)
    "fitness_good_rate": "float",  # share at good or excellent (优良率: total ≥ 80)
    "attendance_rate": "float",  # 1 − days absent / days enrolled, over the students' attendance of the term
    # Placeholder, always empty here: the median growth percentile of the class's students this
    # term, to be filled by the growth model (training/) once it scores students.
    "median_growth_percentile": "float",
}
COURSE_FIELDS: dict[str, str] = {
    "term_id": "str",
    "school_year": "int",
    "center_id": "str",  # from the catalog (training_courses)
    "subject": "str",
    "level": "str",
    "dimensions": "str",
    "hours": "float",
    "enrolled": "int",  # enrolments so far (enrolled_on ≤ term end)
    "enrolled_in_term": "int",  # of which enrolled in this term
    "completed": "int",  # completions so far (completed_on ≤ term end)
    "completion_rate": "float",  # completed / enrolled (empty if none); enrolments still running count as not completed
    # Satisfaction of completed enrolments, counted from the completion date. Ratings of enrolments
    # never completed carry no date, so they are left out (they could be later than any term end).
    "ratings": "int",
    "mean_satisfaction": "float",  # 1-5
}


def build_class_outcomes(lake_dir: Path, out_path: Path) -> int:
    out_path = Path(out_path)
    tables = ["terms", "classes", "class_memberships", "grades", "attendance"]
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(CLASS_OUTCOMES, out_path) as out:
        present = register_lake(con, lake_dir, tables)
        if {"terms", "classes", "class_memberships"} <= present:
            scored = scored_fitness(lake_dir, out_path.parent)
            if scored is None:
                con.execute("CREATE VIEW fitness AS SELECT NULL::VARCHAR AS student_id, NULL::BIGINT AS school_year, "
                            "NULL::TIMESTAMP AS test_date, NULL::DOUBLE AS total_score, NULL::VARCHAR AS level "
                            "WHERE FALSE")
            else:
                con.execute(f"CREATE VIEW fitness AS SELECT student_id, school_year, test_date, total_score, level "
                            f"FROM read_parquet({sql_literal(Path(scored) / '*.parquet')})")
            _student_results(con, Path(lake_dir) / "grades.parquet")
            for term_id, year, end, _ in term_ends(con):
                out.add_query(con, _class_sql(term_id, year, end))
    return out.rows


def _student_results(con, grades_path: Path) -> None:
    """Temp table `student_results` (student_id, term_id, results, share_sum, passed): each
    student's results of each term, counted and summed, in one pass over the grades.

    A result is the final's share of full mark, else the midterm's (`arg_max` on the exam being
    the final), per (student, term, subject). Picking it term by term city-wide took a hash table
    of every (student, subject) of the term: at 1.2M students 6M groups, 9.4 s a term, superlinear
    in the city (0.74 s at 250k). Here the groups are (student, term) with one result column per
    subject, over ranges of students that read only their row groups of the student-sorted lake;
    a class then adds up its students' counts and sums.
    """
    con.execute("CREATE TEMP TABLE student_results (student_id VARCHAR, term_id VARCHAR, results BIGINT, "
                "share_sum DOUBLE, passed BIGINT)")
    subjects = [subject for (subject,) in con.execute("SELECT DISTINCT subject FROM grades ORDER BY 1").fetchall()]
    if not subjects:
        return
    result = "arg_max(score / full_mark, CASE WHEN exam = 'final' THEN 1 ELSE 0 END)"
    picks = [f"{result} FILTER (WHERE subject IS NOT DISTINCT FROM {'NULL' if s is None else sql_literal(s)}) AS r{i}"
             for i, s in enumerate(subjects)]
    shares = [f"r{i}" for i in range(len(subjects))]
    counted = " + ".join(f"({r} IS NOT NULL)::BIGINT" for r in shares)
    summed = " + ".join(f"coalesce({r}, 0.0)" for r in shares)
    passed = " + ".join(f"coalesce(({r} >= {PASS_SHARE})::BIGINT, 0)" for r in shares)
    rows = con.execute("SELECT count(*) FROM grades").fetchall()[0][0]
    buckets = entity_ranges(grades_path, "student_id", math.ceil(rows / GRADE_ROWS_PER_BUCKET)) if rows else ["TRUE"]
    for bucket in buckets:
        con.execute(f"""
            INSERT INTO student_results
            SELECT student_id, term_id, {counted}, {summed}, {passed}
            FROM (SELECT student_id, term_id, {', '.join(picks)} FROM grades
                  WHERE score IS NOT NULL AND full_mark > 0 AND {bucket} GROUP BY student_id, term_id)
        """)


def _class_sql(term_id: str, year: int, end: str) -> str:
    term = sql_literal(term_id)
    return f"""
        WITH members AS (
            SELECT m.student_id, m.class_id FROM class_memberships m
            JOIN classes c ON c.class_id = m.class_id AND c.school_year = {year}
            WHERE m.school_year = {year}
        ), sizes AS (
            SELECT class_id, count(DISTINCT student_id) AS students FROM members GROUP BY class_id
        ), exams AS (
            SELECT m.class_id, sum(r.results) AS results, sum(r.share_sum) / sum(r.results) AS mean_score_share,
                   sum(r.passed) / sum(r.results) AS pass_rate
            FROM student_results r JOIN members m USING (student_id)
            WHERE r.term_id = {term} AND r.results > 0
            GROUP BY m.class_id
        ), tests AS (
            SELECT m.class_id, count(*) AS fitness_tested, avg(total_score) AS mean_fitness_total,
                   avg(CASE WHEN level <> 'fail' THEN 1.0 ELSE 0.0 END) AS fitness_pass_rate,
                   avg(CASE WHEN level IN ('good', 'excellent') THEN 1.0 ELSE 0.0 END) AS fitness_good_rate
            FROM fitness f JOIN members m USING (student_id)
            WHERE f.school_year = {year} AND f.test_date <= {end} AND f.total_score IS NOT NULL
            GROUP BY m.class_id
        ), presence AS (
            SELECT m.class_id,
                   1 - sum(a.days_absent) / nullif(sum(a.days_enrolled), 0) AS attendance_rate
            FROM attendance a JOIN members m USING (student_id)
            WHERE a.term_id = {term} AND a.days_enrolled IS NOT NULL AND a.days_absent IS NOT NULL
            GROUP BY m.class_id
        )
        SELECT c.class_id, timezone('UTC', {end}) AS event_timestamp, {term} AS term_id, {year} AS school_year,
               c.school_id, c.grade,
               coalesce(s.students, 0) AS students,
               coalesce(e.results, 0) AS results, e.mean_score_share, e.pass_rate,
               coalesce(t.fitness_tested, 0) AS fitness_tested, t.mean_fitness_total,
               t.fitness_pass_rate, t.fitness_good_rate,
               p.attendance_rate,
               NULL::DOUBLE AS median_growth_percentile
        FROM classes c
        LEFT JOIN sizes s USING (class_id)
        LEFT JOIN exams e USING (class_id)
        LEFT JOIN tests t USING (class_id)
        LEFT JOIN presence p USING (class_id)
        WHERE c.school_year = {year}
        ORDER BY c.class_id
    """


def build_course_stats(lake_dir: Path, out_path: Path) -> int:
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(COURSE_STATS, out_path) as out:
        present = register_lake(con, lake_dir, ["terms", "training_courses", "teacher_trainings"])
        if {"terms", "teacher_trainings"} <= present:
            for term_id, year, end, previous_end in term_ends(con):
                out.add_query(con, _course_sql(term_id, year, end, previous_end))
    return out.rows


def _course_sql(term_id: str, year: int, end: str, previous_end: str) -> str:
    return f"""
        WITH enrolments AS (
            SELECT course_id, enrolled_on, satisfaction,
                   coalesce(completed, TRUE) AND completed_on IS NOT NULL AND completed_on <= {end} AS done
            FROM teacher_trainings
            WHERE enrolled_on <= {end}
        ), per_course AS (
            SELECT course_id, count(*) AS enrolled,
                   count(*) FILTER (WHERE enrolled_on > {previous_end}) AS enrolled_in_term,
                   count(*) FILTER (WHERE done) AS completed,
                   count(satisfaction) FILTER (WHERE done) AS ratings,
                   avg(satisfaction) FILTER (WHERE done) AS mean_satisfaction
            FROM enrolments GROUP BY course_id
        ), courses AS (
            SELECT course_id FROM training_courses UNION SELECT course_id FROM teacher_trainings
        )
        SELECT c.course_id, timezone('UTC', {end}) AS event_timestamp, {sql_literal(term_id)} AS term_id,
               {year} AS school_year, k.center_id, k.subject, k.level, k.dimensions, k.hours,
               coalesce(e.enrolled, 0) AS enrolled, coalesce(e.enrolled_in_term, 0) AS enrolled_in_term,
               coalesce(e.completed, 0) AS completed,
               CASE WHEN e.enrolled > 0 THEN e.completed / e.enrolled END AS completion_rate,
               coalesce(e.ratings, 0) AS ratings, e.mean_satisfaction
        FROM courses c
        LEFT JOIN training_courses k USING (course_id)
        LEFT JOIN per_course e USING (course_id)
        WHERE c.course_id IS NOT NULL
        ORDER BY c.course_id
    """


CLASS_OUTCOMES = IndicatorFamily(
    name="class_outcomes",
    entities=("class",),
    fields=CLASS_FIELDS,
    ttl=TERM_TTL,
    description="A class's term: students, exam results (mean share of full mark, pass rate), fitness of the "
                "school year so far, attendance; median growth percentile to come from the growth model.",
    build=build_class_outcomes,
    # The scored fitness tests student_fitness leaves in the folder (`scored_fitness`): built after
    # it, a parallel build never scores the same lake twice at once.
    reads=("student_fitness",),
)
COURSE_STATS = IndicatorFamily(
    name="course_stats",
    entities=("course",),
    fields=COURSE_FIELDS,
    ttl=TERM_TTL,
    description="A training course at each term end: enrolments and completions so far, completion rate, "
                "mean satisfaction of completers.",
    build=build_course_stats,
)
FAMILIES: tuple[IndicatorFamily, ...] = (CLASS_OUTCOMES, COURSE_STATS)
