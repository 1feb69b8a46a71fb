"""UCI Student Performance (Cortez & Silva 2008) → contract tables.

Source (`uci_student_performance/`): `student-mat.csv` (395 rows, the math course) and
`student-por.csv` (649 rows, the Portuguese-language course), `;`-separated, one row per
student and course, 33 columns; two secondary schools of the Alentejo region, school year
2005/06. Grades G1, G2, G3 are the three grading periods of that year, on the Portuguese 0–20 scale.

Who is who. `student-merge.R` links the two files on 13 attributes (school, sex, age, address,
famsize, Pstatus, Medu, Fedu, Mjob, Fjob, reason, nursery, internet) and reports 382 students in
both; but those 13 are not unique within a file (4 math rows and 12 Portuguese rows repeat
another row's 13 values), so some of the 382 pairs are cross-products of different students.
This adapter adds the 14 other student-level questionnaire answers (guardian, traveltime, studytime,
schoolsup, famsup, activities, higher, romantic, famrel, freetime, goout, Dalc, Walc, health),
which agree on every unambiguous pair, and links a math row to a Portuguese row only when
those 27 attributes match exactly one row on each side: 370 students are in both courses,
649 + 395 − 370 = 674 students in all. Ids are stable and traceable to the source row:
`uci-por-NNN` (1-based row of student-por.csv) for every Portuguese-course student, including
those also in math; `uci-mat-NNN` (row of student-mat.csv) for math-only students.

| source field | contract table.column | notes |
|---|---|---|
| school (GP, MS) | schools.school_id `uci-gp`, `uci-ms`; name | name from the codebook; district `alentejo` (the paper names the region, not the districts); stage `senior` (Portuguese secondary = grades 10–12) |
| sex F/M | students.sex f/m | |
| age (15–22) | students.birth_date | **placeholder**: the middle of the birth dates that give this age on 2006-01-01 (mid school year), i.e. (2005 − age)-07-01; `age` kept as an extra column |
| — | students.enrollment_year | **placeholder** 2005: the only year the dataset observes (the year of entry is not given) |
| G1 | grades (term `2005-1`, exam `final`) | period 1 (Sep–Dec) is contract term 1; its only grade is its closing grade |
| G2 | grades (term `2005-2`, exam `midterm`) | periods 2 and 3 (Jan–Jun) form contract term 2: G2 closes period 2, half-way through |
| G3 | grades (term `2005-2`, exam `final`) | the final grade of the year (the published pass/fail target, pass = G3 ≥ 10) |
| course file | grades.subject `math` / `portuguese` | score = the grade, full_mark = 20; extra column `period` = 1, 2, 3 (G1, G2, G3) |
| absences | attendance (term `2005-2`).days_absent | the count covers the whole year, so it is recorded on the year's last term. The two files disagree for most shared students (absences are counted per course), so days_absent = the larger of the student's counts; both are kept as extra columns `absences_math`, `absences_portuguese` |
| — | attendance.days_enrolled | **placeholder** 180: about the number of teaching days in a Portuguese school year (not in the dataset) |
| — | terms `2005-1` (2005-09-15 → 2005-12-16), `2005-2` (2006-01-03 → 2006-06-16) | **placeholder** dates: the usual Portuguese calendar; the dataset gives none |

Written: schools (2), students (674), terms (2), grades (1044 × 3 = 3132), attendance (674).

Not written: classes, class_memberships, teachers, teaching_assignments — the dataset has no
class, grade level or teacher, and a class needs a grade (1–12) and a head teacher whose sex and
birth year would have to be invented. Dropped: family, social and lifestyle answers (Medu, Fedu,
Mjob, Fjob, famsize, Pstatus, guardian, alcohol use, romantic, health, ...), failures, paid,
schoolsup, famsup and the other questionnaire items: the contract has no place for them (the
published "no earlier grades" baseline uses them; read them from the source for that).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.adapters._common import birth_date_from_age, write_tables

FILES = {"math": "student-mat.csv", "portuguese": "student-por.csv"}
ID_PREFIX = {"math": "uci-mat-", "portuguese": "uci-por-"}
MERGE_KEYS = ["school", "sex", "age", "address", "famsize", "Pstatus", "Medu", "Fedu", "Mjob", "Fjob",
              "reason", "nursery", "internet"]  # student-merge.R
STUDENT_LEVEL = ["guardian", "traveltime", "studytime", "schoolsup", "famsup", "activities", "higher",
                 "romantic", "famrel", "freetime", "goout", "Dalc", "Walc", "health"]
IDENTITY = MERGE_KEYS + STUDENT_LEVEL

SCHOOL_YEAR = 2005
AGE_ON = date(2006, 1, 1)  # the middle of the 2005/06 school year, when the questionnaires were answered
SCHOOL_DAYS = 180
FULL_MARK = 20.0
SCHOOLS = {"GP": "Gabriel Pereira", "MS": "Mousinho da Silveira"}
TERMS = pd.DataFrame([
    {"term_id": "2005-1", "school_year": SCHOOL_YEAR, "term": 1, "start_date": "2005-09-15", "end_date": "2005-12-16"},
    {"term_id": "2005-2", "school_year": SCHOOL_YEAR, "term": 2, "start_date": "2006-01-03", "end_date": "2006-06-16"},
])
PERIODS = {"G1": ("2005-1", "final", 1), "G2": ("2005-2", "midterm", 2), "G3": ("2005-2", "final", 3)}
ATTENDANCE_TERM = "2005-2"


def read_source(source_dir: Path) -> dict[str, pd.DataFrame]:
    return {subject: pd.read_csv(Path(source_dir) / name, sep=";") for subject, name in FILES.items()}


def assign_student_ids(frames: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """A stable id for every row of each file; a math row takes its Portuguese twin's id."""
    ids = {subject: pd.Series([f"{ID_PREFIX[subject]}{i + 1:03d}" for i in range(len(frame))], index=frame.index)
           for subject, frame in frames.items()}
    math, por = frames["math"], frames["portuguese"]
    once = lambda frame: frame[~frame.duplicated(IDENTITY, keep=False)]  # noqa: E731
    pairs = (once(math)[IDENTITY].reset_index(names="math_row")
             .merge(once(por)[IDENTITY].reset_index(names="por_row"), on=IDENTITY, how="inner"))
    ids["math"].loc[pairs["math_row"].to_numpy()] = ids["portuguese"].loc[pairs["por_row"]].to_numpy()
    return ids


