"""Ingest: an export folder (shared/CONTRACT.md) → validated, pseudonymized Parquet in the lake.

Precise cases use small hand-written CSV exports; bulk behaviour uses a small synthetic city.
What is checked is what users rely on: every good row loads, every bad row lands in the
quarantine with the table, file, row, column, value and rule, no raw identifier or name is ever
written, and a table that cannot be loaded at all is a clear error that leaves the lake as it was.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from core.config import Settings
from features.contract import TABLES
from features.ingest import IngestError, IngestReport, ingest, read_table_file
from features.synth import CityPlan, read_ground_truth, synthesize, write_synthetic_city
from privacy.pseudonyms import Pseudonymizer

KEY = b"k" * 32
OTHER_KEY = b"o" * 32

FITNESS_HEADER = (
    "student_id,test_date,school_year,grade,sex,height_cm,weight_kg,vital_capacity_ml,run_50m_s,"
    "sit_and_reach_cm,rope_skip_1min,sit_up_1min,shuttle_50x8_s,standing_long_jump_cm,pull_up,"
    "run_800m_s,run_1000m_s"
)


def fitness_row(student: str, year: int = 2025, *, test_date: str | None = None, sex: str = "m",
                height: str = "150.2", run_50m: str = "9.1") -> str:
    """A complete grade-6 test (primary items filled, secondary items empty)."""
    test_date = test_date or f"{year}-11-10"
    return f"{student},{test_date},{year},6,{sex},{height},42.0,2100,{run_50m},5.2,120,30,105,,,,"


STUDENTS = [
    "student_id,sex,birth_date,enrollment_year,name,national_id",
    "S001,m,2012-03-04,2019,Wang Wei,370200201203040011",
    "S002,F,2013-05-06,2020,Li Na,370200201305060022",
    "S003,M,2012-07-08,2019,Zhang San,370200201207080033",
]
RAW_PII = ["S001", "S002", "S003", "Wang Wei", "Li Na", "Zhang San",
           "370200201203040011", "370200201305060022", "370200201207080033"]
TERMS = [
    "term_id,school_year,term,start_date,end_date",
    "2025-1,2025,1,2025-09-01,2026-01-20",
    "2025-2,2025,2,2026-02-20,2026-07-10",
]
GRADES = [
    "student_id,term_id,subject,exam,score,full_mark",
    "S001,2025-1,math,midterm,88,100",
    "S002,2025-1,math,midterm,92.5,100",
    "S003,2025-1,Chinese,FINAL,120,150",
]
FITNESS = [
    FITNESS_HEADER,
    fitness_row("S001"),
    fitness_row("S002", sex="F"),
    fitness_row("S003", 2024),
]
TEACHERS = [
    "teacher_id,school_id,sex,birth_year,subject,title,years_experience,name",
    "T001,A01,f,1980,math,senior,20,Zhou Min",
]
SCHOOLS = [
    "school_id,name,district,stage",
    "A01,Shinan No. 1 Primary,shinan,primary",
]
CLASSES = [
    "class_id,school_id,school_year,grade,head_teacher_id",
    "A01-2025-06-1,A01,2025,6,T001",
]


def write_export(folder: Path, tables: dict[str, list[str]], *, bom: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in tables.items():
        text = "\n".join(lines) + "\n"
        (folder / f"{name}.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return folder


def small_export(folder: Path, **override: list[str]) -> Path:
    tables = {"schools": SCHOOLS, "classes": CLASSES, "students": STUDENTS, "teachers": TEACHERS,
              "terms": TERMS, "grades": GRADES, "fitness_tests": FITNESS}
    tables.update(override)
    return write_export(folder, tables)


def run(export: Path, home: Path, key: bytes = KEY) -> IngestReport:
    return ingest(export, lake_dir=home / "lake", pseudonymizer=Pseudonymizer(key))


def lake(home: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(home / "lake" / f"{table}.parquet")


def quarantine(home: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(home / "lake" / "quarantine" / f"{table}.parquet")


CITY_PLAN = CityPlan(students=240, seed=3, school_years=2)
DIRTY_PLAN = CityPlan(students=240, seed=5, school_years=2, dirty=0.05)


@pytest.fixture(scope="module")
def city() -> dict[str, pd.DataFrame]:
    return synthesize(CITY_PLAN)


@pytest.fixture(scope="module")
def dirty_city() -> dict[str, pd.DataFrame]:
    return synthesize(DIRTY_PLAN)


@pytest.fixture(scope="module")
def city_csv(city, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("city-csv")
    write_synthetic_city(CITY_PLAN, out, file_format="csv")
    return out


@pytest.fixture(scope="module")
def city_parquet(city, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("city-parquet")
    write_synthetic_city(CITY_PLAN, out, file_format="parquet")
    return out


@pytest.fixture(scope="module")
def city_home(city_csv, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("city-home")
    report = run(city_csv, home)
    assert not report.errors
    return home


# --------------------------------------------------------------------------------------------
# Clean exports load every row
# --------------------------------------------------------------------------------------------


def test_clean_small_export_loads_every_row(tmp_path):
    report = run(small_export(tmp_path / "export"), tmp_path / "home")
    assert report.errors == []
    expected = {"schools": 1, "classes": 1, "students": 3, "teachers": 1, "terms": 2, "grades": 3, "fitness_tests": 3}
    for name, rows in expected.items():
        t = report.tables[name]
        assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (rows, rows, 0), name
        assert not t.by_rule
        assert t.files == [f"{name}.csv"]
        assert len(lake(tmp_path / "home", name)) == rows
        assert len(quarantine(tmp_path / "home", name)) == 0


def test_clean_synthetic_city_loads_every_row(city, city_csv, tmp_path):
    report = run(city_csv, tmp_path)
    assert report.errors == []
    assert set(report.tables) == set(city)
    for name, frame in city.items():
        t = report.tables[name]
        assert t.rows_read == t.rows_loaded == len(frame), name
        assert t.rows_quarantined == 0, name
        assert len(lake(tmp_path, name)) == len(frame)


def test_lake_columns_are_typed_as_the_contract_declares(tmp_path):
    run(small_export(tmp_path / "export"), tmp_path / "home")
    fitness = lake(tmp_path / "home", "fitness_tests")
    assert list(fitness.columns) == [c.name for c in TABLES["fitness_tests"].columns]
    assert pd.api.types.is_integer_dtype(fitness["school_year"])
    assert pd.api.types.is_float_dtype(fitness["run_50m_s"])
    assert pd.api.types.is_datetime64_any_dtype(fitness["test_date"])
    assert fitness["pull_up"].isna().all()  # not tested in grade 6: empty stays empty
    assert fitness["run_50m_s"].tolist() == [9.1, 9.1, 9.1]


# --------------------------------------------------------------------------------------------
# Pseudonyms: nothing personal is ever written
# --------------------------------------------------------------------------------------------


def _written_text(home: Path) -> tuple[str, bytes]:
    """Every Parquet in the lake and quarantine: decoded as text, and as raw bytes."""
    files = sorted((home / "lake").glob("*.parquet")) + sorted((home / "lake" / "quarantine").glob("*.parquet"))
    assert files
    text = "\n".join(pd.read_parquet(p).to_csv(index=False) + " ".join(pd.read_parquet(p).columns) for p in files)
    raw = b"\n".join(p.read_bytes() for p in files)
    return text, raw


def test_small_export_writes_no_raw_identifier_or_name(tmp_path):
    home = tmp_path / "home"
    bad_grade = GRADES + ["S999,2025-1,math,final,70,100"]  # quarantined: its id must not leak either
    bad_fitness = FITNESS + [fitness_row("S002", 2024, run_50m="fast")]
    run(small_export(tmp_path / "export", grades=bad_grade, fitness_tests=bad_fitness), home)
    text, raw = _written_text(home)
    for value in RAW_PII + ["S999", "T001", "Zhou Min"]:
        assert value not in text, value
        assert value.encode() not in raw, value
    students = lake(home, "students")
    assert "name" not in students.columns and "national_id" not in students.columns
    assert "name" not in lake(home, "teachers").columns


def test_personal_data_in_extra_columns_of_other_tables_is_not_kept(tmp_path):
    """A grade book that also exports the pupil's name and national id: extra columns, not stored."""
    home = tmp_path / "home"
    grades = [GRADES[0] + ",name,national_id,remark"] + [
        line + f",{name},{nid},ok" for line, name, nid in zip(GRADES[1:], RAW_PII[3:6], RAW_PII[6:9])
    ]
    report = run(small_export(tmp_path / "export", grades=grades), home)
    assert report.tables["grades"].rows_loaded == 3
    assert list(lake(home, "grades").columns) == [c.name for c in TABLES["grades"].columns]
    text, raw = _written_text(home)
    for value in RAW_PII:
        assert value not in text and value.encode() not in raw, value


