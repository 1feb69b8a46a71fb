"""Tennessee Project STAR, long form (`mlmRev::star`) → contract tables.

Source (`star/mlmRev_star.csv`): 26,796 rows, one per student and grade (K, 1, 2, 3) of the
cohort that entered kindergarten in 1985/86: school (sch, 80 schools, school type), class type
(small / regular / regular with aide), the class teacher (tch, 1,387; each teaches one class in
one grade) with highest degree, career-ladder level, years of experience and race, the
student's sex, race, free-lunch status, birth year and quarter, and Stanford Achievement Test
reading and math scaled scores (about 290–780) at the end of the year.

Calendar. K was 1985/86, grade 1 1986/87, grade 2 1987/88, grade 3 1988/89. The contract only
accepts school years 2000–2100, so every STAR year and date is **shifted by +30 years**
(K = 2015, grade 3 = 2018; births 1977–1982 → 2007–2012). One constant shift keeps every age,
interval and order; the source year is kept as an extra column `source_school_year` on terms
and classes. (+30 keeps STAR's term ids clear of UCI's 2005 and OULAD's 2012–2014.)

Kindergarten. Contract classes have grades 1–12, so a K class cannot be a contract class
(mapping K to grade 1 would collide with the real grade 1 of the next year). K is kept where the
contract has room for it: K scores are in standardized_scores (grade 0) and K teachers are in
teachers; K classes, K class memberships and K teaching assignments are not written.

| source field | contract table.column | notes |
|---|---|---|
| sch | schools.school_id `star-sNN`, name `STAR school NN`, stage `primary` | district **placeholder** `tennessee` (the extract does not name districts); schtype kept as extra column `school_type` |
| tch | teachers.teacher_id `star-tNNNN`; school_id = its school | |
| exp | teachers.years_experience | missing for 11 teachers: **placeholder** the median of the others, rounded |
| clad (career ladder) | teachers.title | the Tennessee Career Ladder as the nearest rank: level 1 → `second`, 2 → `first`, 3 → `senior`; apprentice, probation, not on the ladder, pending or missing → `none`; source kept as extra column `career_ladder` |
| hdeg | teachers (extra column `highest_degree`) | |
| — | teachers.sex | **placeholder** `f`: not in the extract (the contract requires it) |
| — | teachers.birth_year | **placeholder**: (shifted) school year − 22 − years of experience, i.e. started teaching at 22 |
| — | teachers.subject | `general`: K–3 class teachers teach the whole curriculum |
| tch in grades 1–3 | classes.class_id `star-cNNNN` (one class per teacher), grade, school_year, head_teacher_id = the teacher | cltype kept as extra column `class_type` (`small`, `regular`, `regular_aide`) |
| id, gr 1–3 | class_memberships | one per student and school year |
| tch, gr 1–3 | teaching_assignments, subjects `reading` and `math` | the two subjects STAR tested; the class teacher taught both |
| id | students.student_id `star-<id>` | stable: the dataset's own id |
| sx | students.sex | the 20 students (20 rows) with no sex are dropped: the contract requires m/f and it is not guessed |
| birthy, birthq | students.birth_date | **placeholder** day: the middle of the quarter (Feb 15, May 15, Aug 15, Nov 15), shifted; year known but quarter not → July 1; year missing → 1980-03-01 (middle of the cohort's birth dates), shifted |
| first grade in STAR | students.enrollment_year | the (shifted) school year the student entered the study |
| read, math | standardized_scores (**table added to the contract**): subject `reading` / `math`, test `stanford_achievement`, scale_score, grade (0 = K) | end-of-year tests, so on term 2 of each year; a missing score is not a row |
| — | terms `2015-2` … `2018-2` | **placeholder** dates: the spring half of a Tennessee school year, Jan 4 – May 31 (shifted) |

Not written: grades (scaled scores have no full mark and exceed the contract's 0–200 score
range; they are standardized_scores). Dropped: student race and free-lunch status, teacher race
(the contract has no place for them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.adapters._common import write_tables

FILE = "mlmRev_star.csv"
YEAR_SHIFT = 30
SOURCE_YEAR = {"K": 1985, "1": 1986, "2": 1987, "3": 1988}
GRADE = {"K": 0, "1": 1, "2": 2, "3": 3}
QUARTER_DAY = {"1": "02-15", "2": "05-15", "3": "08-15", "4": "11-15"}
UNKNOWN_BIRTH = "1980-03-01"
TITLE = {"1": "second", "2": "first", "3": "senior", "APPR": "none", "PROB": "none", "NOT": "none", "PEND": "none"}
CLASS_TYPE = {"small": "small", "reg": "regular", "reg+A": "regular_aide"}
SUBJECTS = {"read": "reading", "math": "math"}
TEST = "stanford_achievement"
START_TEACHING_AGE = 22


def read_source(source_dir: Path) -> pd.DataFrame:
    star = pd.read_csv(Path(source_dir) / FILE, dtype={"gr": str, "clad": str, "birthq": str})
    star["source_school_year"] = star["gr"].map(SOURCE_YEAR)
    star["school_year"] = star["source_school_year"] + YEAR_SHIFT
    return star


def birth_date(birthq: pd.Series, birthy: pd.Series) -> pd.Series:
    """Placeholder birth dates from STAR's year and quarter (see the table above), shifted."""
    parts = birthq.fillna("NA:NA").str.split(":", expand=True)
    year = pd.to_numeric(birthy, errors="coerce").fillna(pd.to_numeric(parts[0], errors="coerce"))
    day = parts[1].map(QUARTER_DAY)
    text = np.where(year.isna(), UNKNOWN_BIRTH,
                    year.astype("Int64").astype(str) + "-" + day.fillna("07-01"))
    return pd.Series(text, index=birthq.index).map(
        lambda d: (pd.Timestamp(d) + pd.DateOffset(years=YEAR_SHIFT)).strftime("%Y-%m-%d"))


