"""Open University Learning Analytics Dataset (Kuzilek, Hlosta & Zdrahal 2017) → contract tables.

Source (`oulad/`): `courses` (22 module presentations: 7 modules AAA–GGG × presentations 2013B,
2013J, 2014B, 2014J), `assessments` (206: TMA, CMA, Exam, with a due day and a weight),
`studentInfo` (32,593 enrolments of 28,785 students, with `final_result`), `studentRegistration`,
`studentAssessment` (173,912 scores, 0–100, with the day submitted; a missing score is `?`).
All days are counted from the start of the module presentation; `vle.csv` is the catalogue of
the click log, which is not included.

Presentations as terms. A presentation code is a year and a start month: `B` starts in February,
`J` in October. The contract's school year starts in the autumn, so `YYYYJ` is term 1 of school
year YYYY and `YYYYB` is term 2 of school year YYYY−1:

| presentation | term_id | school_year | term | start_date (**placeholder**) | end_date |
|---|---|---|---|---|---|
| 2013B | `2012-2` | 2012 | 2 | 2013-02-01 | start + the longest module length of the presentation |
| 2013J | `2013-1` | 2013 | 1 | 2013-10-01 | 〃 |
| 2014B | `2013-2` | 2013 | 2 | 2014-02-01 | 〃 |
| 2014J | `2014-1` | 2014 | 1 | 2014-10-01 | 〃 |

The dataset gives only the month; the first of the month is the placeholder start day every
date below is counted from. The presentation code is kept as an extra column `presentation`.

| source field | contract table.column | notes |
|---|---|---|
| id_student | students.student_id `oulad-<id_student>` | stable: the dataset's own id |
| gender M/F | students.sex m/f | |
| age_band 0-35, 35-55, 55<= | students.birth_date | **placeholder**: July 1st of (start year of the student's first presentation − 26, 45 or 60), a representative age for the band (adult learners, 18+); `age_band` kept as an extra column |
| first presentation | students.enrollment_year | the school year of the student's first presentation in the dataset |
| region, highest_education, imd_band | students (extra columns) | ingest keeps only contract columns |
| code_module | subject `aaa` … `ggg` | anonymised modules (AAA, BBB, GGG social sciences; CCC–FFF STEM) |
| studentAssessment + assessments | assessment_scores (**table added to the contract**) | one row per score: term, subject, assessment_id, kind (TMA → `coursework`, CMA → `quiz`, Exam → `exam`), due_date = start + due day (empty where the source has none: some exams), submitted_on = start + date_submitted, score (empty where `?`), full_mark 100, weight (% of the module), banked (is_banked); extra columns `assessment_type`, `due_day`, `submitted_day` (days from the start, as in the source) |
| Exam scores | grades (exam `final`, full_mark 100) | the end-of-presentation exam is the contract's final exam; only CCC and DDD have exam scores in the dataset, and no student has two; rows without a score are not grades; extra column `assessment_id` |
| TMA / CMA scores | — (not in grades) | a presentation has up to ~10 of them per module, and grades allow one `midterm` per student, term and subject: forcing them in would mean averaging (losing the dates) or duplicate keys. They are all in assessment_scores, dated |
| final_result | course_outcomes.final_result (**table added to the contract**) withdrawn / fail / pass / distinction | the label table: one row per enrolment (student, term, subject); registered_on / unregistered_on = start + date_registration / date_unregistration; extra columns `num_of_prev_attempts`, `studied_credits` |

Not written: schools, classes, teachers (a distance-learning university has no school, class
or grade 1–12; none is invented). Dropped: disability (health data the contract does not
ask for), vle.csv (the activity catalogue without the click log).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.adapters._common import days_after, write_tables

START_MONTH = {"B": 2, "J": 10}
BAND_AGE = {"0-35": 26, "35-55": 45, "55<=": 60}
KIND = {"TMA": "coursework", "CMA": "quiz", "Exam": "exam"}
RESULT = {"Withdrawn": "withdrawn", "Fail": "fail", "Pass": "pass", "Distinction": "distinction"}
FULL_MARK = 100.0


def read(source_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(source_dir) / f"{name}.csv", na_values=["?", ""])


def presentation_terms(courses: pd.DataFrame) -> pd.DataFrame:
    """One term per presentation code (see the table above)."""
    length = courses.groupby("code_presentation")["module_presentation_length"].max()
    rows = []
    for code, days in length.items():
        year, letter = int(code[:4]), code[4]
        school_year, term = (year, 1) if letter == "J" else (year - 1, 2)
        start = pd.Timestamp(year=year, month=START_MONTH[letter], day=1)
        rows.append({
            "term_id": f"{school_year}-{term}", "school_year": school_year, "term": term,
            "start_date": start.strftime("%Y-%m-%d"),
            "end_date": (start + pd.Timedelta(days=int(days))).strftime("%Y-%m-%d"),
            "presentation": code,
        })
    return pd.DataFrame(rows).sort_values("start_date", ignore_index=True)


def student_id(ids: pd.Series) -> pd.Series:
    return "oulad-" + ids.astype("int64").astype(str)


def adapt(source_dir: Path, out_dir: Path) -> dict[str, int]:
    courses = read(source_dir, "courses")
    assessments = read(source_dir, "assessments")
    info = read(source_dir, "studentInfo")
    registration = read(source_dir, "studentRegistration")
    scores = read(source_dir, "studentAssessment")

    terms = presentation_terms(courses)
    by_code = terms.set_index("presentation")
    term_of = by_code["term_id"]
    start_of = by_code["start_date"]

    # --- students: described by their first presentation ---
    first = (info.assign(_start=info["code_presentation"].map(start_of))
             .sort_values(["id_student", "_start", "code_module"], kind="stable")
             .drop_duplicates("id_student"))
    start_year = pd.to_datetime(first["_start"]).dt.year
    students = pd.DataFrame({
        "student_id": student_id(first["id_student"]),
        "sex": first["gender"].str.lower(),
        "birth_date": (start_year - first["age_band"].map(BAND_AGE)).astype(str) + "-07-01",
        "enrollment_year": first["code_presentation"].map(by_code["school_year"]).astype("int64"),
        "age_band": first["age_band"], "region": first["region"],
        "highest_education": first["highest_education"], "imd_band": first["imd_band"],
    }).reset_index(drop=True)

    # --- assessment_scores: every score, dated ---
    scored = scores.merge(assessments, on="id_assessment", how="left", validate="many_to_one")
    start = scored["code_presentation"].map(start_of)
    assessment_scores = pd.DataFrame({
        "student_id": student_id(scored["id_student"]),
        "term_id": scored["code_presentation"].map(term_of),
        "subject": scored["code_module"].str.lower(),
        "assessment_id": scored["id_assessment"].astype(str),
        "kind": scored["assessment_type"].map(KIND),
        "due_date": days_after(start, scored["date"]),
        "submitted_on": days_after(start, scored["date_submitted"]),
        "score": scored["score"].astype(float),
        "full_mark": FULL_MARK,
        "weight": scored["weight"].astype(float),
        "banked": scored["is_banked"].astype(bool),
        "assessment_type": scored["assessment_type"],
        "due_day": scored["date"].astype("Int64"),
        "submitted_day": scored["date_submitted"].astype("Int64"),
    })

    # --- grades: the exam is the final ---
    exams = assessment_scores[(assessment_scores["kind"] == "exam") & assessment_scores["score"].notna()]
    grades = pd.DataFrame({
        "student_id": exams["student_id"], "term_id": exams["term_id"], "subject": exams["subject"],
        "exam": "final", "score": exams["score"], "full_mark": FULL_MARK,
        "assessment_id": exams["assessment_id"],
    }).reset_index(drop=True)

    # --- course_outcomes: final_result per enrolment ---
    enrolments = info.merge(registration, on=["code_module", "code_presentation", "id_student"],
                            how="left", validate="one_to_one")
    start = enrolments["code_presentation"].map(start_of)
    course_outcomes = pd.DataFrame({
        "student_id": student_id(enrolments["id_student"]),
        "term_id": enrolments["code_presentation"].map(term_of),
        "subject": enrolments["code_module"].str.lower(),
        "final_result": enrolments["final_result"].map(RESULT),
        "registered_on": days_after(start, enrolments["date_registration"]),
        "unregistered_on": days_after(start, enrolments["date_unregistration"]),
        "num_of_prev_attempts": enrolments["num_of_prev_attempts"],
        "studied_credits": enrolments["studied_credits"],
    })

    return write_tables(out_dir, {
        "students": students, "terms": terms, "grades": grades,
        "assessment_scores": assessment_scores, "course_outcomes": course_outcomes,
    })