def test_synthetic_city_lake_and_quarantine_hold_no_raw_identifier(dirty_city, tmp_path):
    export = tmp_path / "export"
    write_synthetic_city(DIRTY_PLAN, export, file_format="csv")
    home = tmp_path / "home"
    report = run(export, home)
    assert report.tables["grades"].rows_quarantined > 0  # the dirty city has unknown-student grades
    text, _ = _written_text(home)
    cells = set(text.replace("\n", ",").split(","))
    students, teachers, grades = dirty_city["students"], dirty_city["teachers"], dirty_city["grades"]
    raw_ids = set(students["student_id"]) | set(teachers["teacher_id"]) | set(grades["student_id"])
    assert not raw_ids & cells
    assert not set(students["national_id"]) & cells
    for value in list(raw_ids)[:200] + list(students["name"])[:200] + list(students["national_id"])[:200]:
        assert value not in text, value


def test_same_id_gets_same_pseudonym_in_every_table(tmp_path):
    home = tmp_path / "home"
    run(small_export(tmp_path / "export"), home)
    p = Pseudonymizer(KEY)
    students = lake(home, "students").set_index("student_id")
    assert sorted(students.index) == sorted(p.one("student", s) for s in ("S001", "S002", "S003"))
    grades = lake(home, "grades").merge(students, left_on="student_id", right_index=True, how="left")
    assert grades["sex"].notna().all()  # every grade row joins its students row
    assert grades.set_index("subject").loc["chinese", "student_id"] == p.one("student", "S003")
    fitness = lake(home, "fitness_tests")
    assert set(fitness["student_id"]) <= set(students.index)
    assert lake(home, "classes")["head_teacher_id"].tolist() == lake(home, "teachers")["teacher_id"].tolist()