def adapt(source_dir: Path, out_dir: Path) -> dict[str, int]:
    everyone = read_source(source_dir)
    star = everyone[everyone["sx"].notna()].copy()  # no sex, no contract student (20 rows)
    star["student_id"] = "star-" + star["id"].astype(str)
    star["class_id"] = star["tch"].map(lambda t: f"star-c{t:04d}")
    star["term_id"] = star["school_year"].astype(str) + "-2"

    years = sorted(star["school_year"].unique())
    terms = pd.DataFrame({
        "term_id": [f"{y}-2" for y in years], "school_year": years, "term": 2,
        "start_date": [f"{y + 1}-01-04" for y in years], "end_date": [f"{y + 1}-05-31" for y in years],
        "source_school_year": [y - YEAR_SHIFT for y in years],
    })

    # Schools and teachers: all of them, from the full file (none is lost with a dropped student).
    school_rows = everyone.drop_duplicates("sch").sort_values("sch")
    schools = pd.DataFrame({
        "school_id": school_rows["sch"].map(lambda s: f"star-s{s:02d}"),
        "name": "STAR school " + school_rows["sch"].astype(str),
        "district": "tennessee", "stage": "primary", "school_type": school_rows["schtype"],
    })
    teacher_rows = everyone.drop_duplicates("tch").sort_values("tch")
    experience = teacher_rows["exp"].fillna(round(teacher_rows["exp"].median())).astype("int64")
    teachers = pd.DataFrame({
        "teacher_id": teacher_rows["tch"].map(lambda t: f"star-t{t:04d}"),
        "school_id": teacher_rows["sch"].map(lambda s: f"star-s{s:02d}"),
        "sex": "f",
        "birth_year": teacher_rows["school_year"] - START_TEACHING_AGE - experience,
        "subject": "general",
        "title": teacher_rows["clad"].map(TITLE).fillna("none"),
        "years_experience": experience,
        "highest_degree": teacher_rows["hdeg"], "career_ladder": teacher_rows["clad"],
        "grade_taught": teacher_rows["gr"],
    })

    graded = teacher_rows[teacher_rows["gr"] != "K"]
    classes = pd.DataFrame({
        "class_id": graded["tch"].map(lambda t: f"star-c{t:04d}"),
        "school_id": graded["sch"].map(lambda s: f"star-s{s:02d}"),
        "school_year": graded["school_year"], "grade": graded["gr"].astype(int),
        "head_teacher_id": graded["tch"].map(lambda t: f"star-t{t:04d}"),
        "class_type": graded["cltype"].map(CLASS_TYPE), "source_school_year": graded["source_school_year"],
    })
    teaching_assignments = pd.concat([
        pd.DataFrame({"teacher_id": classes["head_teacher_id"], "class_id": classes["class_id"],
                      "subject": subject, "school_year": classes["school_year"]})
        for subject in SUBJECTS.values()
    ], ignore_index=True)

    in_class = star[star["gr"] != "K"]
    class_memberships = pd.DataFrame({
        "student_id": in_class["student_id"], "class_id": in_class["class_id"],
        "school_year": in_class["school_year"],
    })

    people = star.sort_values(["id", "school_year"]).drop_duplicates("id")
    students = pd.DataFrame({
        "student_id": people["student_id"], "sex": people["sx"].str.lower(),
        "birth_date": birth_date(people["birthq"], people["birthy"]),
        "enrollment_year": people["school_year"],
    })

    standardized_scores = pd.concat([
        pd.DataFrame({
            "student_id": star["student_id"], "term_id": star["term_id"], "subject": subject, "test": TEST,
            "scale_score": star[column], "grade": star["gr"].map(GRADE),
        }).dropna(subset=["scale_score"])
        for column, subject in SUBJECTS.items()
    ], ignore_index=True)

    return write_tables(out_dir, {
        "schools": schools, "classes": classes, "students": students, "class_memberships": class_memberships,
        "teachers": teachers, "teaching_assignments": teaching_assignments, "terms": terms,
        "standardized_scores": standardized_scores,
    })
