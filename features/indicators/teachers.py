"""Teacher (师) indicators: digital literacy, training and teaching load, keyed by `teacher_key`.

`teacher_key` is the lake's `teacher_id`, already a keyed pseudonym. Three families:

- `teacher_digital_literacy`: one row per teacher and assessment date (JY/T 0646—2022's five
  dimensions), true from that date, with the change since the teacher's previous assessment.
- `teacher_training`: one row per teacher and term, true at the term's end: training so far,
  a course counting as completed (and its hours as done) only from its `completed_on` date.
- `teacher_teaching`: one row per teacher and school year, true from September 1st of that year:
  what and whom the teacher teaches.

All SQL in DuckDB over the lake Parquet, bounded in memory, term by term where values are per
term; no Python loop over teachers. A lake without a family's tables gives an empty file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from features.contract import TEACHER_DIMENSIONS
from features.indicators.family import TERM_TTL, IndicatorFamily
from features.indicators.duck import FamilyWriter, duck_session, register_lake, spill_dir, sql_literal, term_ends

DIMENSIONS = TEACHER_DIMENSIONS  # awareness, knowledge_skills, application, responsibility, development
ASSESSMENT_TTL = timedelta(days=2 * 366)  # assessed each autumn; one missed year is still "current"
YEAR_TTL = timedelta(days=366)

LITERACY_FIELDS: dict[str, str] = {
    **{d: "float" for d in DIMENSIONS},  # score 0-100 on the dimension at this assessment
    **{f"change_{d}": "float" for d in DIMENSIONS},  # score − the teacher's previous assessment's score
    "mean_score": "float",  # mean of the dimensions assessed on this date
    "change_mean_score": "float",  # mean_score − previous assessment's mean_score
    "dimensions_assessed": "int",  # dimensions with a score on this date (5 normally)
    "assessments_taken": "int",  # the teacher's assessments so far, this one included
    "days_since_previous": "int",  # days since the previous assessment (empty for the first)
}
TRAINING_FIELDS: dict[str, str] = {
    "term_id": "str",
    "school_year": "int",
    "hours_completed": "float",  # hours of the courses completed so far (catalog hours)
    "hours_completed_in_term": "float",  # of which completed in this term
    "courses_completed": "int",  # courses completed so far (completed_on ≤ term end)
    "courses_enrolled": "int",  # courses enrolled in so far (enrolled_on ≤ term end), completed or not
    # courses_completed / courses_enrolled (empty if none); a course in progress counts as not completed
    "completion_rate": "float",
    **{f"hours_{d}": "float" for d in DIMENSIONS},  # hours completed so far of courses targeting the dimension
}
TEACHING_FIELDS: dict[str, str] = {
    "school_year": "int",
    "school_id": "str",  # school of the classes taught (or headed) this year
    "subjects": "str",  # subjects taught, sorted, ';'-separated
    "subjects_taught": "int",  # number of subjects taught
    "classes_taught": "int",  # classes the teacher has a teaching assignment in
    "students_taught": "int",  # students of those classes (class memberships of the year)
    "is_head_teacher": "int",  # 1 if head teacher (班主任) of a class this year
    "head_class_id": "str",  # the class headed (the first by id if several)
    # From the `teachers` table, a snapshot taken as of the latest school year with classes or
    # teaching assignments (an export of teachers comes with that year's classes): experience is
    # taken back one year per school year before it (floored at 0, assuming continuous service);
    # the title is known only for that latest year (an earlier year's title may have been lower),
    # so earlier rows leave it empty rather than use a later promotion.
    "years_experience": "int",
    "title": "str",
}


def build_teacher_digital_literacy(lake_dir: Path, out_path: Path) -> int:
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(TEACHER_DIGITAL_LITERACY, out_path) as out:
        if "teacher_assessments" in register_lake(con, lake_dir, ["teacher_assessments"]):
            out.add_query(con, _literacy_sql())
    return out.rows


def _literacy_sql() -> str:
    known = ", ".join(f"'{d}'" for d in DIMENSIONS)
    pivot = ",\n".join(f"max(score) FILTER (WHERE dimension = '{d}') AS {d}" for d in DIMENSIONS)
    lags = ",\n".join(f"lag({d}) OVER w AS previous_{d}" for d in DIMENSIONS)
    changes = ",\n".join(f"{d} - previous_{d} AS change_{d}" for d in DIMENSIONS)
    return f"""
        WITH assessments AS (
            SELECT teacher_id, assessed_on, {pivot},
                   avg(score) FILTER (WHERE dimension IN ({known})) AS mean_score,
                   count(DISTINCT dimension) FILTER (WHERE dimension IN ({known})) AS dimensions_assessed
            FROM teacher_assessments
            WHERE teacher_id IS NOT NULL AND assessed_on IS NOT NULL
            GROUP BY teacher_id, assessed_on
            HAVING count(DISTINCT dimension) FILTER (WHERE dimension IN ({known})) > 0
        ), ordered AS (
            SELECT *, {lags},
                   lag(mean_score) OVER w AS previous_mean_score,
                   lag(assessed_on) OVER w AS previous_on,
                   row_number() OVER w AS assessments_taken
            FROM assessments
            WINDOW w AS (PARTITION BY teacher_id ORDER BY assessed_on)
        )
        SELECT teacher_id AS teacher_key, timezone('UTC', assessed_on) AS event_timestamp,
               {', '.join(DIMENSIONS)}, {changes},
               mean_score, mean_score - previous_mean_score AS change_mean_score,
               dimensions_assessed, assessments_taken,
               date_diff('day', previous_on, assessed_on) AS days_since_previous
        FROM ordered
        ORDER BY teacher_key, event_timestamp
    """


def build_teacher_training(lake_dir: Path, out_path: Path) -> int:
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(TEACHER_TRAINING, out_path) as out:
        present = register_lake(con, lake_dir, ["terms", "teachers", "teacher_trainings", "training_courses"])
        if {"terms", "teacher_trainings"} <= present:
            for term_id, year, end, previous_end in term_ends(con):
                out.add_query(con, _training_sql(term_id, year, end, previous_end))
    return out.rows


def _training_sql(term_id: str, year: int, end: str, previous_end: str) -> str:
    by_dimension = ",\n".join(
        f"coalesce(sum(hours) FILTER (WHERE done AND list_contains(dimensions, '{d}')), 0) AS hours_{d}"
        for d in DIMENSIONS)
    return f"""
        WITH enrolments AS (
            SELECT t.teacher_id, t.completed_on, c.hours,
                   coalesce(t.completed, TRUE) AND t.completed_on IS NOT NULL AND t.completed_on <= {end} AS done,
                   list_transform(string_split(lower(coalesce(c.dimensions, '')), ';'), lambda x: trim(x)) AS dimensions
            FROM teacher_trainings t LEFT JOIN training_courses c USING (course_id)
            WHERE t.enrolled_on <= {end}
        ), per_teacher AS (
            SELECT teacher_id,
                   count(*) AS courses_enrolled,
                   count(*) FILTER (WHERE done) AS courses_completed,
                   coalesce(sum(hours) FILTER (WHERE done), 0) AS hours_completed,
                   coalesce(sum(hours) FILTER (WHERE done AND completed_on > {previous_end}), 0)
                       AS hours_completed_in_term,
                   {by_dimension}
            FROM enrolments GROUP BY teacher_id
        ), people AS (
            SELECT teacher_id FROM teachers UNION SELECT teacher_id FROM teacher_trainings
        )
        SELECT p.teacher_id AS teacher_key, timezone('UTC', {end}) AS event_timestamp,
               {sql_literal(term_id)} AS term_id, {year} AS school_year,
               coalesce(hours_completed, 0) AS hours_completed,
               coalesce(hours_completed_in_term, 0) AS hours_completed_in_term,
               coalesce(courses_completed, 0) AS courses_completed,
               coalesce(courses_enrolled, 0) AS courses_enrolled,
               CASE WHEN courses_enrolled > 0 THEN courses_completed / courses_enrolled END AS completion_rate,
               {', '.join(f'coalesce(hours_{d}, 0) AS hours_{d}' for d in DIMENSIONS)}
        FROM people p LEFT JOIN per_teacher USING (teacher_id)
        WHERE p.teacher_id IS NOT NULL
        ORDER BY teacher_key
    """


def build_teacher_teaching(lake_dir: Path, out_path: Path) -> int:
    tables = ["teaching_assignments", "classes", "class_memberships", "teachers"]
    with duck_session(spill_dir(out_path)) as con, FamilyWriter(TEACHER_TEACHING, out_path) as out:
        present = register_lake(con, lake_dir, tables)
        if present & {"teaching_assignments", "classes"}:
            out.add_query(con, TEACHING_SQL)
    return out.rows


TEACHING_SQL = """
    WITH snapshot AS (
        SELECT max(y) AS latest_year FROM (
            SELECT max(school_year) AS y FROM teaching_assignments UNION ALL SELECT max(school_year) FROM classes)
    ), taught AS (
        SELECT DISTINCT teacher_id, school_year, class_id, subject FROM teaching_assignments
        WHERE teacher_id IS NOT NULL
    ), headed AS (
        SELECT head_teacher_id AS teacher_id, school_year, class_id FROM classes WHERE head_teacher_id IS NOT NULL
    ), sizes AS (
        SELECT class_id, school_year, count(DISTINCT student_id) AS students FROM class_memberships GROUP BY ALL
    ), teaching AS (
        SELECT t.teacher_id, t.school_year, count(*) AS classes_taught, sum(coalesce(s.students, 0)) AS students_taught
        FROM (SELECT DISTINCT teacher_id, school_year, class_id FROM taught) t
        LEFT JOIN sizes s USING (class_id, school_year)
        GROUP BY ALL
    ), subjects AS (
        SELECT teacher_id, school_year, count(DISTINCT subject) AS subjects_taught,
               array_to_string(list_sort(list(DISTINCT subject)), ';') AS subjects
        FROM taught GROUP BY ALL
    ), heads AS (
        SELECT teacher_id, school_year, min(class_id) AS head_class_id FROM headed GROUP BY ALL
    ), schools AS (
        SELECT x.teacher_id, x.school_year, min(c.school_id) AS school_id
        FROM (SELECT teacher_id, school_year, class_id FROM taught UNION SELECT * FROM headed) x
        JOIN classes c USING (class_id)
        GROUP BY ALL
    ), years AS (
        SELECT teacher_id, school_year FROM taught UNION SELECT teacher_id, school_year FROM headed
    )
    SELECT y.teacher_id AS teacher_key, make_timestamptz(y.school_year, 9, 1, 0, 0, 0, 'UTC') AS event_timestamp,
           y.school_year, sc.school_id, su.subjects,
           coalesce(su.subjects_taught, 0) AS subjects_taught,
           coalesce(te.classes_taught, 0) AS classes_taught,
           coalesce(te.students_taught, 0) AS students_taught,
           CAST(h.head_class_id IS NOT NULL AS BIGINT) AS is_head_teacher, h.head_class_id,
           CASE WHEN p.years_experience IS NOT NULL
                THEN greatest(0, p.years_experience - (snapshot.latest_year - y.school_year)) END AS years_experience,
           CASE WHEN y.school_year = snapshot.latest_year THEN p.title END AS title
    FROM years y
    CROSS JOIN snapshot
    LEFT JOIN teaching te USING (teacher_id, school_year)
    LEFT JOIN subjects su USING (teacher_id, school_year)
    LEFT JOIN heads h USING (teacher_id, school_year)
    LEFT JOIN schools sc USING (teacher_id, school_year)
    LEFT JOIN teachers p USING (teacher_id)
    ORDER BY teacher_key, event_timestamp
"""


TEACHER_DIGITAL_LITERACY = IndicatorFamily(
    name="teacher_digital_literacy",
    entities=("teacher",),
    fields=LITERACY_FIELDS,
    ttl=ASSESSMENT_TTL,
    description="Digital literacy (JY/T 0646—2022) by dimension at each assessment, and its change.",
    build=build_teacher_digital_literacy,
)
TEACHER_TRAINING = IndicatorFamily(
    name="teacher_training",
    entities=("teacher",),
    fields=TRAINING_FIELDS,
    ttl=TERM_TTL,
    description="Training so far at each term end: hours and courses completed (from their completion "
                "dates), courses enrolled, completion rate, hours by literacy dimension.",
    build=build_teacher_training,
)
TEACHER_TEACHING = IndicatorFamily(
    name="teacher_teaching",
    entities=("teacher",),
    fields=TEACHING_FIELDS,
    ttl=YEAR_TTL,
    description="What a teacher teaches each school year: subjects, classes, students, head teacher, "
                "experience and title.",
    build=build_teacher_teaching,
)
FAMILIES: tuple[IndicatorFamily, ...] = (TEACHER_DIGITAL_LITERACY, TEACHER_TRAINING, TEACHER_TEACHING)