def test_synthetic_city_joins_across_tables(city_home):
    students = set(lake(city_home, "students")["student_id"])
    for name in ("class_memberships", "grades", "fitness_tests"):
        assert set(lake(city_home, name)["student_id"]) <= students, name
    teachers = set(lake(city_home, "teachers")["teacher_id"])
    assert set(lake(city_home, "classes")["head_teacher_id"]) <= teachers


def test_different_key_gives_different_pseudonyms(tmp_path):
    export = small_export(tmp_path / "export")
    run(export, tmp_path / "a", KEY)
    run(export, tmp_path / "b", OTHER_KEY)
    a, b = lake(tmp_path / "a", "students"), lake(tmp_path / "b", "students")
    assert len(set(a["student_id"])) == 3
    assert not set(a["student_id"]) & set(b["student_id"])
    assert a.drop(columns="student_id").equals(b.drop(columns="student_id"))  # only the ids differ


def test_student_and_teacher_namespaces_differ():
    p = Pseudonymizer(KEY)
    assert p.one("student", "X1") != p.one("teacher", "X1")
    assert p.one("student", " X1 ") == p.one("student", "X1")


def test_short_pseudonym_key_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymizer(b"short")


def test_pseudonym_key_file_is_private_and_stable(tmp_path):
    settings = Settings(home=tmp_path / "home")
    key = settings.secret("pseudonym")
    path = tmp_path / "home" / "keys" / "pseudonym.key"
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(key) >= 16
    assert settings.secret("pseudonym") == key  # created once, then reused
    Pseudonymizer(key)  # usable as a pseudonym key


# --------------------------------------------------------------------------------------------
# Bad rows go to the quarantine, good rows of the same file still load
# --------------------------------------------------------------------------------------------

BAD_FITNESS = [
    FITNESS_HEADER,
    fitness_row("S001"),                               # 1 good
    fitness_row("S002", run_50m="2.0"),                # 2 impossible value
    fitness_row("S003", run_50m="fast"),               # 3 not a number
    fitness_row("S001", 2024, sex="x"),                # 4 unknown code
    fitness_row("S002", 2024, height=""),              # 5 empty required cell
    fitness_row("S003", 2024, test_date="2024-13-45"),  # 6 bad date
    fitness_row("S001"),                               # 7 duplicate key (S001, 2025)
    fitness_row("S999"),                               # 8 unknown student
    fitness_row("S002", 2023),                         # 9 good
]


