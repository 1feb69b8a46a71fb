"""US National Youth Fitness Survey 2012 (NNYFS, CDC) extract → contract tables.

Source (`nnyfs_2012/`): `nnyfs.csv`, 1,518 children aged 3–15 (SEQN, sex, age in years,
measured height and weight, BMI, circumferences and skinfolds, plank time, questionnaire items
on activity, screen time, diet, health and insurance); `nyfs2.csv`, 280 children aged 3–6 of
the same survey with the TGMD-2 gross-motor quotient.

Grade from age. The contract's fitness tests are for school grades 1–12 under the Chinese
standard: a child starts grade 1 in September if 6 by August 31st. On the placeholder test date
(November 1st, early in the school year) a child of `age` whole years is then in grade
`age − 5` for 10 of the 12 possible birth months (6 → 1, 15 → 10). The survey's own
`educ_child` (highest US grade completed) agrees: its most common value at each age 6–15 is
exactly `age − 6`, i.e. the child is in grade `age − 5`. Children under 6 (ages 3–5, 336 of
them) have no school grade and are not written.

| source field | contract table.column | notes |
|---|---|---|
| SEQN | students.student_id `nnyfs-<SEQN>` | stable: the survey's own id |
| sex Female/Male | students.sex, fitness_tests.sex f/m | |
| age_child | fitness_tests.grade = age − 5 | ages 6–15 → grades 1–10; kept as extra column `age_years` |
| age_child | students.birth_date | **placeholder**: the middle of the birth dates that give this age on the test date, i.e. test date − age − 6 months |
| — | students.enrollment_year | 2012, the survey year (the year of school entry is not given) |
| — | fitness_tests.test_date 2012-11-01, school_year 2012 | **placeholder**: NNYFS 2012 fieldwork; the extract has no exam dates. The grade rule above is stated for this date |
| height (cm) | fitness_tests.height_cm | measured at the exam: the same item and unit |
| weight (kg) | fitness_tests.weight_kg | measured at the exam: the same item and unit |
| — | vital_capacity_ml, run_50m_s, sit_and_reach_cm, rope_skip_1min, sit_up_1min, shuttle_50x8_s, standing_long_jump_cm, pull_up, run_800m_s, run_1000m_s | empty: the extract has none of these items |
| plank_time (s) | fitness_tests (extra column `plank_s`) | the plank is not a CSPHS 2014 item, so no contract column |

A child of school age without a measured height or weight (4 in the file) is a student with no
fitness test. Not written: schools, classes, teachers (a household survey: no school, class or
teacher is invented). Dropped: `nyfs2.csv` (ages 3–6 — 270 of its 280 children are in
nnyfs.csv with the same height and weight — and the TGMD-2 gross-motor quotient, which is not a
contract item); BMI and BMI category (the engine computes them from height and weight);
circumferences and skinfolds; race, income, language, diet, activity, screen time, health and
insurance items (the contract has no place for them).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from features.adapters._common import birth_date_from_age, write_tables

FILE = "nnyfs.csv"
TEST_DATE = date(2012, 11, 1)
SCHOOL_YEAR = 2012
FIRST_SCHOOL_AGE = 6  # grade 1
SEX = {"Female": "f", "Male": "m"}
ITEMS = ("vital_capacity_ml", "run_50m_s", "sit_and_reach_cm", "rope_skip_1min", "sit_up_1min",
         "shuttle_50x8_s", "standing_long_jump_cm", "pull_up", "run_800m_s", "run_1000m_s")


def grade_for_age(age: pd.Series) -> pd.Series:
    return age - (FIRST_SCHOOL_AGE - 1)


def adapt(source_dir: Path, out_dir: Path) -> dict[str, int]:
    survey = pd.read_csv(Path(source_dir) / FILE)
    children = survey[survey["age_child"] >= FIRST_SCHOOL_AGE].sort_values("SEQN")
    student_id = "nnyfs-" + children["SEQN"].astype(str)

    students = pd.DataFrame({
        "student_id": student_id, "sex": children["sex"].map(SEX),
        "birth_date": birth_date_from_age(children["age_child"], TEST_DATE),
        "enrollment_year": SCHOOL_YEAR,
    })

    measured = children["height"].notna() & children["weight"].notna()
    tested = children[measured]
    fitness_tests = pd.DataFrame({
        "student_id": student_id[measured], "test_date": TEST_DATE.isoformat(), "school_year": SCHOOL_YEAR,
        "grade": grade_for_age(tested["age_child"]).astype("int64"), "sex": tested["sex"].map(SEX),
        "height_cm": tested["height"].astype(float), "weight_kg": tested["weight"].astype(float),
        **{item: pd.Series(pd.NA, index=tested.index, dtype="Float64") for item in ITEMS},
        "plank_s": tested["plank_time"].astype(float), "age_years": tested["age_child"],
    })

    return write_tables(out_dir, {"students": students, "fitness_tests": fitness_tests})
