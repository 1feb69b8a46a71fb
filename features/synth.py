"""A synthetic city written as contract tables, deterministic for a seed.

Structure, not independent noise: districts and primary / junior / senior schools, classes of
about 45 that move up a grade each school year with their head teacher, students who change
school at the stage boundaries. Fitness values are placed on the national standard's own scale
(a persistent fitness and body-size trait per student, drifting year over year), so pass rates
and BMI categories come out in the range Chinese surveillance reports; grades carry a persistent
ability per subject, growth, class effects and exam noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.standards.csphs2014 import standard

DISTRICTS = ("shinan", "shibei", "licang", "laoshan", "chengyang", "huangdao")
STAGE_GRADES = {"primary": range(1, 7), "junior": range(7, 10), "senior": range(10, 13)}
CLASS_SIZE = 45
# Mean height (cm) by grade, from Chinese national growth references, boys / girls.
MEAN_HEIGHT = {
    "m": (120, 126, 132, 137, 142, 148, 155, 162, 167, 170, 171, 172),
    "f": (119, 125, 131, 137, 143, 150, 154, 157, 158, 159, 159.5, 160),
}
SUBJECTS_BY_STAGE = {
    "primary": ("chinese", "math", "english", "science"),
    "junior": ("chinese", "math", "english", "physics", "biology", "history", "politics"),
    "senior": ("chinese", "math", "english", "physics", "chemistry", "biology", "history"),
}
SURNAMES = ("wang", "li", "zhang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun")


@dataclass(frozen=True)
class CityPlan:
    students: int = 5000
    seed: int = 0
    school_years: int = 3
    last_school_year: int = 2025
    dirty: float = 0.0  # share of rows deliberately broken, to exercise ingest's quarantine


def synthesize(plan: CityPlan) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(plan.seed)
    years = list(range(plan.last_school_year - plan.school_years + 1, plan.last_school_year + 1))
    first_year = years[0]
    n = plan.students

    # --- students: a grade in the first year, sex, persistent traits ---
    grade0 = rng.integers(1, 13, n)
    sex = rng.choice(np.array(["m", "f"]), n)
    ids = np.array([f"S{plan.seed:02d}{i:07d}" for i in range(n)])
    birth_year = first_year - grade0 - 6 + (rng.random(n) < 0.67)
    birth_date = pd.to_datetime(
        [f"{y}-{m:02d}-{d:02d}" for y, m, d in zip(birth_year, rng.integers(1, 13, n), rng.integers(1, 29, n))]
    )
    students = pd.DataFrame({
        "student_id": ids, "sex": sex, "birth_date": birth_date.strftime("%Y-%m-%d"),
        "enrollment_year": first_year - grade0 + 1,
        "name": [f"{SURNAMES[i % len(SURNAMES)]} {i}" for i in rng.integers(0, 10**6, n)],
        "national_id": [f"3702{rng.integers(10**13, 10**14)}" for _ in range(n)],
    })
    fitness_trait = rng.normal(0, 1, n)
    body_trait = rng.normal(0, 1, n)

    # --- schools: enough of each stage for its share of students at ~CLASS_SIZE per class ---
    schools, school_of_stage = [], {}
    for stage, grades in STAGE_GRADES.items():
        share = np.isin(grade0, list(grades)).mean()
        count = max(1, int(round(n * share / (CLASS_SIZE * len(grades) * 3))))
        school_of_stage[stage] = [f"{stage[0].upper()}{k:03d}" for k in range(count)]
        for k, school_id in enumerate(school_of_stage[stage]):
            schools.append({"school_id": school_id, "name": f"{stage} school {k}",
                            "district": DISTRICTS[k % len(DISTRICTS)], "stage": stage})
    school_pick = rng.random(n)  # a student's school within a stage, kept across stage moves

    # --- classes, memberships, head teachers ---
    memberships, classes, teachers = [], {}, {}
    seat = rng.random(n)
    for year in years:
        grade = grade0 + (year - first_year)
        enrolled = grade <= 12
        stage = np.select([grade <= 6, grade <= 9], ["primary", "junior"], "senior")
        for stage_name, school_ids in school_of_stage.items():
            in_stage = enrolled & (stage == stage_name)
            school_index = (school_pick * len(school_ids)).astype(int)
            for s, school_id in enumerate(school_ids):
                for g in STAGE_GRADES[stage_name]:
                    members = np.flatnonzero(in_stage & (school_index == s) & (grade == g))
                    if members.size == 0:
                        continue
                    n_classes = max(1, int(np.ceil(members.size / CLASS_SIZE)))
                    # Sorting by a fixed seat keeps classmates together as they move up.
                    order = members[np.argsort(seat[members])]
                    for c, chunk in enumerate(np.array_split(order, n_classes)):
                        cohort = year - g + 1  # the year this class was in grade 1
                        class_id = f"{school_id}-{year}-{g:02d}-{c + 1}"
                        teacher_id = f"T{school_id}-{cohort}-{c + 1}"
                        teachers[teacher_id] = school_id
                        classes[class_id] = {"class_id": class_id, "school_id": school_id, "school_year": year,
                                             "grade": g, "head_teacher_id": teacher_id}
                        memberships.append(pd.DataFrame({"student_id": ids[chunk], "class_id": class_id,
                                                         "school_year": year}))
    class_memberships = pd.concat(memberships, ignore_index=True)
    class_table = pd.DataFrame(list(classes.values()))
    teacher_ids = sorted(teachers)
    teacher_table = pd.DataFrame({
        "teacher_id": teacher_ids, "school_id": [teachers[t] for t in teacher_ids],
        "sex": rng.choice(np.array(["m", "f"]), len(teacher_ids), p=[0.3, 0.7]),
        "birth_year": rng.integers(1965, 2000, len(teacher_ids)),
        "subject": rng.choice(np.array(["chinese", "math", "english"]), len(teacher_ids)),
        "title": rng.choice(np.array(["second", "first", "senior"]), len(teacher_ids)),
        "years_experience": rng.integers(1, 30, len(teacher_ids)),
    })

    terms = pd.DataFrame([
        {"term_id": f"{y}-{t}", "school_year": y, "term": t,
         "start_date": f"{y}-09-01" if t == 1 else f"{y + 1}-02-20",
         "end_date": f"{y + 1}-01-20" if t == 1 else f"{y + 1}-07-10"}
        for y in years for t in (1, 2)
    ])

    roster = class_memberships.merge(class_table[["class_id", "grade"]], on="class_id")
    index_of = pd.Series(np.arange(n), index=ids)
    roster["i"] = index_of[roster["student_id"]].to_numpy()
    tables = {
        "schools": pd.DataFrame(schools),
        "classes": class_table,
        "students": students,
        "class_memberships": class_memberships,
        "teachers": teacher_table,
        "terms": terms,
        "grades": _grades(rng, roster, terms, first_year),
        "fitness_tests": _fitness_tests(rng, roster, sex, fitness_trait, body_trait, first_year),
    }
    if plan.dirty > 0:
        _make_dirty(rng, tables, plan.dirty)
    return tables


def _grades(rng, roster: pd.DataFrame, terms: pd.DataFrame, first_year: int) -> pd.DataFrame:
    n_students = roster["i"].max() + 1
    ability = rng.normal(0, 1, (n_students, 1)) * 0.8 + rng.normal(0, 0.6, (n_students, 16))
    decline = rng.random(n_students) < 0.05  # some students slide sharply (academic-risk signal)
    class_effect = {c: rng.normal(0, 0.25) for c in roster["class_id"].unique()}
    frames = []
    for term in terms.itertuples():
        members = roster[roster["school_year"] == term.school_year]
        t = (term.school_year - first_year) * 2 + term.term - 1
        for exam in ("midterm", "final"):
            for stage, subjects in SUBJECTS_BY_STAGE.items():
                grades_in = {"primary": (1, 6), "junior": (7, 9), "senior": (10, 12)}[stage]
                m = members[members["grade"].between(*grades_in)]
                if m.empty:
                    continue
                for k, subject in enumerate(subjects):
                    i = m["i"].to_numpy()
                    latent = (ability[i, k] + 0.05 * t - np.where(decline[i], 0.35 * t, 0)
                              + m["class_id"].map(class_effect).to_numpy() + rng.normal(0, 0.35, len(i)))
                    full = np.where((subject in ("chinese", "math", "english")) & (m["grade"].to_numpy() >= 7), 150, 100)
                    share = 1 / (1 + np.exp(-(0.9 + 0.9 * latent)))
                    frames.append(pd.DataFrame({
                        "student_id": m["student_id"].to_numpy(), "term_id": term.term_id, "subject": subject,
                        "exam": exam, "score": np.round(share * full, 1), "full_mark": full,
                    }))
    return pd.concat(frames, ignore_index=True)


def _fitness_tests(rng, roster, sex, fitness_trait, body_trait, first_year) -> pd.DataFrame:
    std = standard()
    rows = []
    drift = {}
    for r in roster.sort_values(["school_year"]).itertuples():
        i, g, s, year = r.i, r.grade, sex[r.i], r.school_year
        # Year-over-year persistence: this year's form is last year's plus a little change.
        form = drift.get(i, fitness_trait[i]) * 0.85 + rng.normal(0, 0.5)
        drift[i] = form
        height = rng.normal(MEAN_HEIGHT[s][g - 1], 6.0)
        bands = std.bmi_bands(s, g)
        median_bmi = bands.normal_max - 0.58 * (bands.normal_max - bands.underweight_max)
        bmi = median_bmi * np.exp(0.16 * (body_trait[i] + 0.03 * g) + rng.normal(0, 0.03))
        weight = bmi * (height / 100) ** 2
        row = {
            "student_id": r.student_id, "test_date": f"{year}-11-{rng.integers(1, 29):02d}",
            "school_year": year, "grade": g, "sex": s,
            "height_cm": round(height, 1), "weight_kg": round(weight, 1),
        }
        for item in std.tested_items(g, s):
            points = 74 + 14 * (0.75 * form - 0.25 * body_trait[i] + 0.6 * rng.normal())
            row[item.column] = _value_for_points(std.thresholds(item.name, s, g), points, item.step)
        rows.append(row)
    columns = ["student_id", "test_date", "school_year", "grade", "sex", "height_cm", "weight_kg",
               "vital_capacity_ml", "run_50m_s", "sit_and_reach_cm", "rope_skip_1min", "sit_up_1min",
               "shuttle_50x8_s", "standing_long_jump_cm", "pull_up", "run_800m_s", "run_1000m_s"]
    return pd.DataFrame(rows).reindex(columns=columns)


def _value_for_points(cells, points: float, step: float) -> float:
    """The raw value an item needs to score `points`, interpolated on the standard's own table."""
    levels = np.array([level for level, _ in cells][::-1], dtype=float)  # ascending
    values = np.array([threshold for _, threshold in cells][::-1], dtype=float)
    if points <= levels[0]:
        slope = (values[1] - values[0]) / (levels[1] - levels[0])
        value = values[0] + slope * (points - levels[0])
    elif points >= levels[-1]:
        slope = (values[-1] - values[-2]) / (levels[-1] - levels[-2])
        value = values[-1] + slope * (points - levels[-1]) * 0.5
    else:
        value = np.interp(points, levels, values)
    value = max(value, 0.0)
    return round(round(value / step) * step, 1)


def _make_dirty(rng, tables: dict[str, pd.DataFrame], share: float) -> None:
    """Break a share of rows the way real exports break: impossible values, unknown ids, bad types."""
    fitness = tables["fitness_tests"]
    bad = rng.random(len(fitness)) < share
    fitness["run_50m_s"] = fitness["run_50m_s"].astype(object)
    fitness.loc[bad, "run_50m_s"] = rng.choice(np.array([2.0, 99.0, "fast"], dtype=object), bad.sum())
    grades = tables["grades"]
    bad = rng.random(len(grades)) < share
    grades.loc[bad, "student_id"] = [f"X{k:08d}" for k in range(bad.sum())]


def write_city(tables: dict[str, pd.DataFrame], out_dir: Path, *, file_format: str = "parquet") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in tables.items():
        path = out_dir / f"{name}.{file_format}"
        if file_format == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}).to_parquet(path, index=False)
        paths.append(path)
    return paths