@pytest.fixture
def bad_rows(tmp_path):
    home = tmp_path / "home"
    grades = GRADES + ["S999,2025-1,math,final,70,100"]  # row 4: a grade for an unknown student
    report = run(small_export(tmp_path / "export", fitness_tests=BAD_FITNESS, grades=grades), home)
    return report, home


def _one(q: pd.DataFrame, row: int) -> dict:
    hit = q[q["row"] == row]
    assert len(hit) == 1, hit
    return hit.iloc[0].to_dict()


def test_each_bad_row_is_quarantined_with_table_file_row_column_value_and_rule(bad_rows):
    report, home = bad_rows
    q = quarantine(home, "fitness_tests")
    assert list(q.columns) == ["table", "file", "row", "column", "value", "rule"]
    assert set(q["table"]) == {"fitness_tests"} and set(q["file"]) == {"fitness_tests.csv"}
    assert sorted(q["row"]) == [2, 3, 4, 5, 6, 7, 8]

    expect = {
        2: ("run_50m_s", "2.0", "out of range"),
        3: ("run_50m_s", "fast", "not a number"),
        4: ("sex", "x", "not one of m, f"),
        5: ("height_cm", "", "required value is empty"),
        6: ("test_date", "2024-13-45", "not an ISO 8601 date"),
    }
    for row, (column, value, rule) in expect.items():
        line = _one(q, row)
        assert (line["column"], line["value"]) == (column, value), line
        assert rule in line["rule"], line
    assert "5-30" in _one(q, 2)["rule"]  # the range that was broken

    p = Pseudonymizer(KEY)
    duplicate = _one(q, 7)
    assert duplicate["column"] == "student_id" and "duplicate key" in duplicate["rule"]
    assert "student_id" in duplicate["rule"] and "school_year" in duplicate["rule"]
    assert duplicate["value"] == p.one("student", "S001")  # pseudonymized, not the raw id
    unknown = _one(q, 8)
    assert unknown["column"] == "student_id" and "unknown student_id" in unknown["rule"]
    assert "students" in unknown["rule"]
    assert unknown["value"] == p.one("student", "S999")

    grades_q = quarantine(home, "grades")
    line = _one(grades_q, 4)
    assert (line["table"], line["file"], line["column"]) == ("grades", "grades.csv", "student_id")
    assert "unknown student_id" in line["rule"]
    assert line["value"] == p.one("student", "S999")


def test_good_rows_of_a_file_with_bad_rows_still_load(bad_rows):
    report, home = bad_rows
    fitness = lake(home, "fitness_tests")
    p = Pseudonymizer(KEY)
    loaded = set(zip(fitness["student_id"], fitness["school_year"]))
    assert loaded == {(p.one("student", "S001"), 2025), (p.one("student", "S002"), 2023)}
    assert len(lake(home, "grades")) == 3


def test_report_counts_bad_rows_by_rule(bad_rows):
    report, _ = bad_rows
    t = report.tables["fitness_tests"]
    assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (9, 2, 7)
    assert t.rows_read == t.rows_loaded + t.rows_quarantined  # nothing lost
    assert sum(t.by_rule.values()) == 7
    counts = {rule.split(" (")[0].split(" 5-30")[0]: n for rule, n in t.by_rule.items()}
    assert counts == {
        "out of range": 1, "not a number": 1, "not one of m, f": 1, "required value is empty": 1,
        "not an ISO 8601 date": 1, "duplicate key": 1, "unknown student_id": 1,
    }
    g = report.tables["grades"]
    assert (g.rows_read, g.rows_loaded, g.rows_quarantined) == (4, 3, 1)
    assert g.by_rule == {"unknown student_id (not in students)": 1}
    assert report.errors == []


def test_a_row_breaking_two_rules_is_counted_once_but_both_rules_are_recorded(tmp_path):
    home = tmp_path / "home"
    fitness = [FITNESS_HEADER, fitness_row("S001", sex="x", run_50m="fast"), fitness_row("S002")]
    report = run(small_export(tmp_path / "export", fitness_tests=fitness), home)
    t = report.tables["fitness_tests"]
    assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (2, 1, 1)
    q = quarantine(home, "fitness_tests")
    assert sorted(q["column"]) == ["run_50m_s", "sex"]
    assert set(q["row"]) == {1}


