"""Fitness, teacher, class and course indicator families (features/indicators/{fitness,teachers,classes}.py).

A synthetic city of 1,500 students is written, ingested into a real lake and built once per
module; the arithmetic is checked by hand on tiny lakes written directly as lake Parquet, and
against straightforward pandas reference implementations on the city (the history JSON against
the per-student loop it replaced, byte for byte).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import TABLES, TEACHER_DIMENSIONS
from features.indicators import classes, fitness, teachers
from features.indicators.family import IndicatorFamily
from features.indicators.fitness import HISTORY_FIELDS, SCORE_COLUMNS, score_fitness_tests
from features.ingest import ARROW_TYPES, ingest
from features.standards.csphs2014 import ITEMS, standard
from features.synth import CityPlan, write_synthetic_city
from privacy.pseudonyms import Pseudonymizer

FAMILIES: tuple[IndicatorFamily, ...] = fitness.FAMILIES + teachers.FAMILIES + classes.FAMILIES
BY_NAME = {family.name: family for family in FAMILIES}
PLANT_DAY = "2026-07-11"  # the day after the synthetic city's last term end
# Families that get later rows from what the point-in-time test plants (no classes or teaching
# assignments of a later year are planted: a later year needs a re-exported `teachers` table too).
GROWN_BY_THE_PLANT = {"student_fitness", "student_fitness_history", "teacher_digital_literacy", "teacher_training",
                      "course_stats"}


def _build_all(lake: Path, out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    return {family.name: family.build(lake, out / f"{family.name}.parquet") for family in FAMILIES}


def _read(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / f"{name}.parquet").to_pandas()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("indicator-city")
    write_synthetic_city(CityPlan(students=1500, seed=11), root / "export")
    ingest(root / "export", lake_dir=root / "lake", pseudonymizer=Pseudonymizer(b"k" * 32))
    lake = (root / "lake").resolve()
    counts = _build_all(lake, root / "indicators")
    return {"root": root, "lake": lake, "out": root / "indicators", "counts": counts}


# --------------------------------------------------------------------------------------------
# Tiny hand-made lakes
# --------------------------------------------------------------------------------------------


def _write_lake(lake: Path, tables: dict[str, list[dict]]) -> Path:
    """Lake Parquet as ingest writes it: contract columns and types, dates as midnight timestamps."""
    lake.mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        columns = [c for c in TABLES[name].columns if not c.personal]
        arrays = []
        for column in columns:
            values = [record.get(column.name) for record in records]
            if column.kind == "date":
                values = [datetime.fromisoformat(v) if v is not None else None for v in values]
            arrays.append(pa.array(values, ARROW_TYPES[column.kind]))
        pq.write_table(pa.table(arrays, names=[c.name for c in columns]), lake / f"{name}.parquet")
    return lake


def _test_row(student: str, year: int, grade: int, good: bool, *, sex: str = "m", date: str | None = None,
              missing: str | None = None) -> dict:
    """A fitness test scoring exactly 100 (every tested item at its 100-point threshold, normal BMI, no
    bonus) or exactly 9.0 (every item at its worst physical value: 0 points; obese BMI: 60 x 0.15)."""
    std = standard()
    bands = std.bmi_bands(sex, grade)
    bmi = round((bands.underweight_max + bands.normal_max) / 2, 1) if good else bands.overweight_max + 5
    row = {"student_id": student, "test_date": date or f"{year}-10-10", "school_year": year, "grade": grade,
           "sex": sex, "height_cm": 125.0, "weight_kg": bmi * 1.5625}
    for item in std.tested_items(grade, sex):
        column = TABLES["fitness_tests"].column(item.column)
        worst = column.low if item.higher_is_better else column.high
        row[item.column] = std.thresholds(item.name, sex, grade)[0][1] if good else worst
    if missing:
        row[missing] = None
    return row


GOOD, POOR = 100.0, 9.0


@pytest.fixture
def fitness_lake(tmp_path):
    tests = [
        # Student A: primary grades 1-4, no test in grade 5, grade 6, then junior grade 7.
        _test_row("A", 2019, 1, False), _test_row("A", 2020, 2, False), _test_row("A", 2021, 3, True),
        _test_row("A", 2022, 4, False), _test_row("A", 2024, 6, True), _test_row("A", 2025, 7, False),
        # Student B (a girl): senior; grade 11's run is missing, so that year has no total.
        _test_row("B", 2023, 10, False, sex="f"), _test_row("B", 2024, 11, True, sex="f", missing="run_800m_s"),
        _test_row("B", 2025, 12, True, sex="f"),
        # Student C is not in the students table: never an indicator.
        _test_row("C", 2025, 7, True),
    ]
    students = [{"student_id": s, "sex": sex, "birth_date": "2012-01-01", "enrollment_year": 2019}
                for s, sex in (("A", "m"), ("B", "f"))]
    return _write_lake(tmp_path / "lake", {"students": students, "fitness_tests": tests})


@pytest.fixture
def school_lake(tmp_path):
    """Two classes of 2024 (and one of 2023), one teacher, two training courses."""
    terms = [
        {"term_id": "2023-2", "school_year": 2023, "term": 2, "start_date": "2024-02-20", "end_date": "2024-07-10"},
        {"term_id": "2024-1", "school_year": 2024, "term": 1, "start_date": "2024-09-01", "end_date": "2025-01-20"},
        {"term_id": "2024-2", "school_year": 2024, "term": 2, "start_date": "2025-02-20", "end_date": "2025-07-10"},
    ]
    classes_ = [
        {"class_id": "K0", "school_id": "S1", "school_year": 2023, "grade": 6, "head_teacher_id": "T2"},
        {"class_id": "K1", "school_id": "S1", "school_year": 2024, "grade": 7, "head_teacher_id": "T1"},
        {"class_id": "K2", "school_id": "S1", "school_year": 2024, "grade": 7, "head_teacher_id": "T2"},
    ]
    memberships = [
        {"student_id": "s1", "class_id": "K1", "school_year": 2024},
        {"student_id": "s2", "class_id": "K1", "school_year": 2024},
        {"student_id": "s3", "class_id": "K2", "school_year": 2024},
        {"student_id": "s1", "class_id": "K0", "school_year": 2023},
    ]
    grades = [
        # term 2024-1: s1 math: the final counts (90/120 = 0.75), not the midterm; s1 chinese 50/100;
        # s2 math: only a midterm, 72/120 = 0.6 exactly, a pass.
        {"student_id": "s1", "term_id": "2024-1", "subject": "math", "exam": "midterm", "score": 60.0, "full_mark": 100.0},
        {"student_id": "s1", "term_id": "2024-1", "subject": "math", "exam": "final", "score": 90.0, "full_mark": 120.0},
        {"student_id": "s1", "term_id": "2024-1", "subject": "chinese", "exam": "final", "score": 50.0, "full_mark": 100.0},
        {"student_id": "s2", "term_id": "2024-1", "subject": "math", "exam": "midterm", "score": 72.0, "full_mark": 120.0},
        {"student_id": "s1", "term_id": "2024-2", "subject": "math", "exam": "final", "score": 100.0, "full_mark": 100.0},
        {"student_id": "s1", "term_id": "2023-2", "subject": "math", "exam": "final", "score": 10.0, "full_mark": 100.0},
    ]
    tests = [_test_row("s1", 2024, 7, True, date="2024-10-10"),
             _test_row("s2", 2024, 7, False, date="2025-03-01"),  # after term 2024-1 ended
             _test_row("s1", 2023, 6, False, date="2023-10-10")]  # another school year
    attendance = [
        {"student_id": "s1", "term_id": "2024-1", "days_enrolled": 100, "days_absent": 5},
        {"student_id": "s2", "term_id": "2024-1", "days_enrolled": 100, "days_absent": 15},
    ]
    teachers_ = [
        {"teacher_id": "T1", "school_id": "S1", "sex": "f", "birth_year": 1985, "subject": "math",
         "title": "senior", "years_experience": 10},
        {"teacher_id": "T2", "school_id": "S1", "sex": "m", "birth_year": 1999, "subject": "chinese",
         "title": "none", "years_experience": 0},
    ]
    assignments = [
        {"teacher_id": "T1", "class_id": "K1", "subject": "math", "school_year": 2024},
        {"teacher_id": "T1", "class_id": "K1", "subject": "chinese", "school_year": 2024},
        {"teacher_id": "T1", "class_id": "K2", "subject": "math", "school_year": 2024},
        {"teacher_id": "T1", "class_id": "K0", "subject": "math", "school_year": 2023},
    ]
    courses = [
        {"course_id": "C1", "center_id": "CTR", "title": "a", "dimensions": "awareness;Application",
         "subject": "any", "level": "basic", "hours": 10.0},
        {"course_id": "C2", "center_id": "CTR", "title": "b", "dimensions": "development", "subject": "any",
         "level": "advanced", "hours": 20.0},
        {"course_id": "C3", "center_id": "CTR", "title": "c", "dimensions": "development", "subject": "any",
         "level": "basic", "hours": 4.0},
    ]
    trainings = [
        # C1 completed on the first day after term 2024-1 ended: it counts from term 2024-2 only.
        {"teacher_id": "T1", "course_id": "C1", "enrolled_on": "2024-12-01", "completed_on": "2025-01-21",
         "completed": True, "satisfaction": 4.0},
        # C2 never completed (its rating has no date: never counted).
        {"teacher_id": "T1", "course_id": "C2", "enrolled_on": "2025-02-01", "completed_on": None,
         "completed": False, "satisfaction": 1.0},
        # C3 completed on a term's end day: counts at that term's end.
        {"teacher_id": "T2", "course_id": "C3", "enrolled_on": "2024-06-01", "completed_on": "2024-07-10",
         "completed": True, "satisfaction": None},
    ]
    assessments = [
        {"teacher_id": "T1", "assessed_on": "2023-10-10", "dimension": d, "score": s}
        for d, s in zip(TEACHER_DIMENSIONS, (60.0, 62.0, 64.0, 66.0, 68.0))
    ] + [
        {"teacher_id": "T1", "assessed_on": "2024-10-12", "dimension": d, "score": s}
        for d, s in zip(TEACHER_DIMENSIONS[:4], (61.5, 60.0, 70.0, 66.0))  # development not assessed
    ]
    return _write_lake(tmp_path / "lake", {
        "terms": terms, "classes": classes_, "class_memberships": memberships, "grades": grades,
        "fitness_tests": tests, "attendance": attendance, "teachers": teachers_, "teaching_assignments": assignments,
        "training_courses": courses, "teacher_trainings": trainings, "teacher_assessments": assessments,
    })


def _rows(frame: pd.DataFrame, key: str, value: str) -> pd.DataFrame:
    return frame[frame[key] == value].sort_values("event_timestamp").reset_index(drop=True)


def _close(a, b) -> bool:
    if b is None or (isinstance(b, float) and np.isnan(b)):
        return a is None or pd.isna(a)
    return a is not None and not pd.isna(a) and abs(a - b) < 1e-9


def _assert_column(frame: pd.DataFrame, column: str, expected: list) -> None:
    got = frame[column].tolist()
    assert len(got) == len(expected), (column, got, expected)
    assert all(_close(g, e) for g, e in zip(got, expected)), (column, got, expected)


# --------------------------------------------------------------------------------------------
# Declarations and files
# --------------------------------------------------------------------------------------------


def test_every_family_writes_exactly_its_declared_schema(city):
    assert [f.name for f in FAMILIES] == [
        "student_fitness", "student_fitness_history", "teacher_digital_literacy", "teacher_training",
        "teacher_teaching", "class_outcomes", "course_stats"]
    for family in FAMILIES:
        schema = pq.read_schema(city["out"] / f"{family.name}.parquet")
        assert schema.remove_metadata() == family.arrow_schema(), family.name
        assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
        assert city["counts"][family.name] > 0, family.name
        assert pq.read_metadata(city["out"] / f"{family.name}.parquet").num_rows == city["counts"][family.name]


def test_student_fitness_keeps_every_field_the_feast_view_and_the_risk_service_read(tmp_path):
    from feast.types import Float64, Int64, String

    from features.feature_repo import FITNESS_RISK_BOUNDS, indicator_views

    kinds = {Int64: "int", Float64: "float", String: "str"}
    views = {getattr(v, "name", None): v for v in indicator_views(tmp_path)}
    fields = fitness.STUDENT_FITNESS.fields
    served, offline = views["student_fitness"].schema, views["student_fitness_offline"].schema
    # Every field is in exactly one of the two views, with its declared kind.
    assert sorted(f.name for f in served + offline) == sorted(fields)
    for field in served + offline:
        assert fields[field.name] == kinds[field.dtype], field.name
    assert {name.split(":")[1] for name in FITNESS_RISK_BOUNDS} <= {f.name for f in served}
    assert fitness.STUDENT_FITNESS_HISTORY.fields == {"history_json": "json"}


def test_one_row_per_key_and_timestamp(city):
    for family in FAMILIES:
        frame = _read(city["out"], family.name)
        assert not frame.duplicated([*family.keys, "event_timestamp"]).any(), family.name
        assert frame[family.keys].notna().all().all(), family.name


def test_a_lake_without_a_familys_tables_gives_an_empty_file_with_the_schema(tmp_path):
    lake = _write_lake(tmp_path / "lake", {"students": [{"student_id": "A", "sex": "m", "birth_date": "2012-01-01",
                                                         "enrollment_year": 2019}]})
    for family in FAMILIES:
        out = tmp_path / "out" / f"{family.name}.parquet"
        assert family.build(lake, out) == 0, family.name
        table = pq.read_table(out)
        assert table.num_rows == 0 and table.schema.remove_metadata() == family.arrow_schema()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith((".tmp", ".spill"))]


def test_optional_tables_missing_leave_their_fields_empty(school_lake, tmp_path):
    for name in ("grades", "fitness_tests", "attendance"):
        (school_lake / f"{name}.parquet").unlink()
    out = tmp_path / "class_outcomes.parquet"
    assert classes.build_class_outcomes(school_lake, out) == 5  # K0 x 1 term + (K1, K2) x 2 terms
    frame = pq.read_table(out).to_pandas()
    assert frame["students"].tolist() == [1, 2, 1, 2, 1]
    assert (frame["results"] == 0).all() and (frame["fitness_tested"] == 0).all()
    assert frame[["mean_score_share", "mean_fitness_total", "attendance_rate"]].isna().all().all()


# --------------------------------------------------------------------------------------------
# Fitness
# --------------------------------------------------------------------------------------------


def test_fitness_changes_failed_streak_and_graduation_score_by_hand(fitness_lake, tmp_path):
    assert fitness.build_student_fitness(fitness_lake, tmp_path / "f.parquet") == 9  # C is not a student
    frame = pq.read_table(tmp_path / "f.parquet").to_pandas()
    a, b = _rows(frame, "student_key", "A"), _rows(frame, "student_key", "B")
    _assert_column(a, "total_score", [POOR, POOR, GOOD, POOR, GOOD, POOR])
    assert a["level"].tolist() == ["fail", "fail", "excellent", "fail", "excellent", "fail"]
    _assert_column(a, "total_change", [None, 0.0, 91.0, -91.0, 91.0, -91.0])
    _assert_column(a, "change_run_50m", [None, 0.0, 100.0, -100.0, 100.0, -100.0])
    _assert_column(a, "change_bmi", [None, 0.0, 40.0, -40.0, 40.0, -40.0])  # obese 60 <-> normal 100
    _assert_column(a, "change_sit_up_1min", [None, None, None, -100.0, 100.0, None])  # tested from grade 3 to 6
    _assert_column(a, "change_rope_skip_1min", [None, 0.0, 100.0, -100.0, 100.0, None])  # not tested in grade 7
    _assert_column(a, "change_run_1000m", [None] * 6)
    assert a["years_since_previous_test"].tolist()[1:] == [1, 1, 1, 2, 1]
    assert pd.isna(a["years_since_previous_test"].iloc[0])
    assert a["years_failed_in_row"].tolist() == [1, 2, 0, 1, 0, 1]
    assert a["tests_taken"].tolist() == [1, 2, 3, 4, 5, 6]
    assert a["stage"].tolist() == ["primary"] * 5 + ["junior"]
    assert a["stage_tests"].tolist() == [1, 2, 3, 4, 5, 1]
    assert a["is_stage_final_year"].tolist() == [0, 0, 0, 0, 1, 0]
    _assert_column(a, "graduation_score", [
        POOR,  # no earlier test: the total itself
        0.5 * POOR + 0.5 * POOR,
        0.5 * GOOD + 0.5 * POOR,
        0.5 * POOR + 0.5 * (POOR + POOR + GOOD) / 3,
        0.5 * GOOD + 0.5 * (POOR + POOR + GOOD + POOR) / 4,  # grade 6: the primary graduation score
        POOR,  # a new stage starts over
    ])
    # B: the unscored grade-11 test has no total, level or graduation score, breaks the failed
    # streak, and is skipped in the grade-12 graduation score.
    _assert_column(b, "total_score", [POOR, None, GOOD])
    assert b["years_failed_in_row"].tolist() == [1, 0, 0]
    _assert_column(b, "total_change", [None, None, None])
    _assert_column(b, "graduation_score", [POOR, None, 0.5 * GOOD + 0.5 * POOR])
    assert b["is_stage_final_year"].tolist() == [0, 0, 1]
    assert (frame["event_timestamp"].dt.strftime("%Y-%m-%d") == frame["school_year"].astype(str) + "-10-10").all()


def _reference_history(scored: pd.DataFrame) -> pd.DataFrame:
    """The per-student implementation `fitness_history` had before it was vectorized."""

    def plain(value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        return value

    frame = scored.rename(columns={"student_id": "student_key"}).sort_values(["student_key", "school_year"])
    frame["event_timestamp"] = pd.to_datetime(frame["test_date"]).dt.tz_localize("UTC")
    frame["test_date"] = frame["event_timestamp"].dt.strftime("%Y-%m-%d")
    records = []
    for key, rows in frame.groupby("student_key", sort=False):
        so_far = []
        for row in rows.itertuples(index=False):
            year = {name: plain(getattr(row, name)) for name in HISTORY_FIELDS}
            year["scores"] = {c.removeprefix("score_"): plain(getattr(row, c)) for c in SCORE_COLUMNS}
            so_far.append(year)
            records.append((key, row.event_timestamp, json.dumps(so_far, ensure_ascii=False)))
    return pd.DataFrame(records, columns=["student_key", "event_timestamp", "history_json"])


@pytest.fixture(scope="module")
def scored_city(city):
    tests = pd.read_parquet(city["lake"] / "fitness_tests.parquet")
    return score_fitness_tests(tests)


def test_history_json_is_byte_identical_to_the_per_student_implementation(city, scored_city):
    built = _read(city["out"], "student_fitness_history")
    reference = _reference_history(scored_city)
    merged = reference.merge(built, on=["student_key", "event_timestamp"], how="outer", indicator=True,
                             suffixes=("_reference", "_built"))
    assert (merged["_merge"] == "both").all()
    assert (merged["history_json_reference"] == merged["history_json_built"]).all()
    # what the portrait reads: oldest first, the latest test last
    last = json.loads(built.sort_values("event_timestamp").groupby("student_key").tail(1)["history_json"].iloc[0])
    assert [y["school_year"] for y in last] == sorted(y["school_year"] for y in last)
    assert set(last[0]) == {*HISTORY_FIELDS, "scores"}


def test_career_indicators_match_a_pandas_reference_on_the_city(city, scored_city):
    built = _read(city["out"], "student_fitness")
    frame = scored_city.rename(columns={"student_id": "student_key"}).sort_values(["student_key", "school_year"])
    by = frame.groupby("student_key")
    for item in ["bmi", *[i.name for i in ITEMS]]:
        frame[f"change_{item}"] = by[f"score_{item}"].diff()
    frame["total_change"] = by["total_score"].diff()
    failed = frame["level"].eq("fail")
    streak = (~failed).groupby(frame["student_key"]).cumsum()
    frame["years_failed_in_row"] = failed.groupby([frame["student_key"], streak]).cumsum()
    stage = pd.cut(frame["grade"], [0, 6, 9, 12], labels=["primary", "junior", "senior"]).astype(str)
    earlier = frame.groupby([frame["student_key"], stage])["total_score"].transform(
        lambda s: s.expanding().mean().shift())
    frame["graduation_score"] = np.where(earlier.isna(), frame["total_score"],
                                         0.5 * frame["total_score"] + 0.5 * earlier)
    merged = frame.merge(built, on=["student_key", "school_year"], suffixes=("_reference", "_built"))
    assert len(merged) == len(built) == len(frame)
    for column in ["total_change", "years_failed_in_row", "graduation_score", "change_bmi",
                   *[f"change_{i.name}" for i in ITEMS]]:
        a, b = merged[f"{column}_reference"].astype(float), merged[f"{column}_built"].astype(float)
        assert np.allclose(a, b, equal_nan=True, rtol=0, atol=1e-9), column
    assert merged["years_failed_in_row_built"].max() >= 2  # the city has failed streaks to check


# --------------------------------------------------------------------------------------------
# Teachers
# --------------------------------------------------------------------------------------------


def test_teacher_literacy_by_hand(school_lake, tmp_path):
    assert teachers.build_teacher_digital_literacy(school_lake, tmp_path / "l.parquet") == 2
    t1 = pq.read_table(tmp_path / "l.parquet").to_pandas()
    _assert_column(t1, "awareness", [60.0, 61.5])
    _assert_column(t1, "change_awareness", [None, 1.5])
    _assert_column(t1, "change_knowledge_skills", [None, -2.0])
    _assert_column(t1, "change_application", [None, 6.0])
    _assert_column(t1, "change_responsibility", [None, 0.0])
    _assert_column(t1, "development", [68.0, None])
    _assert_column(t1, "change_development", [None, None])
    _assert_column(t1, "mean_score", [64.0, (61.5 + 60 + 70 + 66) / 4])
    _assert_column(t1, "change_mean_score", [None, (61.5 + 60 + 70 + 66) / 4 - 64.0])
    assert t1["dimensions_assessed"].tolist() == [5, 4]
    assert t1["assessments_taken"].tolist() == [1, 2]
    assert pd.isna(t1["days_since_previous"].iloc[0]) and t1["days_since_previous"].iloc[1] == 368


def test_teacher_literacy_changes_match_a_pandas_reference_on_the_city(city):
    built = _read(city["out"], "teacher_digital_literacy")
    raw = pd.read_parquet(city["lake"] / "teacher_assessments.parquet")
    wide = raw.pivot_table(index=["teacher_id", "assessed_on"], columns="dimension", values="score").reset_index()
    wide = wide.sort_values(["teacher_id", "assessed_on"])
    for d in TEACHER_DIMENSIONS:
        wide[f"change_{d}"] = wide.groupby("teacher_id")[d].diff()
    wide["event_timestamp"] = wide["assessed_on"].dt.tz_localize("UTC")
    merged = wide.rename(columns={"teacher_id": "teacher_key"}).merge(
        built, on=["teacher_key", "event_timestamp"], suffixes=("_reference", "_built"))
    assert len(merged) == len(built) == len(wide)
    for d in TEACHER_DIMENSIONS:
        for column in (d, f"change_{d}"):
            assert np.allclose(merged[f"{column}_reference"], merged[f"{column}_built"], equal_nan=True), column
    assert merged["change_awareness_built"].notna().sum() > 0


def test_training_counts_a_course_only_from_its_completion_date(school_lake, tmp_path):
    assert teachers.build_teacher_training(school_lake, tmp_path / "t.parquet") == 6  # 2 teachers x 3 terms
    frame = pq.read_table(tmp_path / "t.parquet").to_pandas()
    t1, t2 = _rows(frame, "teacher_key", "T1"), _rows(frame, "teacher_key", "T2")
    assert t1["term_id"].tolist() == ["2023-2", "2024-1", "2024-2"]
    _assert_column(t1, "hours_completed", [0.0, 0.0, 10.0])  # C1 completed the day after 2024-1 ended
    _assert_column(t1, "hours_completed_in_term", [0.0, 0.0, 10.0])
    assert t1["courses_enrolled"].tolist() == [0, 1, 2]
    assert t1["courses_completed"].tolist() == [0, 0, 1]
    _assert_column(t1, "completion_rate", [None, 0.0, 0.5])
    _assert_column(t1, "hours_awareness", [0.0, 0.0, 10.0])
    _assert_column(t1, "hours_application", [0.0, 0.0, 10.0])  # dimension codes are case-insensitive
    _assert_column(t1, "hours_development", [0.0, 0.0, 0.0])  # C2 never completed
    _assert_column(t2, "hours_completed", [4.0, 4.0, 4.0])  # completed on 2023-2's last day
    _assert_column(t2, "hours_completed_in_term", [4.0, 0.0, 0.0])
    _assert_column(t2, "hours_development", [4.0, 4.0, 4.0])
    assert (frame["event_timestamp"].dt.strftime("%m-%d").isin(["07-10", "01-20"])).all()


def test_training_hours_match_a_pandas_reference_on_the_city(city):
    built = _read(city["out"], "teacher_training")
    trainings = pd.read_parquet(city["lake"] / "teacher_trainings.parquet").merge(
        pd.read_parquet(city["lake"] / "training_courses.parquet")[["course_id", "hours"]], on="course_id")
    terms = pd.read_parquet(city["lake"] / "terms.parquet")
    people = pd.read_parquet(city["lake"] / "teachers.parquet")[["teacher_id"]]
    rows = people.merge(terms[["term_id", "end_date"]], how="cross").merge(trainings, on="teacher_id", how="left")
    done = rows["completed"].astype("boolean").fillna(False).astype(bool) & (rows["completed_on"] <= rows["end_date"])
    rows["hours_done"] = np.where(done, rows["hours"], 0.0)
    rows["enrolled"] = rows["enrolled_on"] <= rows["end_date"]
    reference = rows.groupby(["teacher_id", "term_id"]).agg(
        hours=("hours_done", "sum"), enrolled=("enrolled", "sum")).reset_index()
    merged = reference.rename(columns={"teacher_id": "teacher_key"}).merge(built, on=["teacher_key", "term_id"])
    assert len(merged) == len(built) == len(reference)
    assert np.allclose(merged["hours"], merged["hours_completed"])
    assert (merged["enrolled"] == merged["courses_enrolled"]).all()
    assert merged["hours_completed"].max() > 0
    # cumulative: never decreasing from one term to the next
    ordered = built.sort_values(["teacher_key", "event_timestamp"])
    assert (ordered.groupby("teacher_key")["hours_completed"].diff().dropna() >= 0).all()


def test_teaching_load_by_hand(school_lake, tmp_path):
    assert teachers.build_teacher_teaching(school_lake, tmp_path / "t.parquet") == 4
    frame = pq.read_table(tmp_path / "t.parquet").to_pandas()
    t1, t2 = _rows(frame, "teacher_key", "T1"), _rows(frame, "teacher_key", "T2")
    assert t1["school_year"].tolist() == [2023, 2024]
    assert t1["event_timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2023-09-01", "2024-09-01"]
    assert t1["subjects"].tolist() == ["math", "chinese;math"]
    assert t1["subjects_taught"].tolist() == [1, 2]
    assert t1["classes_taught"].tolist() == [1, 2]
    assert t1["students_taught"].tolist() == [1, 3]
    assert t1["is_head_teacher"].tolist() == [0, 1]
    assert t1["head_class_id"].tolist() == [None, "K1"]
    assert t1["years_experience"].tolist() == [9, 10]  # the snapshot is as of 2024, the latest year
    assert t1["title"].tolist() == [None, "senior"]  # an earlier title is unknown
    # T2 heads classes without a teaching assignment
    assert t2["classes_taught"].tolist() == [0, 0] and t2["is_head_teacher"].tolist() == [1, 1]
    assert t2["head_class_id"].tolist() == ["K0", "K2"] and t2["school_id"].tolist() == ["S1", "S1"]
    assert t2["years_experience"].tolist() == [0, 0]  # floored at 0


# --------------------------------------------------------------------------------------------
# Classes and courses
# --------------------------------------------------------------------------------------------


def test_class_outcomes_by_hand(school_lake, tmp_path):
    assert classes.build_class_outcomes(school_lake, tmp_path / "c.parquet") == 5
    frame = pq.read_table(tmp_path / "c.parquet").to_pandas()
    k0, k1, k2 = (_rows(frame, "class_id", k) for k in ("K0", "K1", "K2"))
    assert k1["term_id"].tolist() == ["2024-1", "2024-2"]
    assert k1["event_timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2025-01-20", "2025-07-10"]
    assert k1["students"].tolist() == [2, 2] and k1["grade"].tolist() == [7, 7]
    assert k1["results"].tolist() == [3, 1]
    _assert_column(k1, "mean_score_share", [(0.75 + 0.5 + 0.6) / 3, 1.0])
    _assert_column(k1, "pass_rate", [2 / 3, 1.0])
    # s2's test of 2025-03-01 counts only once its date has passed (term 2024-2)
    assert k1["fitness_tested"].tolist() == [1, 2]
    _assert_column(k1, "mean_fitness_total", [GOOD, (GOOD + POOR) / 2])
    _assert_column(k1, "fitness_pass_rate", [1.0, 0.5])
    _assert_column(k1, "fitness_good_rate", [1.0, 0.5])
    _assert_column(k1, "attendance_rate", [1 - 20 / 200, None])
    assert k1["median_growth_percentile"].isna().all()
    assert k2["students"].tolist() == [1, 1] and (k2["results"] == 0).all() and k2["pass_rate"].isna().all()
    # K0 (2023): only its own school year's term, grades and test
    assert k0["term_id"].tolist() == ["2023-2"]
    _assert_column(k0, "mean_score_share", [0.1])
    _assert_column(k0, "mean_fitness_total", [POOR])


def test_course_stats_by_hand(school_lake, tmp_path):
    assert classes.build_course_stats(school_lake, tmp_path / "c.parquet") == 9  # 3 courses x 3 terms
    frame = pq.read_table(tmp_path / "c.parquet").to_pandas()
    c1, c2, c3 = (_rows(frame, "course_id", c) for c in ("C1", "C2", "C3"))
    assert c1["enrolled"].tolist() == [0, 1, 1] and c1["enrolled_in_term"].tolist() == [0, 1, 0]
    assert c1["completed"].tolist() == [0, 0, 1]
    _assert_column(c1, "completion_rate", [None, 0.0, 1.0])
    assert c1["ratings"].tolist() == [0, 0, 1]
    _assert_column(c1, "mean_satisfaction", [None, None, 4.0])
    assert c2["enrolled"].tolist() == [0, 0, 1] and (c2["ratings"] == 0).all()  # a non-completer's rating
    assert c3["completed"].tolist() == [1, 1, 1] and (c3["ratings"] == 0).all()
    assert c1["hours"].tolist() == [10.0] * 3 and c1["center_id"].tolist() == ["CTR"] * 3


# --------------------------------------------------------------------------------------------
# Point in time
# --------------------------------------------------------------------------------------------


def _append(lake: Path, name: str, rows: pd.DataFrame) -> None:
    table = pq.read_table(lake / f"{name}.parquet")
    extra = pa.Table.from_pandas(rows[table.schema.names], schema=table.schema, preserve_index=False)
    pq.write_table(pa.concat_tables([table, extra]), lake / f"{name}.parquet")


def test_planted_later_values_never_change_earlier_rows(city, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(city["lake"], lake, ignore=shutil.ignore_patterns("quarantine"))
    day = pd.Timestamp(PLANT_DAY)
    _append(lake, "terms", pd.DataFrame({"term_id": ["2026-1"], "school_year": [2026], "term": [1],
                                         "start_date": [pd.Timestamp("2026-09-01")],
                                         "end_date": [pd.Timestamp("2027-01-20")]}))
    # a later fitness test (grade + 1, a year on) for every student tested in 2025, scoring very differently
    tests = pd.read_parquet(lake / "fitness_tests.parquet")
    later = tests[tests["school_year"] == 2025].copy()
    later["school_year"], later["test_date"] = 2026, pd.Timestamp("2026-10-10")
    later["grade"] = (later["grade"] + 1).clip(upper=12)
    later["run_50m_s"] = 29.0
    _append(lake, "fitness_tests", later)
    # later exam results and attendance of the new term
    grades = pd.read_parquet(lake / "grades.parquet")
    later_grades = grades[grades["term_id"] == "2025-2"].copy()
    later_grades["term_id"], later_grades["score"] = "2026-1", 0.0
    _append(lake, "grades", later_grades)
    attendance = pd.read_parquet(lake / "attendance.parquet")
    later_attendance = attendance[attendance["term_id"] == "2025-2"].copy()
    later_attendance["term_id"], later_attendance["days_absent"] = "2026-1", later_attendance["days_enrolled"]
    _append(lake, "attendance", later_attendance)
    # a later literacy assessment for every teacher, and every open enrolment completed later
    assessments = pd.read_parquet(lake / "teacher_assessments.parquet")
    later_assessments = assessments.drop_duplicates(["teacher_id", "dimension"]).copy()
    later_assessments["assessed_on"], later_assessments["score"] = pd.Timestamp("2026-10-15"), 100.0
    _append(lake, "teacher_assessments", later_assessments)
    trainings = pd.read_parquet(lake / "teacher_trainings.parquet")
    open_ = ~trainings["completed"]
    assert open_.any()
    trainings.loc[open_, "completed"] = True
    trainings.loc[open_, "completed_on"] = day + pd.Timedelta(days=30)
    trainings.loc[open_, "satisfaction"] = 5.0
    pq.write_table(pa.Table.from_pandas(trainings, schema=pq.read_schema(lake / "teacher_trainings.parquet"),
                                        preserve_index=False), lake / "teacher_trainings.parquet")

    counts = _build_all(lake, tmp_path / "indicators")
    for family in FAMILIES:
        before = _read(city["out"], family.name)
        after = _read(tmp_path / "indicators", family.name)
        keys = [*family.keys, "event_timestamp"]
        cutoff = pd.Timestamp(PLANT_DAY, tz="UTC")
        old = before[before["event_timestamp"] < cutoff].sort_values(keys).reset_index(drop=True)
        new = after[after["event_timestamp"] < cutoff].sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(old, new, obj=family.name)
        if family.name in GROWN_BY_THE_PLANT:
            assert counts[family.name] > city["counts"][family.name], family.name
            assert (after["event_timestamp"] >= cutoff).any(), family.name


def test_class_outcomes_are_the_same_whatever_the_student_buckets(school_lake, tmp_path, monkeypatch):
    """The results pass runs bucket of students by bucket: any cut gives the same class rows."""
    classes.build_class_outcomes(school_lake, tmp_path / "one.parquet")
    monkeypatch.setattr(classes, "GRADE_ROWS_PER_BUCKET", 1)
    classes.build_class_outcomes(school_lake, tmp_path / "many.parquet")
    one, many = (pq.read_table(tmp_path / name).to_pandas().sort_values(["class_id", "event_timestamp"])
                 .reset_index(drop=True) for name in ("one.parquet", "many.parquet"))
    pd.testing.assert_frame_equal(one, many)


def test_fitness_families_are_the_same_whatever_the_student_buckets(city, tmp_path, monkeypatch):
    """Tests are scored and the fitness families built bucket of students by bucket (each bucket a
    range of the student-sorted lake): cut into many buckets, the rows are the same as in one."""
    monkeypatch.setattr(fitness, "SCORED_BUCKET_ROWS", 200)
    for family in fitness.FAMILIES:
        family.build(city["lake"], tmp_path / f"{family.name}.parquet")
    assert len(list((tmp_path / fitness.SCORED_DIR).glob("*/0*.parquet"))) > 5  # many buckets were scored
    for family in fitness.FAMILIES:
        keys = [*family.keys, "event_timestamp"]
        one, many = (_read(folder, family.name).sort_values(keys).reset_index(drop=True)
                     for folder in (city["out"], tmp_path))
        pd.testing.assert_frame_equal(many, one, obj=family.name)
