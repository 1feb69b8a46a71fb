"""Ingest as a transaction: re-exports replace what they cover, and a killed ingest changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.ingest import ingest
from privacy.pseudonyms import Pseudonymizer

KEY = b"a" * 32

STUDENTS = pd.DataFrame({
    "student_id": ["S1", "S2", "S3"], "sex": ["m", "f", "m"],
    "birth_date": ["2014-03-01", "2014-05-02", "2013-09-09"], "enrollment_year": [2020, 2020, 2020],
})
TERMS = pd.DataFrame({"term_id": ["2025-1"], "school_year": [2025], "term": [1],
                      "start_date": ["2025-09-01"], "end_date": ["2026-01-20"]})


def fitness(students=("S1", "S2", "S3"), height=140.0) -> pd.DataFrame:
    return pd.DataFrame({
        "student_id": list(students), "test_date": "2025-11-03", "school_year": 2025, "grade": 6, "sex": "m",
        "height_cm": height, "weight_kg": 35.0, "vital_capacity_ml": 2000, "run_50m_s": 9.1,
        "sit_and_reach_cm": 5.0, "rope_skip_1min": 120, "sit_up_1min": 30, "shuttle_50x8_s": 110,
        "standing_long_jump_cm": "", "pull_up": "", "run_800m_s": "", "run_1000m_s": "",
    })


def conduct(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["student_id", "term_id", "kind", "value"])


def export(folder: Path, **tables: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def run(folder: Path, home: Path):
    return ingest(folder, lake_dir=home / "lake", pseudonymizer=Pseudonymizer(KEY))


def lake_bytes(home: Path) -> dict[str, bytes]:
    root = (home / "lake").resolve()
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_corrected_reexport_replaces_only_the_rows_it_covers(tmp_path):
    home = tmp_path / "home"
    run(export(tmp_path / "a", students=STUDENTS, terms=TERMS, fitness_tests=fitness()), home)
    students_before = (home / "lake" / "students.parquet").read_bytes()

    corrected = export(tmp_path / "b", fitness_tests=fitness(students=["S2"], height=150.0))
    report = run(corrected, home)

    table = report.tables["fitness_tests"]
    assert (table.rows_read, table.rows_loaded, table.rows_replaced) == (1, 1, 1)
    lake = pd.read_parquet(home / "lake" / "fitness_tests.parquet")
    s2 = Pseudonymizer(KEY).one("student", "S2")
    assert len(lake) == 3
    assert lake.set_index("student_id")["height_cm"].to_dict()[s2] == 150.0
    assert sorted(lake["height_cm"]) == [140.0, 140.0, 150.0]
    # A table the re-export did not carry is the very same file.
    assert (home / "lake" / "students.parquet").read_bytes() == students_before


def test_the_same_export_twice_changes_nothing(tmp_path):
    home = tmp_path / "home"
    folder = export(tmp_path / "a", students=STUDENTS, terms=TERMS, fitness_tests=fitness())
    run(folder, home)
    before = lake_bytes(home)
    report = run(folder, home)
    assert lake_bytes(home) == before
    assert all(t.rows_replaced == 0 for t in report.tables.values())


def test_keyless_records_are_replaced_per_student_and_term(tmp_path):
    home = tmp_path / "home"
    first = conduct([("S1", "2025-1", "honor", 1), ("S1", "2025-1", "volunteer_hours", 4),
                     ("S2", "2025-1", "volunteer_hours", 2)])
    run(export(tmp_path / "a", students=STUDENTS, terms=TERMS, conduct_records=first), home)

    report = run(export(tmp_path / "b", conduct_records=conduct([("S1", "2025-1", "volunteer_hours", 6)])), home)

    lake = pd.read_parquet(home / "lake" / "conduct_records.parquet")
    by_student = lake.groupby("student_id")["value"].apply(sorted).to_dict()
    pseudonym = Pseudonymizer(KEY).one
    assert by_student == {pseudonym("student", "S1"): [6.0], pseudonym("student", "S2"): [2.0]}
    assert report.tables["conduct_records"].rows_replaced == 2


def test_malformed_csv_line_is_quarantined_and_the_rest_keep_their_row_numbers(tmp_path):
    folder = export(tmp_path / "a", students=STUDENTS, terms=TERMS)
    lines = (fitness().to_csv(index=False)).splitlines()
    lines.insert(2, "S9,2025-11-03,2025")  # data row 2 is cut short
    (folder / "fitness_tests.csv").write_text("\n".join(lines) + "\n")
    report = run(folder, tmp_path / "home")
    quarantine = pd.read_parquet(tmp_path / "home" / "lake" / "quarantine" / "fitness_tests.parquet")
    assert quarantine["row"].tolist() == [2]
    assert quarantine["rule"].iloc[0].startswith("malformed CSV line")
    assert report.tables["fitness_tests"].rows_loaded == 3


KILL_SCRIPT = """
import sys
from pathlib import Path
from features.ingest import ingest
from privacy.pseudonyms import Pseudonymizer
ingest(Path(sys.argv[1]), lake_dir=Path(sys.argv[2]) / "lake", pseudonymizer=Pseudonymizer(b"a" * 32))
"""


def _big_grades(n_students: int, rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "student_id": np.char.add("S", rng.integers(1, n_students + 1, rows).astype(str)),
        "term_id": "2025-1",
        "subject": rng.choice(["math", "chinese", "english", "science", "art", "music"], rows),
        "exam": rng.choice(["midterm", "final"], rows),
        "score": rng.uniform(0, 100, rows).round(1),
        "full_mark": 100,
    })


@pytest.mark.parametrize("moment", ["while streaming grades", "while merging grades"])
def test_an_ingest_killed_half_way_leaves_the_lake_exactly_as_it_was(tmp_path, moment):
    home = tmp_path / "home"
    students = pd.DataFrame({
        "student_id": [f"S{i}" for i in range(1, 3001)], "sex": "m", "birth_date": "2014-01-01",
        "enrollment_year": 2020,
    })
    run(export(tmp_path / "first", students=students, terms=TERMS, fitness_tests=fitness()), home)
    before = lake_bytes(home)
    target_before = os.readlink(home / "lake")

    big = export(tmp_path / "second", students=students, terms=TERMS, grades=_big_grades(3000, 1_500_000),
                 fitness_tests=fitness(height=150.0))
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(big), str(home)])
    stage = home / "lake.d"
    marker = "good.parquet" if moment == "while streaming grades" else "refused"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        staged = list(stage.glob("*.building/_stage/grades/good.parquet"))
        if staged and (marker == "good.parquet" or list(stage.glob("*.building/quarantine/grades.parquet"))):
            break
        time.sleep(0.005)
    assert child.poll() is None, "ingest finished before it could be killed: make the export bigger"
    child.send_signal(signal.SIGKILL)
    child.wait()

    assert os.readlink(home / "lake") == target_before
    assert lake_bytes(home) == before  # every table and the quarantine, byte for byte

    # The next ingest goes through and sweeps away what the killed one left behind.
    run(export(tmp_path / "third", fitness_tests=fitness(height=160.0)), home)
    assert [p.name for p in stage.iterdir() if p.is_dir()] == [Path(os.readlink(home / "lake")).name]
    assert pd.read_parquet(home / "lake" / "fitness_tests.parquet")["height_cm"].tolist() == [160.0] * 3


def test_every_kind_of_rule_has_a_failing_row_with_its_own_message(tmp_path):
    """One bad cell per rule the contract can declare, each named in the quarantine."""
    students = pd.DataFrame({
        "student_id": ["S1", "S2", "S3", "S4"], "sex": ["m", "x", "f", "m"],
        "birth_date": ["2014-01-01", "2014-01-01", "2014-02-30", "2014-01-01"],
        "enrollment_year": ["2020", "2020", "2020", "2020.5"],
    })
    teachers = pd.DataFrame({
        "teacher_id": ["T1"], "school_id": ["P1"], "sex": ["f"], "birth_year": [1980], "subject": ["math"],
        "title": ["first"], "years_experience": [12],
    })
    schools = pd.DataFrame({"school_id": ["P1"], "name": ["p"], "district": ["d"], "stage": ["primary"]})
    courses = pd.DataFrame({
        "course_id": ["C1"], "center_id": ["X"], "title": ["t"], "dimensions": ["application"], "subject": ["any"],
        "level": ["basic"], "hours": [8],
    })
    trainings = pd.DataFrame({
        "teacher_id": ["T1", "T1", "T1", "T9", "T1"], "course_id": ["C1", "C1", "C1", "C1", "C1"],
        "enrolled_on": "2025-03-01", "completed_on": "",
        "completed": ["false", "false", "maybe", "false", "false"], "satisfaction": ["", "", "", "", "9"],
    })
    folder = export(tmp_path / "a", schools=schools, students=students, teachers=teachers,
                    training_courses=courses, teacher_trainings=trainings)
    run(folder, tmp_path / "home")
    q = pd.concat([pd.read_parquet(p) for p in (tmp_path / "home" / "lake" / "quarantine").glob("*.parquet")])
    rules = {(row.table, row.column): row.rule for row in q.itertuples()}
    assert rules[("students", "sex")] == "not one of m, f"
    assert rules[("students", "birth_date")].startswith("not an ISO 8601 date")
    assert rules[("students", "enrollment_year")] == "not a whole number"
    assert rules[("teacher_trainings", "completed")] == "not true/false"
    assert rules[("teacher_trainings", "satisfaction")] == "out of range 1-5"
    assert rules[("teacher_trainings", "teacher_id")] == "unknown teacher_id (not in teachers)"
    duplicate = q[(q["table"] == "teacher_trainings") & q["rule"].str.startswith("duplicate key")]
    assert duplicate["row"].tolist() == [2]