def test_quarantined_id_values_are_pseudonymized_and_empty_ids_stay_empty(tmp_path):
    home = tmp_path / "home"
    students = STUDENTS + [",m,2012-01-01,2019,Nobody,",  # row 4: empty id
                           "S004,m,2012-01-01,1890,Old Timer,370200000000000044"]  # row 5: out of range
    run(small_export(tmp_path / "export", students=students), home)
    q = quarantine(home, "students")
    empty = _one(q, 4)
    assert (empty["column"], empty["rule"]) == ("student_id", "required value is empty")
    assert pd.isna(empty["value"]) or empty["value"] == ""  # not a pseudonym of nothing
    assert _one(q, 5)["column"] == "enrollment_year"
    text, _ = _written_text(home)
    assert "S004" not in text and "Old Timer" not in text and "Nobody" not in text


def test_synthetic_dirty_city_quarantines_and_counts(dirty_city, tmp_path):
    export = tmp_path / "export"
    write_synthetic_city(DIRTY_PLAN, export, file_format="csv")
    report = run(export, tmp_path / "home")
    fitness, grades = report.tables["fitness_tests"], report.tables["grades"]
    broken = read_ground_truth(export)["dirty_rows"]  # every deliberately broken row, one rule each
    for t in report.tables.values():
        assert t.rows_quarantined == int((broken["table"] == t.table).sum()), t.table
    assert fitness.rows_quarantined > 0
    assert fitness.rows_loaded == len(dirty_city["fitness_tests"]) - fitness.rows_quarantined
    unknown = broken[(broken["table"] == "grades") & (broken["kind"] == "unknown_reference")
                     & (broken["column"] == "student_id")]
    assert grades.by_rule["unknown student_id (not in students)"] == len(unknown) > 0
    for t in report.tables.values():
        assert t.rows_read == t.rows_loaded + t.rows_quarantined, t.table


# --------------------------------------------------------------------------------------------
# A table that cannot be loaded at all
# --------------------------------------------------------------------------------------------


def test_missing_required_column_is_an_error_naming_table_and_column(tmp_path):
    home = tmp_path / "home"
    fitness = [line.split(",") for line in FITNESS]
    without_run = [",".join(cells[:8] + cells[9:]) for cells in fitness]  # drop run_50m_s
    report = run(small_export(tmp_path / "export", fitness_tests=without_run), home)
    error = report.tables["fitness_tests"].error
    assert error and "fitness_tests" in error and "run_50m_s" in error
    assert report.errors == [error]
    assert not (home / "lake" / "fitness_tests.parquet").exists()
    for name in ("students", "grades", "terms"):  # the other tables still load
        assert report.tables[name].error is None
        assert report.tables[name].rows_loaded == report.tables[name].rows_read > 0
    assert "ERROR" in report.render() and "run_50m_s" in report.render()


def test_missing_column_leaves_the_previous_lake_table_unchanged(tmp_path):
    home = tmp_path / "home"
    run(small_export(tmp_path / "first"), home)
    before = (home / "lake" / "fitness_tests.parquet").read_bytes()
    fitness = [",".join(line.split(",")[:4] + line.split(",")[5:]) for line in FITNESS]  # no sex
    students = STUDENTS + ["S004,f,2012-01-01,2019,New Girl,"]
    report = run(small_export(tmp_path / "second", fitness_tests=fitness, students=students), home)
    assert "fitness_tests" in report.tables["fitness_tests"].error
    assert "'sex'" in report.tables["fitness_tests"].error
    assert (home / "lake" / "fitness_tests.parquet").read_bytes() == before
    assert len(lake(home, "students")) == 4  # the corrected students table replaced the old one