def adapt(source_dir: Path, out_dir: Path) -> dict[str, int]:
    frames = read_source(source_dir)
    ids = assign_student_ids(frames)

    schools = pd.DataFrame({
        "school_id": [f"uci-{code.lower()}" for code in SCHOOLS], "name": list(SCHOOLS.values()),
        "district": "alentejo", "stage": "senior",
    })

    # One row per student; a student in both files is described by the Portuguese row (the 27
    # identifying attributes, sex and age included, are the same in both by construction).
    people = pd.concat([
        frames[subject].assign(student_id=ids[subject]) for subject in ("portuguese", "math")
    ]).drop_duplicates("student_id", keep="first")
    students = pd.DataFrame({
        "student_id": people["student_id"],
        "sex": people["sex"].str.lower(),
        "birth_date": birth_date_from_age(people["age"], AGE_ON),
        "enrollment_year": SCHOOL_YEAR,
        "school": people["school"].map(lambda code: f"uci-{code.lower()}"),
        "age": people["age"],
    }).sort_values("student_id", kind="stable")

    grades = []
    for subject, frame in frames.items():
        for column, (term_id, exam, period) in PERIODS.items():
            grades.append(pd.DataFrame({
                "student_id": ids[subject], "term_id": term_id, "subject": subject, "exam": exam,
                "score": pd.to_numeric(frame[column]).astype(float), "full_mark": FULL_MARK, "period": period,
            }))
    grades = pd.concat(grades, ignore_index=True)

    absences = pd.concat([
        pd.DataFrame({"student_id": ids[subject], "subject": subject, "absences": frames[subject]["absences"]})
        for subject in frames
    ]).pivot(index="student_id", columns="subject", values="absences")
    attendance = pd.DataFrame({
        "student_id": absences.index, "term_id": ATTENDANCE_TERM, "days_enrolled": SCHOOL_DAYS,
        "days_absent": absences.max(axis=1).astype(np.int64),
        "absences_math": absences["math"].astype("Int64"),
        "absences_portuguese": absences["portuguese"].astype("Int64"),
    }).reset_index(drop=True)

    return write_tables(out_dir, {
        "schools": schools, "students": students, "terms": TERMS, "grades": grades, "attendance": attendance,
    })
