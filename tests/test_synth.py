"""The synthetic city (`features.synth`): deterministic, contract-clean, realistic, streamed.

What users rely on: the same plan gives the same files; every contract table is there with its
columns, codes and ranges; the structure is a real school system's (classes of ~45, students
who move up a grade each year, head teachers who teach their class); fitness looks like Chinese
surveillance under the national standard; the risk and training signals are there and the
ground truth describes them; a dirty city breaks every ingest rule in the share asked; and
writing in chunks gives the same city as writing at once, holding no more than a chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import SUBJECTS, TABLES
from features.indicators.fitness import score_fitness_tests
from features.synth import (
    CITY_TABLES, DIRT, DIRT_KINDS, CityPlan, _write, read_city, read_ground_truth, synthesize, write_synthetic_city,
)

BIG_TABLES = ("class_memberships", "grades", "fitness_tests", "literacy_assessments", "conduct_records",
              "activity_records", "attendance", "teacher_assessments")
PLAN = CityPlan(students=12_000, seed=11)  # 2 zones, 6 school years


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """PLAN written in chunks of 3,000 students (each zone flushed on its own)."""
    out = tmp_path_factory.mktemp("city")
    rows, stats = _write(PLAN, out, chunk_students=3_000)
    return out, rows, stats


@pytest.fixture(scope="module")
def city(written) -> dict[str, pd.DataFrame]:
    return read_city(written[0])


@pytest.fixture(scope="module")
def truth(written) -> dict[str, pd.DataFrame]:
    return read_ground_truth(written[0])


@pytest.fixture(scope="module")
def scored(city) -> pd.DataFrame:
    frame = score_fitness_tests(city["fitness_tests"])
    frame["stage"] = np.select([frame["grade"] <= 6, frame["grade"] <= 9], ["primary", "junior"], "senior")
    return frame


def contract_violations(name: str, frame: pd.DataFrame, parents: dict[str, pd.DataFrame]) -> list[str]:
    """Every way `frame` breaks features.contract.TABLES[name], checked without ingest."""
    table, problems = TABLES[name], []
    missing = [c for c in table.required if c not in frame.columns]
    if missing:
        return [f"{name}: missing {missing}"]
    for column in table.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        empty = values.isna()
        if values.dtype == object:
            empty |= values.astype(str).str.strip().eq("")
        if not column.nullable and empty.any():
            problems.append(f"{name}.{column.name}: {int(empty.sum())} empty")
        present = values[~empty]
        if column.kind in ("int", "float"):
            numbers = pd.to_numeric(present, errors="coerce")
            if numbers.isna().any():
                problems.append(f"{name}.{column.name}: not numbers")
            if column.kind == "int" and (numbers != np.floor(numbers)).any():
                problems.append(f"{name}.{column.name}: not whole")
            if column.low is not None and ((numbers < column.low) | (numbers > column.high)).any():
                problems.append(f"{name}.{column.name}: out of {column.low}-{column.high}")
        elif column.kind == "date":
            if pd.to_datetime(present, format="%Y-%m-%d", errors="coerce").isna().any():
                problems.append(f"{name}.{column.name}: not ISO dates")
        elif column.kind == "code":
            if not present.eq(present.str.lower()).all():
                problems.append(f"{name}.{column.name}: not lower-case")
            if column.codes and not present.isin(column.codes).all():
                problems.append(f"{name}.{column.name}: unknown codes {set(present) - set(column.codes)}")
        elif column.kind == "bool" and not present.isin([True, False]).all():
            problems.append(f"{name}.{column.name}: not bool")
    if table.key and frame.duplicated(list(table.key)).any():
        problems.append(f"{name}: duplicate keys")
    for column, (parent, parent_column) in table.foreign_keys.items():
        if not frame[column].isin(parents[parent][parent_column]).all():
            problems.append(f"{name}.{column}: unknown {parent_column}")
    return problems


# --------------------------------------------------------------------------------------------
# Plan, determinism, tables
# --------------------------------------------------------------------------------------------


def test_plan_defaults_and_validation():
    plan = CityPlan()
    assert (plan.students, plan.seed, plan.school_years, plan.last_school_year, plan.schools, plan.dirty) == (
        5000, 0, 6, 2025, None, 0.0)
    assert list(plan.years) == [2020, 2021, 2022, 2023, 2024, 2025]
    for bad in ({"students": 0}, {"school_years": 0}, {"schools": 2}, {"dirty": 0.9}, {"seed": -1}):
        with pytest.raises(ValueError):
            CityPlan(**bad)
    with pytest.raises(ValueError):
        write_synthetic_city(CityPlan(students=100), Path("/nonexistent-never-created"), file_format="xlsx")


def test_same_plan_same_files_other_seed_differs(tmp_path):
    plan = CityPlan(students=800, seed=5, school_years=3, dirty=0.01)
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_synthetic_city(plan, first)
    write_synthetic_city(plan, again)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    write_synthetic_city(CityPlan(students=800, seed=6, school_years=3, dirty=0.01), other)
    for name in CITY_TABLES:
        if name not in ("terms", "schools"):  # the same calendar; schools depend on the size, not the seed
            assert (first / f"{name}.parquet").read_bytes() != (other / f"{name}.parquet").read_bytes(), name


def test_every_contract_table_with_its_columns(written, city):
    out, rows, _ = written
    assert {p.name for p in out.iterdir()} == {f"{name}.parquet" for name in CITY_TABLES} | {"_ground_truth"}
    assert set(rows) == set(CITY_TABLES)
    for name in CITY_TABLES:
        assert list(city[name].columns) == [c.name for c in TABLES[name].columns], name
        assert len(city[name]) == rows[name] > 0, name
    assert len(city["students"]) == PLAN.students
    assert city["students"]["name"].notna().all() and city["students"]["national_id"].str.len().eq(18).all()
    assert (out / "_ground_truth" / "training_effects.parquet").is_file()


def test_clean_city_passes_every_contract_rule(city):
    problems = [p for name in CITY_TABLES for p in contract_violations(name, city[name], city)]
    assert problems == []


def test_clean_city_loads_every_row_through_ingest(tmp_path):
    from features.ingest import ingest
    from privacy.pseudonyms import Pseudonymizer

    plan = CityPlan(students=1500, seed=2, school_years=3)
    rows = write_synthetic_city(plan, tmp_path / "export", file_format="csv")
    report = ingest(tmp_path / "export", lake_dir=tmp_path / "lake", pseudonymizer=Pseudonymizer(b"k" * 32))
    assert report.errors == []
    assert set(report.tables) == set(CITY_TABLES)
    for name, t in report.tables.items():
        assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (rows[name], rows[name], 0), name


def test_ids_unique_across_chunks_and_national_ids_valid(city):
    for name, column in (("students", "student_id"), ("teachers", "teacher_id"), ("classes", "class_id"),
                         ("schools", "school_id"), ("students", "national_id")):
        assert city[name][column].is_unique, (name, column)
    students = city["students"].sample(200, random_state=0)
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    for row in students.itertuples():
        nid = row.national_id
        assert "10X98765432"[sum(int(d) * w for d, w in zip(nid[:17], weights)) % 11] == nid[17]
        assert nid[6:14] == row.birth_date.replace("-", "")
        assert int(nid[16]) % 2 == (row.sex == "m")


def test_schools_option_sets_the_number_of_schools(tmp_path):
    rows = write_synthetic_city(CityPlan(students=3000, seed=1, school_years=2, schools=12), tmp_path)
    assert rows["schools"] == 12
    stages = read_city(tmp_path)["schools"]["stage"].value_counts()
    assert set(stages.index) == {"primary", "junior", "senior"}


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------


def test_classes_of_about_45_with_head_teachers_who_teach_them(city):
    size = city["class_memberships"].groupby("class_id").size()
    assert 40 <= size.mean() <= 50 and size.max() <= 56 and size.min() >= 25
    classes = city["classes"]
    assert classes["head_teacher_id"].isin(city["teachers"]["teacher_id"]).all()
    taught = set(zip(city["teaching_assignments"]["teacher_id"], city["teaching_assignments"]["class_id"]))
    assert all(pair in taught for pair in zip(classes["head_teacher_id"], classes["class_id"]))
    # A class's grade belongs to its school's stage.
    stage = classes.merge(city["schools"], on="school_id")
    bounds = {"primary": (1, 6), "junior": (7, 9), "senior": (10, 12)}
    assert all(bounds[s][0] <= g <= bounds[s][1] for s, g in zip(stage["stage"], stage["grade"]))


def test_students_move_up_a_grade_each_year_and_change_school_at_stage_boundaries(city):
    m = city["class_memberships"].merge(city["classes"][["class_id", "grade", "school_id"]], on="class_id")
    m = m.sort_values(["student_id", "school_year"])
    by_student = m.groupby("student_id")
    assert (by_student["school_year"].diff().dropna() == 1).all()
    assert (by_student["grade"].diff().dropna() == 1).all()
    changed = by_student["school_id"].shift().ne(m["school_id"]) & by_student["school_id"].shift().notna()
    assert set(m.loc[changed, "grade"]) == {7, 10}
    # Classmates stay together within a stage: a class's members move up to one class.
    nxt = m.assign(prev_class=by_student["class_id"].shift()).dropna(subset=["prev_class"])
    within = nxt[~nxt["grade"].isin([7, 10])]
    assert (within.groupby("prev_class")["class_id"].nunique() == 1).all()
    # New cohorts enter grade 1 every year, so every grade is there every year.
    assert m.groupby("school_year")["grade"].nunique().eq(12).all()


def test_teachers_have_subjects_titles_and_experience(city):
    teachers = city["teachers"]
    assert set(teachers["subject"]) <= set(SUBJECTS)
    assert set(teachers["title"]) == {"none", "second", "first", "senior", "full_senior"}
    by_title = teachers.groupby("title")["years_experience"].median()
    assert by_title[["none", "second", "first", "senior", "full_senior"]].is_monotonic_increasing
    assert (2025 - teachers["birth_year"] >= 22 + teachers["years_experience"]).all()
    per_year = city["teaching_assignments"].groupby("school_year")["teacher_id"].nunique()
    enrolled = city["class_memberships"].groupby("school_year").size()
    assert ((enrolled / per_year).between(8, 20)).all()  # students per teacher


def test_grades_midterm_and_final_for_every_subject_of_the_stage(city):
    grades = city["grades"]
    exams = grades.groupby(["student_id", "term_id", "subject"])["exam"]
    assert exams.size().eq(2).all() and exams.nunique().eq(2).all()  # a midterm and a final
    grade_of = city["class_memberships"].merge(city["classes"][["class_id", "grade"]], on="class_id")
    grade_of["term_id"] = grade_of["school_year"].astype(str) + "-1"
    subjects = grades[grades["exam"] == "final"].groupby(["student_id", "term_id"]).size().rename("n").reset_index()
    subjects = subjects.merge(grade_of[["student_id", "term_id", "grade"]], on=["student_id", "term_id"])
    assert subjects.loc[subjects["grade"] <= 6, "n"].between(4, 6).all()
    assert subjects.loc[subjects["grade"] >= 7, "n"].between(7, 9).all()
    assert {"music", "art", "labor", "pe"} <= set(grades["subject"])
    share = grades["score"] / grades["full_mark"]
    assert 0.7 <= share.mean() <= 0.85 and 0.05 <= (share < 0.6).mean() <= 0.25


# --------------------------------------------------------------------------------------------
# Realism: fitness, risk, literacy, training
# --------------------------------------------------------------------------------------------


def test_fitness_follows_the_national_standard_like_surveillance(scored):
    assert scored["problem"].isna().all()  # every tested item present, every value physical
    level = scored["level"].value_counts(normalize=True)
    assert 0.05 <= level["fail"] <= 0.12
    assert 0.03 <= level["excellent"] <= 0.10
    heavy = scored["bmi_category"].isin(["overweight", "obese"]).groupby(scored["stage"]).mean()
    assert 0.12 <= heavy["primary"] <= 0.19
    assert 0.20 <= heavy["senior"] <= 0.27
    assert heavy["primary"] < heavy["junior"] < heavy["senior"]
    assert 0.02 <= (scored["bmi_category"] == "underweight").mean() <= 0.09
    fail = scored["level"].eq("fail").groupby(scored["stage"]).mean()
    assert fail["primary"] < fail["senior"]
    boys = scored[scored["sex"] == "m"]["bmi_category"].isin(["overweight", "obese"]).mean()
    girls = scored[scored["sex"] == "f"]["bmi_category"].isin(["overweight", "obese"]).mean()
    assert boys > girls


def test_fitness_persists_year_over_year(scored):
    frame = scored.sort_values(["student_id", "school_year"])
    previous = frame.groupby("student_id")[["total_score", "bmi"]].shift()
    ok = previous["total_score"].notna()
    assert np.corrcoef(previous.loc[ok, "total_score"], frame.loc[ok, "total_score"])[0, 1] > 0.6
    assert np.corrcoef(previous.loc[ok, "bmi"], frame.loc[ok, "bmi"])[0, 1] > 0.8


def test_decline_is_driven_by_attendance_and_conduct(city, truth):
    decline = truth["academic_decline"]
    assert 0.03 <= len(decline) / len(city["students"]) <= 0.10
    order = {t: i for i, t in enumerate(city["terms"]["term_id"])}
    onset = decline.set_index("student_id")["onset_term_id"].map(order)
    grades = city["grades"].assign(share=city["grades"]["score"] / city["grades"]["full_mark"])
    grades = grades[grades["student_id"].isin(onset.index)]
    grades["since"] = grades["term_id"].map(order) - grades["student_id"].map(onset)
    share = grades.groupby(grades["since"].clip(-2, 3))["share"].mean()
    assert share[-2] - share[3] > 0.12  # sharp
    attendance = city["attendance"][city["attendance"]["student_id"].isin(onset.index)].copy()
    attendance["since"] = attendance["term_id"].map(order) - attendance["student_id"].map(onset)
    absent = attendance.groupby(attendance["since"].clip(-2, 3))["days_absent"].mean()
    assert absent[3] > 3 * absent[-2]
    discipline = city["conduct_records"].query("kind == 'discipline'")["student_id"]
    assert discipline.isin(onset.index).mean() > 5 * len(onset) / len(city["students"])


def test_literacy_conduct_and_activities_correlate_with_ability(city):
    grades = city["grades"].assign(share=city["grades"]["score"] / city["grades"]["full_mark"])
    mean = grades.groupby("student_id")["share"].mean()
    literacy = city["literacy_assessments"].groupby("student_id")["score"].mean()
    both = pd.concat([mean, literacy], axis=1, join="inner")
    assert both.corr().iloc[0, 1] > 0.4
    honors = city["conduct_records"].query("kind == 'honor'").groupby("student_id")["value"].sum()
    assert mean[honors.index].mean() > mean.mean()
    activity = city["activity_records"]
    assert set(zip(activity["domain"], activity["kind"])) == {
        ("aesthetic", "arts_practice_hours"), ("aesthetic", "performance"), ("labor", "labor_hours"),
        ("labor", "labor_skill")}


def test_completed_courses_raise_the_dimensions_they_target_more_for_weak_teachers(city, truth):
    effects = truth["training_effects"]
    assert set(effects["dimension"]) == {"awareness", "knowledge_skills", "application", "responsibility",
                                         "development"}
    assert (effects.loc[~effects["targeted"], "effect"] == 0).all()
    assert (effects.loc[effects["targeted"], "effect"] > 0).all()
    courses = city["training_courses"]
    assert courses["center_id"].nunique() == 3
    targeted = effects[effects["targeted"]].groupby("course_id")["dimension"].agg(lambda d: ";".join(sorted(d)))
    listed = courses.set_index("course_id")["dimensions"].map(lambda d: ";".join(sorted(d.split(";"))))
    assert listed.equals(targeted.reindex(listed.index))
    # Predicted gain between two assessments, from the ground-truth rule, explains the change.
    base = truth["teacher_baselines"].set_index(["teacher_id", "dimension"])
    done = city["teacher_trainings"].query("completed")
    gains = done.merge(effects[effects["targeted"]], on="course_id")
    multiplier = base.loc[list(zip(gains["teacher_id"], gains["dimension"])), "multiplier"]
    gains["gain"] = gains["effect"] * multiplier.to_numpy()
    a = city["teacher_assessments"].sort_values(["teacher_id", "dimension", "assessed_on"])
    a["previous_on"] = a.groupby(["teacher_id", "dimension"])["assessed_on"].shift()
    a["change"] = a["score"] - a.groupby(["teacher_id", "dimension"])["score"].shift()
    a = a.dropna(subset=["change"])
    pairs = a.merge(gains[["teacher_id", "dimension", "completed_on", "gain"]], on=["teacher_id", "dimension"])
    pairs = pairs[(pairs["completed_on"] >= pairs["previous_on"]) & (pairs["completed_on"] < pairs["assessed_on"])]
    predicted = pairs.groupby(["teacher_id", "dimension", "assessed_on"])["gain"].sum()
    a = a.set_index(["teacher_id", "dimension", "assessed_on"])
    a["predicted"] = predicted.reindex(a.index).fillna(0.0)
    slope = np.polyfit(a["predicted"], a["change"], 1)[0]
    assert 0.8 <= slope <= 1.2
    weak = base["baseline"] < 60
    assert (base.loc[weak, "multiplier"] > 1).all() and (base.loc[base["baseline"] >= 70, "multiplier"] == 1).all()


# --------------------------------------------------------------------------------------------
# Dirt
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    plan = CityPlan(students=1500, seed=4, school_years=3, dirty=0.02)
    rows = write_synthetic_city(plan, out, file_format="csv")
    return out, rows, read_ground_truth(out)["dirty_rows"]


def test_dirty_share_as_asked_and_every_kind_present(dirty):
    _, rows, broken = dirty
    assert set(broken["kind"]) == set(DIRT_KINDS)
    for name in BIG_TABLES:
        share = (broken["table"] == name).sum() / rows[name]
        assert 0.01 <= share <= 0.03, (name, share)
    assert set(broken["table"]) == set(DIRT) and broken.groupby("table")["row"].apply(lambda r: r.is_unique).all()
    values = set(broken["value"].dropna())
    assert {"2.0", "400", "fast", "x", "quiz", "2025-13-45"} <= values  # the classic breakages


def test_dirty_rows_are_where_the_manifest_says(dirty):
    out, _, broken = dirty
    fitness = pd.read_csv(out / "fitness_tests.csv", dtype=str, keep_default_na=False)
    for row in broken[broken["table"] == "fitness_tests"].itertuples():
        line = fitness.iloc[row.row - 1]
        if row.kind == "duplicate_key":
            same = (fitness["student_id"] == line["student_id"]) & (fitness["school_year"] == line["school_year"])
            assert same.sum() == 2
        else:
            assert line[row.column] == (row.value if isinstance(row.value, str) else ""), row


def test_ingest_quarantines_exactly_the_dirty_rows(dirty, tmp_path):
    from features.ingest import ingest
    from privacy.pseudonyms import Pseudonymizer

    out, rows, broken = dirty
    report = ingest(out, lake_dir=tmp_path / "lake", pseudonymizer=Pseudonymizer(b"k" * 32))
    assert report.errors == []
    for name, t in report.tables.items():
        assert t.rows_read == rows[name], name
        assert t.rows_quarantined == int((broken["table"] == name).sum()), (name, dict(t.by_rule))


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


def test_chunked_output_equals_in_memory_output(city):
    at_once = synthesize(PLAN)  # one chunk
    assert set(at_once) == set(city)
    for name in CITY_TABLES:
        pd.testing.assert_frame_equal(city[name], at_once[name], obj=name)


def test_writer_holds_at_most_a_chunk_whatever_the_size(written, tmp_path):
    _, _, chunked = written
    assert chunked.zones >= 2
    assert chunked.max_buffered_students <= max(3_000, chunked.largest_zone)
    twice = CityPlan(students=2 * PLAN.students, seed=PLAN.seed)
    _, bigger = _write(twice, tmp_path / "chunked", chunk_students=3_000)
    assert bigger.zones >= 4 and bigger.max_buffered_students <= max(3_000, bigger.largest_zone)
    assert bigger.max_buffered_bytes < 1.3 * chunked.max_buffered_bytes  # bounded, not growing with the city
    _, one_chunk = _write(twice, tmp_path / "one", chunk_students=10**9)
    assert one_chunk.max_buffered_students == twice.students
    assert one_chunk.max_buffered_bytes > 1.5 * bigger.max_buffered_bytes


def test_csv_is_written_chunk_by_chunk_with_one_header(tmp_path):
    plan = CityPlan(students=8000, seed=3, school_years=2)
    rows, stats = _write(plan, tmp_path, file_format="csv", chunk_students=1)
    assert stats.zones == 2 and stats.row_groups["students"] == 2
    lines = (tmp_path / "students.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == rows["students"] + 1 and lines.count(lines[0]) == 1
    csv = read_city(tmp_path)["grades"]
    assert len(csv) == rows["grades"] and csv["score"].between(0, 150).all()


def test_rewriting_a_folder_leaves_one_city(tmp_path):
    write_synthetic_city(CityPlan(students=300, seed=1, school_years=2, dirty=0.05), tmp_path, file_format="csv")
    write_synthetic_city(CityPlan(students=300, seed=1, school_years=2), tmp_path)
    assert not list(tmp_path.glob("*.csv"))
    assert "dirty_rows" not in read_ground_truth(tmp_path)