def test_missing_column_in_one_file_of_a_table_folder_loads_nothing_of_it(tmp_path):
    export = small_export(tmp_path / "export")
    (export / "fitness_tests.csv").unlink()
    folder = export / "fitness_tests"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join(FITNESS) + "\n")
    (folder / "b.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in FITNESS) + "\n")  # no run_1000m_s
    home = tmp_path / "home"
    report = run(export, home)
    error = report.tables["fitness_tests"].error
    assert "fitness_tests" in error and "run_1000m_s" in error and "b.csv" in error
    assert not (home / "lake" / "fitness_tests.parquet").exists()


def test_table_folder_of_several_files_loads_them_all(tmp_path):
    export = small_export(tmp_path / "export")
    (export / "fitness_tests.csv").unlink()
    folder = export / "fitness_tests"
    folder.mkdir()
    (folder / "2024.csv").write_text("\n".join([FITNESS_HEADER, fitness_row("S003", 2024)]) + "\n")
    (folder / "2025.csv").write_text("\n".join([FITNESS_HEADER, fitness_row("S001"), fitness_row("S001")]) + "\n")
    home = tmp_path / "home"
    report = run(export, home)
    t = report.tables["fitness_tests"]
    assert t.files == ["2024.csv", "2025.csv"]
    assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (3, 2, 1)
    line = _one(quarantine(home, "fitness_tests"), 2)
    assert line["file"] == "2025.csv" and "duplicate key" in line["rule"]


def test_unreadable_parquet_is_an_error_naming_the_table(tmp_path):
    export = small_export(tmp_path / "export")
    (export / "fitness_tests.csv").unlink()
    (export / "fitness_tests.parquet").write_bytes(b"PAR1 this is \xff\xfe not parquet at all")
    home = tmp_path / "home"
    report = run(export, home)
    error = report.tables["fitness_tests"].error
    assert error and "fitness_tests" in error and "fitness_tests.parquet" in error
    assert not (home / "lake" / "fitness_tests.parquet").exists()
    assert report.tables["students"].rows_loaded == 3

    with pytest.raises(IngestError, match="fitness_tests"):
        read_table_file(export / "fitness_tests.parquet", "fitness_tests")


def test_csv_with_invalid_utf8_is_an_error_naming_the_table(tmp_path):
    export = small_export(tmp_path / "export")
    (export / "students.csv").write_bytes("\n".join(STUDENTS).encode("utf-8") + b"\nS009,m,2012-01-01,2019,\xff\xfe,\n")
    report = run(export, tmp_path / "home")
    assert "students" in report.tables["students"].error


def test_missing_export_folder_raises(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "home")


# --------------------------------------------------------------------------------------------
# Input formats
# --------------------------------------------------------------------------------------------


def test_csv_with_bom_reads_correctly_and_codes_are_case_insensitive(tmp_path):
    tables = {"students": STUDENTS, "terms": TERMS, "grades": GRADES}
    plain, bom = tmp_path / "plain", tmp_path / "bom"
    run(write_export(tmp_path / "export-plain", tables), plain)
    report = run(write_export(tmp_path / "export-bom", tables, bom=True), bom)
    assert report.errors == []
    assert report.tables["students"].rows_loaded == 3
    students = lake(bom, "students")
    assert "student_id" in students.columns  # not "\ufeffstudent_id"
    assert sorted(students["sex"]) == ["f", "m", "m"]  # "F" and "M" stored lower-case
    grades = lake(bom, "grades")
    assert sorted(grades["subject"]) == ["chinese", "math", "math"]
    assert sorted(grades["exam"]) == ["final", "midterm", "midterm"]
    for name in tables:
        pd.testing.assert_frame_equal(lake(plain, name), lake(bom, name))


def test_csv_and_parquet_exports_give_the_same_lake(city_csv, city_parquet, city_home, tmp_path):
    report = run(city_parquet, tmp_path)
    assert report.errors == []
    for name in TABLES:
        if (city_home / "lake" / f"{name}.parquet").exists():
            pd.testing.assert_frame_equal(lake(city_home, name), lake(tmp_path, name), obj=name)


def test_csv_and_parquet_dirty_exports_quarantine_the_same_rows(dirty_city, tmp_path):
    reports = {}
    for fmt in ("csv", "parquet"):
        write_synthetic_city(DIRTY_PLAN, tmp_path / fmt, file_format=fmt)
        reports[fmt] = run(tmp_path / fmt, tmp_path / f"home-{fmt}")
    for name in ("fitness_tests", "grades"):
        a, b = reports["csv"].tables[name], reports["parquet"].tables[name]
        assert (a.rows_read, a.rows_loaded, a.rows_quarantined, a.by_rule) == (
            b.rows_read, b.rows_loaded, b.rows_quarantined, b.by_rule)
        pd.testing.assert_frame_equal(lake(tmp_path / "home-csv", name), lake(tmp_path / "home-parquet", name))
        qa, qb = quarantine(tmp_path / "home-csv", name), quarantine(tmp_path / "home-parquet", name)
        assert qa[["row", "column", "rule"]].equals(qb[["row", "column", "rule"]])


def test_parquet_export_with_typed_columns(tmp_path):
    """A Parquet export with real ints, floats, dates and bools loads like its CSV twin."""
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame({
        "student_id": ["S001", "S002"], "sex": ["M", "f"],
        "birth_date": pd.to_datetime(["2012-03-04", "2013-05-06"]),
        "enrollment_year": [2019, 2020],
    }).to_parquet(export / "students.parquet")
    home = tmp_path / "home"
    report = run(export, home)
    assert report.errors == []
    students = lake(home, "students").sort_values("enrollment_year")  # the lake is ordered by pseudonym
    assert students["sex"].tolist() == ["m", "f"]
    assert students["birth_date"].dt.strftime("%Y-%m-%d").tolist() == ["2012-03-04", "2013-05-06"]
    assert students["enrollment_year"].tolist() == [2019, 2020]


# --------------------------------------------------------------------------------------------
# Idempotence and the report
# --------------------------------------------------------------------------------------------


def test_ingesting_the_same_export_twice_changes_nothing(city_csv, city_home, tmp_path):
    first = {p.name: pd.read_parquet(p) for p in sorted((city_home / "lake").glob("*.parquet"))}
    first_q = {p.name: pd.read_parquet(p) for p in sorted((city_home / "lake" / "quarantine").glob("*.parquet"))}
    # same home, second run: the lake already holds the first load
    home = tmp_path / "home"
    run(city_csv, home)
    once = {p.name: p.read_bytes() for p in sorted((home / "lake").glob("*.parquet"))}
    report = run(city_csv, home)
    assert report.errors == []
    twice = {p.name: p.read_bytes() for p in sorted((home / "lake").glob("*.parquet"))}
    assert once == twice
    assert not list((home / "lake").glob("*.tmp"))
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(home / "lake" / name), obj=name)
    for name, frame in first_q.items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(home / "lake" / "quarantine" / name), obj=name)


