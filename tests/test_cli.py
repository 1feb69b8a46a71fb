"""The `portrait` command line: `synth`, `ingest` and `fitness score`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from core.config import get_settings
from features.standards.csphs2014 import ITEMS
from features.synth import CITY_TABLES
from portrait.cli import app

CONTRACT_TABLES = CITY_TABLES
FITNESS_HEADER = (
    "student_id,test_date,school_year,grade,sex,height_cm,weight_kg,vital_capacity_ml,run_50m_s,"
    "sit_and_reach_cm,rope_skip_1min,sit_up_1min,shuttle_50x8_s,standing_long_jump_cm,pull_up,"
    "run_800m_s,run_1000m_s"
)
FITNESS_ROWS = [
    # grade 6 boy, every tested item present
    "S001,2025-11-10,2025,6,m,150.0,42.0,2100,9.1,5.2,120,30,105,,,,",
    # grade 6 girl, rope skip (a tested item) missing
    "S002,2025-11-10,2025,6,F,148.0,40.0,1900,9.6,9.0,,32,110,,,,",
    # grade 8 boy, secondary items
    "S003,2025-11-12,2025,8,m,165.0,55.0,3300,8.0,8.0,,,,210,8,,230",
]

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PORTRAIT_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def read_frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def fitness_csv(path: Path, header: str = FITNESS_HEADER, rows: list[str] = FITNESS_ROWS) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# portrait synth
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_once(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "city-7"
    result = runner.invoke(app, ["synth", "--students", "150", "--seed", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_synth_writes_the_contract_tables(synth_once):
    files = {p.name for p in synth_once.iterdir() if not p.name.startswith("_")}  # _ground_truth/ aside
    assert files == {f"{name}.parquet" for name in CONTRACT_TABLES}
    frames = read_frames(synth_once)
    assert len(frames["students"]) == 150
    for name, frame in frames.items():
        assert len(frame) > 0, name


def test_synth_same_seed_same_files_other_seed_differs(synth_once, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    result = invoke("synth", "--students", 150, "--seed", 7, "--out", again)
    assert result.exit_code == 0, result.output
    assert "students" in result.output and "150 rows" in result.output
    for name in CONTRACT_TABLES:
        assert (again / f"{name}.parquet").read_bytes() == (synth_once / f"{name}.parquet").read_bytes(), name
    assert invoke("synth", "--students", 150, "--seed", 8, "--out", other).exit_code == 0
    first, second = read_frames(synth_once), read_frames(other)
    assert not first["students"].equals(second["students"])
    assert not first["fitness_tests"].equals(second["fitness_tests"])


def test_synth_csv_format(tmp_path):
    out = tmp_path / "csv"
    result = invoke("synth", "--students", 120, "--seed", 1, "--out", out, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir() if not p.name.startswith("_")} == {f"{name}.csv" for name in CONTRACT_TABLES}
    assert len(pd.read_csv(out / "students.csv")) == 120


def test_synth_refuses_too_few_students(tmp_path):
    result = invoke("synth", "--students", 5, "--out", tmp_path / "x")
    assert result.exit_code != 0
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------
# portrait ingest
# --------------------------------------------------------------------------------------------


def test_ingest_clean_export_prints_the_report_and_exits_0(synth_once, home, tmp_path):
    json_out = tmp_path / "report.json"
    result = invoke("ingest", synth_once, "--json", json_out)
    assert result.exit_code == 0, result.output
    assert "read" in result.output and "loaded" in result.output and "quarantined" in result.output
    students_line = next(line for line in result.output.splitlines() if line.startswith("students"))
    assert students_line.split()[1:4] == ["150", "150", "0"]
    for name in CONTRACT_TABLES:
        assert (home / "lake" / f"{name}.parquet").is_file(), name
    assert (home / "keys" / "pseudonym.key").is_file()  # the key lives under PORTRAIT_HOME
    lake_ids = set(pd.read_parquet(home / "lake" / "students.parquet")["student_id"])
    raw_ids = set(pd.read_parquet(synth_once / "students.parquet")["student_id"])
    assert lake_ids and not lake_ids & raw_ids
    report = json.loads(json_out.read_text())
    assert report["students"]["rows_loaded"] == 150 and report["students"]["error"] is None


def test_ingest_missing_required_column_exits_non_zero_naming_table_and_column(tmp_path, home):
    export = tmp_path / "export"
    export.mkdir()
    (export / "students.csv").write_text("student_id,sex,birth_date,enrollment_year\nS001,m,2012-03-04,2019\n")
    # fitness_tests without `sex`
    header = FITNESS_HEADER.replace(",sex,", ",")
    rows = ["S001,2025-11-10,2025,6,150.0,42.0,2100,9.1,5.2,120,30,105,,,,"]
    fitness_csv(export / "fitness_tests.csv", header, rows)
    result = invoke("ingest", export)
    assert result.exit_code != 0
    assert "fitness_tests" in result.output and "'sex'" in result.output
    assert not (home / "lake" / "fitness_tests.parquet").exists()
    assert (home / "lake" / "students.parquet").exists()  # the other table still loaded


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def test_ingest_adapter_loads_a_public_dataset_through_the_same_checks(home):
    result = invoke("ingest", "--adapter", "uci", REAL / "uci_student_performance")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:5] for line in result.output.splitlines()[1:]}
    assert lines["grades"] == ["3132", "3132", "0", "0"]  # read, loaded, replaced, quarantined
    assert (home / "lake" / "grades.parquet").exists()


def test_ingest_unknown_adapter_is_refused(home, tmp_path):
    result = invoke("ingest", "--adapter", "pisa", tmp_path)
    assert result.exit_code != 0
    assert "unknown adapter 'pisa'" in result.output


def test_ingest_missing_folder_exits_non_zero(tmp_path):
    result = invoke("ingest", tmp_path / "nowhere")
    assert result.exit_code != 0
    assert "does not exist" in result.output


# --------------------------------------------------------------------------------------------
# portrait fitness score
# --------------------------------------------------------------------------------------------

ADDED = ["bmi", "bmi_category", "score_bmi", *[f"score_{item.name}" for item in ITEMS],
         "standard_score", "bonus", "total_score", "level", "problem"]


def check_scored(scored: pd.DataFrame) -> None:
    assert len(ITEMS) == 10
    assert scored["student_id"].astype(str).tolist() == ["S001", "S002", "S003"]
    for column in ADDED:
        assert column in scored.columns, column
    complete = scored.set_index(scored["student_id"].astype(str))
    for student in ("S001", "S003"):
        row = complete.loc[student]
        assert pd.notna(row["total_score"]), row
        assert row["level"] in ("excellent", "good", "pass", "fail")
        assert pd.isna(row["problem"]) or row["problem"] == ""
        assert row["total_score"] == pytest.approx(row["standard_score"] + row["bonus"])
    assert complete.loc["S001", "bmi"] == pytest.approx(18.7)  # 42 / 1.5^2 = 18.67 → 18.7
    missing = complete.loc["S002"]
    assert pd.isna(missing["total_score"]) and pd.isna(missing["standard_score"])
    assert "rope_skip_1min" in missing["problem"] and "missing" in missing["problem"]
    assert pd.notna(missing["score_run_50m"])  # scores that could be computed are kept
    assert pd.isna(complete.loc["S001", "score_pull_up"])  # not tested in grade 6


def test_fitness_score_csv_to_csv(tmp_path):
    source = fitness_csv(tmp_path / "fitness_tests.csv")
    out = tmp_path / "scored.csv"
    result = invoke("fitness", "score", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "scored 2 of 3 rows" in result.output and "problem" in result.output
    check_scored(pd.read_csv(out, dtype={"student_id": str}))


def test_fitness_score_parquet_output(tmp_path):
    source = fitness_csv(tmp_path / "fitness_tests.csv")
    out = tmp_path / "scored.parquet"
    result = invoke("fitness", "score", source, "--out", out)
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(out)
    check_scored(scored)
    csv_out = tmp_path / "scored.csv"
    assert invoke("fitness", "score", source, "--out", csv_out).exit_code == 0
    from_csv = pd.read_csv(csv_out, dtype={"student_id": str})
    for column in ("total_score", "standard_score", "bonus", "bmi"):
        pd.testing.assert_series_equal(scored[column].astype(float), from_csv[column].astype(float))


def test_fitness_score_parquet_input(tmp_path):
    source = fitness_csv(tmp_path / "fitness_tests.csv")
    parquet = tmp_path / "fitness_tests.parquet"
    pd.read_csv(source, dtype=str, keep_default_na=False).to_parquet(parquet)
    out = tmp_path / "scored.parquet"
    result = invoke("fitness", "score", parquet, "--out", out)
    assert result.exit_code == 0, result.output
    check_scored(pd.read_parquet(out))


def test_fitness_score_missing_required_column_exits_non_zero(tmp_path):
    header = FITNESS_HEADER.replace(",sex,", ",")
    rows = [",".join(r.split(",")[:4] + r.split(",")[5:]) for r in FITNESS_ROWS]
    source = fitness_csv(tmp_path / "fitness_tests.csv", header, rows)
    out = tmp_path / "scored.csv"
    result = invoke("fitness", "score", source, "--out", out)
    assert result.exit_code != 0
    assert "fitness_tests" in result.output and "sex" in result.output
    assert not out.exists()


def test_fitness_score_unreadable_file_exits_non_zero(tmp_path):
    source = tmp_path / "fitness_tests.parquet"
    source.write_bytes(b"\x00\xffnot a parquet file")
    out = tmp_path / "scored.csv"
    result = invoke("fitness", "score", source, "--out", out)
    assert result.exit_code != 0
    assert "fitness_tests" in result.output and "fitness_tests.parquet" in result.output
    assert not out.exists()
    result = invoke("fitness", "score", tmp_path / "absent.csv", "--out", out)
    assert result.exit_code != 0 and "fitness_tests" in result.output


# --------------------------------------------------------------------------------------------
# portrait privacy open / ledger
# --------------------------------------------------------------------------------------------


def test_privacy_ledger_shows_releases_spends_and_what_is_left(home):
    from privacy.ledger import PrivacyLedger

    assert "no release opened yet" in invoke("privacy", "ledger").output
    opened = invoke("privacy", "open", "2025", "--epsilon", "4", "--delta", "1e-5")
    assert opened.exit_code == 0, opened.output
    PrivacyLedger(get_settings().ledger_url).spend("2025", what="fitness_risk training", epsilon=1.5, delta=1e-6,
                                                   mechanism="DP-SGD", accountant="prv")
    shown = invoke("privacy", "ledger")
    assert shown.exit_code == 0
    assert "release 2025: spent ε=1.5 of 4" in shown.output and "left ε=2.5" in shown.output
    assert "fitness_risk training" in shown.output and "DP-SGD / prv" in shown.output
    [release] = json.loads(invoke("privacy", "ledger", "2025", "--json").output)
    assert release["epsilon_left"] == pytest.approx(2.5) and len(release["spends"]) == 1


def test_privacy_open_sets_a_total_once_and_refuses_bad_budgets(home):
    assert invoke("privacy", "open", "2025", "--epsilon", "4", "--delta", "1e-5").exit_code == 0
    again = invoke("privacy", "open", "2025", "--epsilon", "40", "--delta", "1e-5")
    assert again.exit_code == 1 and "already open with ε=4" in again.output
    bad = invoke("privacy", "open", "2026", "--epsilon", "0", "--delta", "1e-5")
    assert bad.exit_code == 1 and "needs epsilon > 0" in bad.output
    unknown = invoke("privacy", "ledger", "2024")
    assert unknown.exit_code == 1 and "no privacy release named '2024'" in unknown.output


def test_train_refuses_an_unknown_model_or_epsilon_before_touching_anything(home):
    result = runner.invoke(app, ["train", "fitness_risk", "weather"])
    assert result.exit_code == 1
    assert "unknown model(s) weather; known: growth, fitness_risk, academic_risk, teacher_training" in result.output
    result = runner.invoke(app, ["train", "growth,weather,moon"])  # the MLflow project's comma-separated form
    assert result.exit_code == 1 and "unknown model(s) weather, moon" in result.output
    result = runner.invoke(app, ["train", "--epsilon", "-1"])
    assert result.exit_code == 1 and "epsilon must be > 0" in result.output
    assert not (home / "mlflow").exists()


def test_users_add_list_disable(home):
    result = runner.invoke(app, ["users", "add", "wang", "--role", "class_teacher", "--scope", "C01",
                                 "--password", "a long enough passphrase"])
    assert result.exit_code == 0, result.output
    assert "active" in runner.invoke(app, ["users", "list"]).output
    assert runner.invoke(app, ["users", "disable", "wang"]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["users", "list"]).output
    missing = runner.invoke(app, ["users", "disable", "nobody"])
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output
