"""Adapters for the real public datasets (`shared/data/real/`, read in place, never copied).

Each adapter writes the tables its module documents, with the contract's columns, as many rows
as the source has (checked against the source files read independently here), the same ids on
every run, and rows that are all valid: checked against the declared rules in
`features.contract.TABLES` directly, and by a real ingest that must quarantine nothing.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pandas as pd
import pytest

from features.adapters import ADAPTERS, SOURCE_FOLDERS
from features.adapters._common import check_tables, read_tables
from features.contract import TABLES
from features.ingest import ingest
from privacy.pseudonyms import Pseudonymizer

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
NAMES = ("uci", "oulad", "star", "nnyfs")
DOCUMENTED_TABLES = {
    "uci": {"schools", "students", "terms", "grades", "attendance"},
    "oulad": {"students", "terms", "grades", "assessment_scores", "course_outcomes"},
    "star": {"schools", "classes", "students", "class_memberships", "teachers", "teaching_assignments", "terms",
             "standardized_scores"},
    "nnyfs": {"students", "fitness_tests"},
}


def source(name: str) -> Path:
    folder = REAL / SOURCE_FOLDERS[name]
    if not folder.is_dir():
        pytest.skip(f"real dataset {SOURCE_FOLDERS[name]!r} not found at {folder} (shared/data/real/ is read in place)")
    return folder


_adapted: dict[str, tuple[Path, dict[str, int]]] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(params=NAMES)
def adapted(request, workdir) -> tuple[str, Path, dict[str, int]]:
    """Each dataset adapted once per test session: (name, out_dir, rows per table)."""
    name = request.param
    src = source(name)
    if name not in _adapted:
        out = workdir / name
        _adapted[name] = (out, ADAPTERS[name](src, out))
    return name, *_adapted[name]


def tables_of(name: str, workdir: Path) -> dict[str, pd.DataFrame]:
    src = source(name)
    if name not in _adapted:
        _adapted[name] = (workdir / name, ADAPTERS[name](src, workdir / name))
    return read_tables(_adapted[name][0])


def test_every_dataset_has_an_adapter():
    assert set(ADAPTERS) == set(NAMES)
    assert all(callable(adapt) for adapt in ADAPTERS.values())


def test_writes_the_documented_tables_with_contract_columns(adapted):
    name, out, counts = adapted
    assert set(counts) == DOCUMENTED_TABLES[name]
    assert {p.name for p in out.iterdir()} == {f"{table}.parquet" for table in counts}
    doc = importlib.import_module(f"features.adapters.{name}").__doc__
    for table, rows in counts.items():
        frame = pd.read_parquet(out / f"{table}.parquet")
        assert len(frame) == rows > 0, table
        declared = [c.name for c in TABLES[table].columns]
        assert set(TABLES[table].required) <= set(frame.columns), table
        contract_columns = [c for c in frame.columns if c in declared]
        assert list(frame.columns[:len(contract_columns)]) == contract_columns, f"{table}: contract columns first"
        assert contract_columns == [c for c in declared if c in frame.columns], f"{table}: in declared order"
        assert table in doc, f"{table} is not documented in features/adapters/{name}.py"


def test_every_row_is_valid_under_the_declared_contract(adapted):
    name, out, _ = adapted
    tables = read_tables(out)
    assert check_tables(tables) == []
    if "classes" in tables:  # no declared foreign key, but a head teacher must exist too
        assert set(tables["classes"]["head_teacher_id"]) <= set(tables["teachers"]["teacher_id"])


def test_ids_are_stable_across_runs(adapted, tmp_path):
    name, out, counts = adapted
    again = ADAPTERS[name](source(name), tmp_path / "again")
    assert again == counts
    for table in counts:
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "again" / f"{table}.parquet"), obj=table)


def run_ingest(export: Path, home: Path):
    """Ingest as the CLI does; passes a quarantine folder only to an ingest that takes one."""
    kwargs = {"lake_dir": home / "lake", "pseudonymizer": Pseudonymizer(b"k" * 32)}
    if "quarantine_dir" in inspect.signature(ingest).parameters:
        kwargs["quarantine_dir"] = home / "quarantine"
    return ingest(export, **kwargs)


def test_ingests_with_zero_quarantined_rows(adapted, tmp_path):
    name, out, counts = adapted
    report = run_ingest(out, tmp_path)
    assert report.errors == []
    assert set(report.tables) == set(counts)
    for table, rows in counts.items():
        result = report.tables[table]
        assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (rows, rows, 0), (
            table, dict(result.by_rule))


# --- row counts and values against the source files -------------------------------------------

def test_uci_three_grading_periods_per_course_and_370_shared_students(workdir):
    src = source("uci")
    math = pd.read_csv(src / "student-mat.csv", sep=";")
    por = pd.read_csv(src / "student-por.csv", sep=";")
    t = tables_of("uci", workdir)
    grades = t["grades"]
    assert len(grades) == (len(math) + len(por)) * 3
    assert (grades["full_mark"] == 20).all()
    for subject, frame in (("math", math), ("portuguese", por)):
        for column, term, exam in (("G1", "2005-1", "final"), ("G2", "2005-2", "midterm"), ("G3", "2005-2", "final")):
            got = grades[(grades["subject"] == subject) & (grades["term_id"] == term) & (grades["exam"] == exam)]
            assert got["score"].tolist() == frame[column].astype(float).tolist(), (subject, column)
    # 370 students take both courses; merge.R's 13 keys alone give 382 pairs (some cross-products)
    courses = grades.groupby("student_id")["subject"].nunique()
    assert (courses == 2).sum() == 370
    merge_keys = ["school", "sex", "age", "address", "famsize", "Pstatus", "Medu", "Fedu", "Mjob", "Fjob",
                  "reason", "nursery", "internet"]
    assert len(math.merge(por, on=merge_keys)) == 382
    assert len(t["students"]) == len(math) + len(por) - 370 == t["students"]["student_id"].nunique()
    # same student, same sex and age in both files
    pairs = (math.assign(student_id=grades.loc[(grades["subject"] == "math") & (grades["period"] == 1), "student_id"].to_numpy())
             .merge(por.assign(student_id=grades.loc[(grades["subject"] == "portuguese") & (grades["period"] == 1), "student_id"].to_numpy()),
                    on="student_id", suffixes=("_m", "_p")))
    assert len(pairs) == 370
    for column in merge_keys:
        assert (pairs[f"{column}_m"] == pairs[f"{column}_p"]).all(), column
    attendance = t["attendance"]
    assert len(attendance) == len(t["students"])
    assert (attendance["days_absent"] == attendance[["absences_math", "absences_portuguese"]].max(axis=1)).all()
    assert (attendance["term_id"] == "2005-2").all() and (attendance["days_enrolled"] == 180).all()


def test_oulad_every_score_dated_and_final_result_as_labels(workdir):
    src = source("oulad")
    info = pd.read_csv(src / "studentInfo.csv")
    scores = pd.read_csv(src / "studentAssessment.csv", na_values=["?"])
    assessments = pd.read_csv(src / "assessments.csv", na_values=["?"])
    t = tables_of("oulad", workdir)
    assert len(t["students"]) == info["id_student"].nunique()
    assert len(t["terms"]) == info["code_presentation"].nunique()

    dated = t["assessment_scores"]
    assert len(dated) == len(scores)
    assert dated["score"].isna().sum() == scores["score"].isna().sum()
    assert dated["submitted_on"].notna().all()
    kinds = scores.merge(assessments, on="id_assessment")["assessment_type"].value_counts()
    assert dated["kind"].value_counts().to_dict() == {
        "coursework": kinds["TMA"], "quiz": kinds["CMA"], "exam": kinds["Exam"]}

    exams = scores.merge(assessments[assessments["assessment_type"] == "Exam"], on="id_assessment")
    assert len(t["grades"]) == exams["score"].notna().sum()
    assert set(t["grades"]["exam"]) == {"final"}

    outcomes = t["course_outcomes"]
    assert len(outcomes) == len(info)
    assert outcomes["final_result"].value_counts().to_dict() == {
        k.lower(): v for k, v in info["final_result"].value_counts().to_dict().items()}
    # a presentation's first day is day 0 of its dates: AAA 2013J's first TMA is due on day 19
    first = dated[dated["assessment_id"] == "1752"]
    assert set(first["due_date"]) == {"2013-10-20"} and set(first["term_id"]) == {"2013-1"}


def test_star_scores_by_grade_teachers_and_classes(workdir):
    star = pd.read_csv(source("star") / "mlmRev_star.csv", dtype={"gr": str})
    kept = star[star["sx"].notna()]
    t = tables_of("star", workdir)
    assert len(t["students"]) == star["id"].nunique() - star.loc[star["sx"].isna(), "id"].nunique()
    scores = t["standardized_scores"]
    assert len(scores) == kept["read"].notna().sum() + kept["math"].notna().sum()
    expected = (kept.assign(grade=kept["gr"].replace("K", "0").astype(int))
                .groupby("grade")[["read", "math"]].count().sum(axis=1))
    assert scores.groupby("grade").size().to_dict() == expected.to_dict()  # K to 3, K as grade 0
    assert len(t["teachers"]) == star["tch"].nunique()
    assert len(t["schools"]) == star["sch"].nunique()
    graded_teachers = star.loc[star["gr"] != "K", "tch"].nunique()
    assert len(t["classes"]) == graded_teachers
    assert sorted(t["classes"]["grade"].unique()) == [1, 2, 3]  # kindergarten is not a contract grade
    assert len(t["class_memberships"]) == (kept["gr"] != "K").sum()
    assert len(t["teaching_assignments"]) == 2 * graded_teachers
    assert sorted(t["terms"]["school_year"] - 30) == [1985, 1986, 1987, 1988]


def test_nnyfs_height_weight_and_grade_from_age(workdir):
    survey = pd.read_csv(source("nnyfs") / "nnyfs.csv")
    school_age = survey[survey["age_child"] >= 6]
    t = tables_of("nnyfs", workdir)
    assert len(t["students"]) == len(school_age)
    tests = t["fitness_tests"]
    measured = school_age[school_age["height"].notna() & school_age["weight"].notna()]
    assert len(tests) == len(measured)
    merged = tests.merge(measured.assign(student_id="nnyfs-" + measured["SEQN"].astype(str)), on="student_id")
    assert len(merged) == len(tests)
    assert (merged["grade"] == merged["age_child"] - 5).all()
    assert (merged["height_cm"] == merged["height"]).all() and (merged["weight_kg"] == merged["weight"]).all()
    assert (merged["sex_x"] == merged["sex_y"].str[0].str.lower()).all()
    items = [c.name for c in TABLES["fitness_tests"].columns if c.nullable]
    assert tests[items].isna().all().all()  # the extract has none of the CSPHS items