def test_ingesting_a_dirty_export_twice_changes_nothing(tmp_path):
    home = tmp_path / "home"
    grades = GRADES + ["S999,2025-1,math,final,70,100"]
    export = small_export(tmp_path / "export", fitness_tests=BAD_FITNESS, grades=grades)
    first = run(export, home)
    files = sorted((home / "lake").glob("*.parquet")) + sorted((home / "lake" / "quarantine").glob("*.parquet"))
    before = {p: p.read_bytes() for p in files}
    second = run(export, home)
    assert {p: p.read_bytes() for p in files} == before
    assert first.as_dict() == second.as_dict()


def test_report_render_and_as_dict_contain_the_counts(bad_rows):
    report, _ = bad_rows
    data = report.as_dict()
    assert data["fitness_tests"]["rows_read"] == 9
    assert data["fitness_tests"]["rows_loaded"] == 2
    assert data["fitness_tests"]["rows_quarantined"] == 7
    assert data["fitness_tests"]["files"] == ["fitness_tests.csv"]
    assert data["fitness_tests"]["error"] is None
    assert data["grades"]["by_rule"] == {"unknown student_id (not in students)": 1}
    assert sum(data["fitness_tests"]["by_rule"].values()) == 7
    json.dumps(data)  # the CLI writes it as JSON

    text = report.render()
    lines = {line.split()[0]: line.split() for line in text.splitlines()[1:]}
    # read, loaded, replaced, quarantined
    assert lines["fitness_tests"][1:5] == ["9", "2", "0", "7"]
    assert lines["grades"][1:5] == ["4", "3", "0", "1"]
    assert lines["students"][1:5] == ["3", "3", "0", "0"]
    assert "unknown student_id (not in students): 1" in text
    assert "not a number: 1" in text


@pytest.mark.parametrize("date", ["2024-02-30", "2023-02-29", "2025-04-31", "2025-6-1", "2025-06-01T00:00"])
def test_a_date_that_is_not_a_calendar_day_is_quarantined_not_rolled_over(tmp_path, date):
    # Regression: strptime rolled 2024-02-30 over to 2024-03-01 and loaded it silently.
    rows = [FITNESS_HEADER, fitness_row("S001"), fitness_row("S002", test_date=date)]
    home = tmp_path / "home"
    report = run(small_export(tmp_path / "export", fitness_tests=rows), home)
    line = _one(quarantine(home, "fitness_tests"), 2)
    assert (line["column"], line["value"]) == ("test_date", date)
    assert "not an ISO 8601 date" in line["rule"]
    assert report.tables["fitness_tests"].rows_loaded == 1
