"""Student indicator families: academics, literacy, 德, 美/劳, attendance and five-domain scores.

A ~1,500-student synthetic city (real synth + ingest) checks schemas, keys, ranges, point in time
and realism; a tiny hand-made lake checks values that are worked out by hand here.
"""

from __future__ import annotations

import math
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.indicators import academics, aesthetic_labor, attendance, five_domain, literacy, moral
from features.indicators.five_domain import (
    DOMAIN_WEIGHTS, DOMAINS, INDICATORS, Indicator, five_domain_family, validate_weights,
)
from features.indicators.duck import entity_ranges
from features.indicators.fitness import score_fitness_tests
from features.ingest import ingest
from features.lake import write_parquet
from features.synth import CityPlan, read_ground_truth, write_synthetic_city
from privacy.pseudonyms import Pseudonymizer

KEY = b"k" * 32
FAMILIES = [f for m in (academics, literacy, moral, aesthetic_labor, attendance, five_domain) for f in m.FAMILIES]
BY_NAME = {f.name: f for f in FAMILIES}


def build_all(lake: Path, out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    return {f.name: f.build(lake, out / f"{f.name}.parquet") for f in FAMILIES}


def read(out: Path, name: str) -> pd.DataFrame:
    family = BY_NAME[name]
    frame = pd.read_parquet(out / f"{name}.parquet")
    return frame.sort_values(family.keys + ["event_timestamp"]).reset_index(drop=True)


def utc(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


# ============================================================================================
# The synthetic city
# ============================================================================================


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    export, lake, out = root / "export", root / "lake", root / "indicators"
    write_synthetic_city(CityPlan(students=1500, seed=11), export)
    ingest(export, lake_dir=lake, pseudonymizer=Pseudonymizer(KEY))
    counts = build_all(lake, out)
    terms = pd.read_parquet(lake / "terms.parquet")
    return SimpleNamespace(root=root, export=export, lake=lake, out=out, counts=counts, terms=terms)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_every_family_writes_exactly_its_schema_with_unique_keys(city, name):
    family = BY_NAME[name]
    path = city.out / f"{name}.parquet"
    assert pq.read_schema(path).equals(family.arrow_schema(), check_metadata=False)
    frame = pd.read_parquet(path)
    assert len(frame) == city.counts[name] > 0
    assert not frame.duplicated(family.keys + ["event_timestamp"]).any()
    # Dated at a term's end, 00:00 UTC.
    ends = set(pd.to_datetime(city.terms["end_date"]).dt.tz_localize("UTC"))
    assert set(frame["event_timestamp"]) <= ends
    assert (frame["event_timestamp"] == frame["event_timestamp"].dt.normalize()).all()


def test_families_are_declared_with_ttl_and_known_fields():
    names = [f.name for f in FAMILIES]
    assert names == ["student_subject_term", "student_academics", "student_literacy", "student_moral",
                     "student_aesthetic_labor", "student_attendance", "student_five_domain"]
    assert names.index("student_five_domain") == len(names) - 1  # it reads the others' outputs
    for family in FAMILIES:
        assert 150 <= family.ttl.days <= 400
        assert family.keys[0] == "student_key"
        assert all(name == name.lower() and " " not in name for name in family.fields)
    assert BY_NAME["student_subject_term"].keys == ["student_key", "subject"]


def test_city_values_are_in_their_ranges(city):
    subjects = read(city.out, "student_subject_term")
    assert subjects["share"].between(0, 1).all()
    assert subjects["pct"].dropna().between(0, 100).all()
    assert set(subjects["failed"]) <= {0, 1}
    assert ((subjects["share"] < 0.6) == (subjects["failed"] == 1)).all()
    # z is standardized within grade, term and subject: mean 0, population SD 1.
    groups = subjects.dropna(subset=["z"]).groupby(["grade", "event_timestamp", "subject"])["z"]
    assert groups.mean().abs().max() < 1e-9
    sizable = groups.count() > 20
    assert np.allclose(groups.std(ddof=0)[sizable], 1.0)
    scores = read(city.out, "student_five_domain")
    for domain in (*DOMAINS, "overall"):
        assert scores[domain].dropna().between(0, 100).all()
    assert (scores["domains_computed"] == scores[list(DOMAINS)].notna().sum(axis=1)).all()
    assert (scores["domains_computed"] == 5).mean() > 0.95
    rates = read(city.out, "student_attendance")
    assert rates["attendance_rate"].between(0, 1).all()


def test_academics_from_a_fresh_sibling_equals_a_standalone_build(city, tmp_path):
    alone = tmp_path / "student_academics.parquet"  # no sibling in tmp_path: built from scratch
    academics.STUDENT_ACADEMICS.build(city.lake, alone)
    assert not (tmp_path / ".student_academics.build").exists()  # scratch removed
    family = academics.STUDENT_ACADEMICS
    pd.testing.assert_frame_equal(
        pd.read_parquet(alone).sort_values(family.keys + ["event_timestamp"]).reset_index(drop=True),
        read(city.out, "student_academics"))


def test_student_buckets_change_nothing(city, tmp_path, monkeypatch):
    monkeypatch.setattr(academics, "ROWS_PER_BUCKET", 5_000)  # ~20 buckets instead of 1
    out = tmp_path / "student_subject_term.parquet"
    academics.STUDENT_SUBJECT_TERM.build(city.lake, out)
    family = academics.STUDENT_SUBJECT_TERM
    pd.testing.assert_frame_equal(
        pd.read_parquet(out).sort_values(family.keys + ["event_timestamp"]).reset_index(drop=True),
        read(city.out, "student_subject_term"))
    # Written term by term: row groups follow each other in term order, so a reader filtering on one
    # term skips all but the (at most two) groups that hold it.
    metadata = pq.ParquetFile(out).metadata
    column = pq.read_schema(out).names.index("event_timestamp")
    groups = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    groups = [g for g in groups if g.num_values]
    assert all(earlier.max <= later.min for earlier, later in zip(groups, groups[1:]))


def reference_subject_terms(lake: Path) -> pd.DataFrame:
    """student_subject_term as first written: plain window functions over every row (a RANGE frame
    on the term index for slope and volatility, `percent_rank` for the percentile). The build
    computes the same values another way (one aggregate pass, closed forms, a histogram)."""
    files = {t: f"read_parquet('{lake / f'{t}.parquet'}')" for t in ("terms", "grades", "class_memberships", "classes")}
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(f"""
            WITH terms AS (
                SELECT term_id, school_year, school_year * 2 + term - 1 AS idx,
                       date_trunc('day', end_date)::TIMESTAMP AS end_ts
                FROM {files['terms']} WHERE end_date IS NOT NULL),
            grade_of AS (
                SELECT m.student_id, m.school_year, any_value(c.grade) AS grade
                FROM {files['class_memberships']} m JOIN {files['classes']} c USING (class_id)
                GROUP BY m.student_id, m.school_year),
            s AS (
                SELECT e.student_id, e.subject, t.idx, t.end_ts, avg(least(e.score / e.full_mark, 1.0)) AS share,
                       any_value(g.grade) AS grade
                FROM {files['grades']} e JOIN terms t USING (term_id)
                     LEFT JOIN grade_of g ON g.student_id = e.student_id AND g.school_year = t.school_year
                WHERE e.score IS NOT NULL AND e.full_mark > 0
                GROUP BY e.student_id, e.subject, t.idx, t.end_ts)
            SELECT student_id AS student_key, subject, end_ts::TIMESTAMPTZ AS event_timestamp, grade, share,
                   CASE WHEN grade IS NOT NULL THEN coalesce(
                       (share - avg(share) OVER w) / nullif(stddev_pop(share) OVER w, 0), 0.0) END AS z,
                   CASE WHEN grade IS NOT NULL THEN 100.0 * percent_rank() OVER (w ORDER BY share) END AS pct,
                   regr_slope(share, idx) OVER career AS slope_4t,
                   stddev_samp(share) OVER career AS volatility_4t,
                   CASE WHEN share < 0.6 - 1e-9 THEN 1 ELSE 0 END AS failed
            FROM s WINDOW w AS (PARTITION BY grade, subject, idx),
                 career AS (PARTITION BY student_id, subject ORDER BY idx RANGE BETWEEN 3 PRECEDING AND CURRENT ROW)
        """).df().sort_values(["student_key", "subject", "event_timestamp"]).reset_index(drop=True)


def assert_same_subject_terms(built: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert len(built) == len(reference)
    for column in ("student_key", "subject", "event_timestamp", "failed"):
        assert (built[column].to_numpy() == reference[column].to_numpy()).all(), column
    assert (built["grade"].isna() == reference["grade"].isna()).all()
    assert (built["grade"].dropna().to_numpy() == reference["grade"].dropna().to_numpy()).all()
    for column in ("share", "z", "pct", "slope_4t", "volatility_4t"):
        np.testing.assert_allclose(built[column].to_numpy(float), reference[column].to_numpy(float),
                                   rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)


def test_subject_terms_equal_the_window_function_formulation_on_the_city(city):
    reference = reference_subject_terms(city.lake)
    assert reference["slope_4t"].notna().mean() > 0.5
    assert_same_subject_terms(read(city.out, "student_subject_term"), reference)
    # NaN and empty stay apart as before: a one-term slope is NaN (regr_slope), a volatility empty.
    with duckdb.connect() as con:
        nan, null, empty = con.execute(
            "SELECT count(*) FILTER (WHERE isnan(slope_4t)), count(*) FILTER (WHERE slope_4t IS NULL), "
            "count(*) FILTER (WHERE volatility_4t IS NULL) "
            f"FROM read_parquet('{city.out / 'student_subject_term.parquet'}')").fetchall()[0]
    assert null == 0 and nan == empty == reference["slope_4t"].isna().sum() > 0


def test_subject_terms_over_gaps_equal_the_window_function_formulation(tmp_path):
    """Terms a subject was not graded in stay gaps: slope and volatility read the terms t-3..t
    present, never an older term in place of a missing one."""
    rows = []
    for student, term, subject, share in [
        ("A", "2022-2", "math", 20), ("A", "2023-2", "math", 70), ("A", "2024-2", "math", 55),  # gaps
        ("B", "2022-2", "math", 40), ("B", "2024-2", "math", 90),  # 2022-2 is outside 2024-2's window
        ("C", "2023-1", "math", 50), ("C", "2023-2", "math", 50), ("C", "2024-1", "math", 50),  # flat
        ("D", "2023-1", "math", 80), ("D", "2024-1", "math", 60), ("D", "2024-2", "math", 75),
    ]:
        rows += [(student, term, subject, "midterm", share, 100), (student, term, subject, "final", share + 2, 100)]
    rows.append(("B", "2023-1", "math", "final", 130, 120))  # above full mark: 1
    lake = write_tiny_lake(tmp_path / "lake", grades=rows)
    out = tmp_path / "student_subject_term.parquet"
    academics.STUDENT_SUBJECT_TERM.build(lake, out)
    built = pd.read_parquet(out).sort_values(["student_key", "subject", "event_timestamp"]).reset_index(drop=True)
    assert_same_subject_terms(built, reference_subject_terms(lake))
    a = row(built, "A", "2024-2", subject="math")  # 2023-2 (offset -2) and 2024-2 only
    assert a["slope_4t"] == pytest.approx((0.56 - 0.71) / 2)
    assert a["volatility_4t"] == pytest.approx(statistics.stdev([0.71, 0.56]))
    b = row(built, "B", "2024-2", subject="math")  # 2023-1 (offset -3) and 2024-2; not 2022-2
    assert b["slope_4t"] == pytest.approx((0.91 - 1.0) / 3)
    assert math.isnan(row(built, "B", "2022-2", subject="math")["slope_4t"])
    c = row(built, "C", "2024-1", subject="math")
    assert c["slope_4t"] == pytest.approx(0.0, abs=1e-12) and c["volatility_4t"] == pytest.approx(0.0, abs=1e-12)


def test_entity_ranges_split_a_sorted_file_at_row_groups_and_cover_every_row(tmp_path):
    keys = sorted(f"s{i:05d}" for i in range(5_000))
    path = tmp_path / "sorted.parquet"
    pq.write_table(pa.table({"student_id": [k for k in keys for _ in range(3)]}), path, row_group_size=600)
    conditions = entity_ranges(path, "student_id", 7)
    assert len(conditions) == 7 and not any("hash" in c for c in conditions)
    with duckdb.connect() as con:
        counts = [con.execute(f"SELECT count(*), count(DISTINCT student_id) FROM read_parquet('{path}') "
                              f"WHERE {c}").fetchone() for c in conditions]
        # A student's rows never straddle two buckets; together the buckets hold every row once.
        assert sum(n for n, _ in counts) == 15_000 and sum(d for _, d in counts) == 5_000
        assert all(n > 0 for n, _ in counts)
    shuffled = tmp_path / "shuffled.parquet"
    pq.write_table(pa.table({"student_id": keys[::-1]}), shuffled, row_group_size=600)
    assert all("hash" in c for c in entity_ranges(shuffled, "student_id", 7))  # unsorted: by hash
    assert entity_ranges(path, "student_id", 1) == ["TRUE"]


def test_student_ranges_change_nothing(city, tmp_path, monkeypatch):
    """A lake sorted by student in small row groups is read in student ranges: same rows."""
    lake = tmp_path / "lake"
    shutil.copytree(city.lake.resolve(), lake, ignore=shutil.ignore_patterns("quarantine"))
    grades = pq.read_table(lake / "grades.parquet").sort_by("student_id")
    pq.write_table(grades, lake / "grades.parquet", row_group_size=max(1, grades.num_rows // 40))
    monkeypatch.setattr(academics, "ROWS_PER_BUCKET", max(1, grades.num_rows // 2 // 8))  # 8 buckets
    assert len(entity_ranges(lake / "grades.parquet", "student_id", 8)) == 8
    out = tmp_path / "student_subject_term.parquet"
    academics.STUDENT_SUBJECT_TERM.build(lake, out)
    family = academics.STUDENT_SUBJECT_TERM
    pd.testing.assert_frame_equal(
        pd.read_parquet(out).sort_values(family.keys + ["event_timestamp"]).reset_index(drop=True),
        read(city.out, "student_subject_term"), check_exact=False, rtol=1e-12, atol=1e-12)


def test_declining_students_show_it(city):
    truth = read_ground_truth(city.export)["academic_decline"]
    truth["student_key"] = Pseudonymizer(KEY).series("student", truth["student_id"])
    truth["onset_idx"] = _term_idx(truth["onset_term_id"])
    frame = read(city.out, "student_academics")
    frame["idx"] = frame["event_timestamp"].map(_end_to_idx(city.terms))
    frame = frame.merge(truth[["student_key", "onset_idx"]], on="student_key", how="left")
    after = frame[(frame["idx"] - frame["onset_idx"]).between(1, 3)]
    others = frame[frame["onset_idx"].isna()]
    assert len(after) > 50
    assert after["trend"].mean() < -0.02  # losing over 2 % of full mark a term
    assert abs(others["trend"].mean()) < 0.005
    assert after["mean_z"].mean() < -0.5 < others["mean_z"].mean()
    scores = read(city.out, "student_five_domain").merge(truth[["student_key", "onset_idx"]], on="student_key",
                                                         how="left")
    scores["idx"] = scores["event_timestamp"].map(_end_to_idx(city.terms))
    declined = scores[(scores["idx"] - scores["onset_idx"]) >= 2]
    fine = scores[scores["onset_idx"].isna()]
    assert declined["zhi"].mean() < fine["zhi"].mean() - 10
    assert declined["de"].mean() < fine["de"].mean() - 10  # absences and discipline rose too


def test_ti_is_the_fitness_total_of_the_school_years_test_scored_from_the_lake(city):
    weights = {**DOMAIN_WEIGHTS, "ti": {"fitness_total": 1.0}}
    out = city.out / "five_domain_ti_only.parquet"  # siblings in the same folder are read, fresh
    five_domain_family(weights).build(city.lake, out)
    scores = pd.read_parquet(out)
    scored = score_fitness_tests(pd.read_parquet(city.lake / "fitness_tests.parquet"))
    last_year = int(city.terms["school_year"].max())
    tests = scored[scored["school_year"] == last_year][["student_id", "total_score"]]
    term_end = utc(str(city.terms.loc[city.terms["term_id"] == f"{last_year}-1", "end_date"].iloc[0].date()))
    merged = scores[scores["event_timestamp"] == term_end].merge(
        tests, left_on="student_key", right_on="student_id")
    assert len(merged) > 500
    assert np.allclose(merged["ti"], merged["total_score"].clip(0, 100), equal_nan=True)


def test_point_in_time_on_the_city_a_changed_last_term_moves_no_earlier_row(city, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(city.lake.resolve(), lake, ignore=shutil.ignore_patterns("quarantine"))
    last = city.terms.sort_values("end_date")["term_id"].iloc[-1]
    changes = {
        "grades": lambda f: f.assign(score=f["score"].where(f["term_id"] != last, f["score"] * 0.5)),
        "attendance": lambda f: f.assign(days_absent=f["days_absent"].where(f["term_id"] != last, 20)),
        "literacy_assessments": lambda f: f.assign(score=f["score"].where(f["term_id"] != last, 5.0)),
        "conduct_records": lambda f: f.assign(value=f["value"].where(f["term_id"] != last, f["value"] + 3)),
        "activity_records": lambda f: f.assign(value=f["value"].where(f["term_id"] != last, 0.0)),
    }
    for table, change in changes.items():
        write_parquet(change(pd.read_parquet(lake / f"{table}.parquet")), lake / f"{table}.parquet")
    out = tmp_path / "indicators"
    build_all(lake, out)
    cutoff = utc(str(city.terms.sort_values("end_date")["end_date"].iloc[-1].date()))
    for name in BY_NAME:
        before, after = read(city.out, name), read(out, name)
        early = before["event_timestamp"] < cutoff
        pd.testing.assert_frame_equal(before[early].reset_index(drop=True),
                                      after[after["event_timestamp"] < cutoff].reset_index(drop=True))
        late = before[~early].reset_index(drop=True)
        assert not late.equals(after[after["event_timestamp"] >= cutoff].reset_index(drop=True)), name


# ============================================================================================
# A tiny lake, worked out by hand
# ============================================================================================

TERMS = [  # term_id, school_year, term, start, end
    ("2022-2", 2022, 2, "2023-02-20", "2023-07-10"),
    ("2023-1", 2023, 1, "2023-09-01", "2024-01-20"),
    ("2023-2", 2023, 2, "2024-02-20", "2024-07-10"),
    ("2024-1", 2024, 1, "2024-09-01", "2025-01-20"),
    ("2024-2", 2024, 2, "2025-02-20", "2025-07-10"),
]
END = {t[0]: utc(t[4]) for t in TERMS}


def _grade_rows():
    rows = []

    def both(student, term, subject, mid, final, full):
        rows.extend([(student, term, subject, "midterm", mid, full), (student, term, subject, "final", final, full)])

    both("A", "2022-2", "math", 20, 20, 100)  # 0.20, outside the 4-term window of 2024-2
    both("A", "2023-1", "math", 96, 84, 120)  # (0.8 + 0.7) / 2 = 0.75
    both("A", "2023-2", "math", 84, 84, 120)  # 0.70
    both("A", "2024-1", "math", 65, 65, 100)  # 0.65
    both("A", "2024-2", "math", 55, 55, 100)  # 0.55
    both("B", "2023-1", "math", 60, 60, 120)  # 0.50: failed
    both("B", "2023-2", "math", 72, 72, 120)
    both("B", "2024-1", "math", 70, 70, 100)
    both("B", "2024-2", "math", 80, 80, 100)
    rows.append(("C", "2023-1", "math", "final", 108, 120))  # final only: 0.90
    both("C", "2023-2", "math", 108, 108, 120)
    both("C", "2024-1", "math", 90, 90, 100)
    both("C", "2024-2", "math", 90, 90, 100)
    both("A", "2023-1", "chinese", 108, 108, 120)  # 0.90
    both("B", "2023-1", "chinese", 72, 72, 120)  # 0.60: exactly the pass line, not failed
    both("C", "2023-1", "chinese", 72, 72, 120)  # 0.60
    both("A", "2023-1", "music", 95, 95, 100)  # 0.95: 美, not an academic subject
    both("B", "2023-1", "art", 80, 80, 100)  # 0.80: 美 from grades, with no activity record
    both("C", "2023-1", "politics", 80, 80, 100)  # 0.80: moral share, and academic
    return rows


def write_tiny_lake(lake: Path, *, skip: tuple[str, ...] = (), grades=None, attendance_rows=None,
                    literacy_rows=None) -> Path:
    lake.mkdir(parents=True, exist_ok=True)
    day = pd.to_datetime
    tables = {
        "terms": pd.DataFrame(TERMS, columns=["term_id", "school_year", "term", "start_date", "end_date"]).assign(
            start_date=lambda f: day(f["start_date"]), end_date=lambda f: day(f["end_date"])),
        "classes": pd.DataFrame([("C6", "S1", 2022, 6, "T1"), ("C7", "S1", 2023, 7, "T1"), ("C8", "S1", 2024, 8, "T1")],
                                columns=["class_id", "school_id", "school_year", "grade", "head_teacher_id"]),
        "class_memberships": pd.DataFrame(
            [("A", "C6", 2022)] + [(s, "C7", 2023) for s in "ABCD"] + [(s, "C8", 2024) for s in "ABC"],
            columns=["student_id", "class_id", "school_year"]),
        "grades": pd.DataFrame(grades or _grade_rows(),
                               columns=["student_id", "term_id", "subject", "exam", "score", "full_mark"]),
        "attendance": pd.DataFrame(attendance_rows or [
            ("A", "2023-1", 95, 5), ("A", "2023-2", 90, 0), ("A", "2024-2", 90, 9), ("D", "2023-1", 95, 0),
        ], columns=["student_id", "term_id", "days_enrolled", "days_absent"]),
        "literacy_assessments": pd.DataFrame(literacy_rows or [
            ("A", "2023-2", "digital", 70.0), ("A", "2023-2", "reading", 80.0),
            ("A", "2024-2", "digital", 75.0), ("A", "2024-2", "reading", 70.0), ("A", "2024-2", "science", 60.0),
        ], columns=["student_id", "term_id", "domain", "score"]),
        "conduct_records": pd.DataFrame([
            ("A", "2022-2", "discipline", 3.0),
            ("A", "2023-1", "volunteer_hours", 4.0), ("A", "2023-1", "volunteer_hours", 2.0),
            ("A", "2023-1", "honor", 1.0), ("A", "2023-1", "class_duty", 8.0),
            ("A", "2024-1", "class_duty", 7.0), ("A", "2024-2", "class_duty", 6.0),
            ("B", "2023-1", "discipline", 2.0), ("B", "2023-1", "class_duty", 6.0),
            ("B", "2023-2", "discipline", 1.0), ("B", "2024-1", "discipline", 1.0),
        ], columns=["student_id", "term_id", "kind", "value"]),
        "activity_records": pd.DataFrame([
            ("A", "2023-1", "aesthetic", "arts_practice_hours", 10.0), ("A", "2023-1", "aesthetic", "performance", 1.0),
            ("A", "2023-1", "labor", "labor_hours", 15.0), ("A", "2023-1", "labor", "labor_skill", 4.0),
        ], columns=["student_id", "term_id", "domain", "kind", "value"]),
    }
    for name, frame in tables.items():
        if name not in skip:
            write_parquet(frame, lake / f"{name}.parquet")
    return lake


def write_fitness_sibling(out: Path, a_2024_total: float = 50.0) -> None:
    """student_fitness as the fitness module writes it; A's 2024 test comes after the 2024-1 term ends."""
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(pd.DataFrame({
        "student_key": ["A", "A"], "event_timestamp": [utc("2023-10-10"), utc("2025-03-01")],
        "school_year": [2023, 2024], "total_score": [85.0, a_2024_total],
    }), out / "student_fitness.parquet")


@pytest.fixture()
def tiny(tmp_path):
    lake = write_tiny_lake(tmp_path / "lake")
    out = tmp_path / "indicators"
    write_fitness_sibling(out)
    build_all(lake, out)
    return SimpleNamespace(lake=lake, out=out, tmp=tmp_path)


def row(frame: pd.DataFrame, student: str, term: str, **keys) -> pd.Series:
    mask = (frame["student_key"] == student) & (frame["event_timestamp"] == END[term])
    for key, value in keys.items():
        mask &= frame[key] == value
    assert mask.sum() == 1, (student, term, keys)
    return frame[mask].iloc[0]


def _z(values: list[float], i: int) -> float:
    return (values[i] - statistics.fmean(values)) / statistics.pstdev(values)


def test_share_z_percentile_failed_by_hand(tiny):
    frame = read(tiny.out, "student_subject_term")
    math_shares = [0.75, 0.50, 0.90]  # A, B, C in grade 7, 2023-1
    for i, student in enumerate("ABC"):
        r = row(frame, student, "2023-1", subject="math")
        assert r["grade"] == 7
        assert r["share"] == pytest.approx(math_shares[i])
        assert r["z"] == pytest.approx(_z(math_shares, i))
    assert [row(frame, s, "2023-1", subject="math")["pct"] for s in "BAC"] == [0.0, 50.0, 100.0]
    assert [row(frame, s, "2023-1", subject="math")["failed"] for s in "ABC"] == [0, 1, 0]
    # Chinese: B and C tie at 0.60 (the pass line: not failed) and share the lowest rank.
    assert [row(frame, s, "2023-1", subject="chinese")["pct"] for s in "BCA"] == [0.0, 0.0, 100.0]
    assert row(frame, "B", "2023-1", subject="chinese")["failed"] == 0
    # A alone in grade 6: z 0, percentile 0.
    alone = row(frame, "A", "2022-2", subject="math")
    assert (alone["grade"], alone["z"], alone["pct"]) == (6, 0.0, 0.0)


def test_slope_and_volatility_over_the_last_four_terms_by_hand(tiny):
    frame = read(tiny.out, "student_subject_term")
    assert math.isnan(row(frame, "A", "2022-2", subject="math")["slope_4t"])  # one term: no slope
    r = row(frame, "A", "2023-2", subject="math")  # 2022-2..2023-2: 0.20, 0.75, 0.70
    assert r["slope_4t"] == pytest.approx(np.polyfit([0, 1, 2], [0.20, 0.75, 0.70], 1)[0])
    assert r["volatility_4t"] == pytest.approx(statistics.stdev([0.20, 0.75, 0.70]))
    r = row(frame, "A", "2024-2", subject="math")  # 2023-1..2024-2 only: 2022-2's 0.20 left the window
    assert r["slope_4t"] == pytest.approx(np.polyfit([0, 1, 2, 3], [0.75, 0.70, 0.65, 0.55], 1)[0])
    assert r["slope_4t"] == pytest.approx(-0.065)
    assert r["volatility_4t"] == pytest.approx(statistics.stdev([0.75, 0.70, 0.65, 0.55]))


def test_academics_imbalance_and_failed_subjects_by_hand(tiny):
    frame = read(tiny.out, "student_academics")
    a = row(frame, "A", "2023-1")
    z_math, z_chinese = _z([0.75, 0.50, 0.90], 0), _z([0.90, 0.60, 0.60], 0)
    assert a["subjects"] == 2  # math and chinese; music counts for 美
    assert a["mean_share"] == pytest.approx((0.75 + 0.90) / 2)
    assert a["mean_z"] == pytest.approx((z_math + z_chinese) / 2)
    assert a["imbalance_sd"] == pytest.approx(statistics.stdev([z_math, z_chinese]))
    assert a["imbalance_range"] == pytest.approx(abs(z_chinese - z_math))
    assert a["failed_subjects"] == 0
    b = row(frame, "B", "2023-1")
    assert (b["subjects"], b["failed_subjects"]) == (2, 1)  # math 0.50 failed, chinese 0.60 passed
    c = row(frame, "C", "2023-1")
    assert c["subjects"] == 3  # politics is an academic subject too
    assert math.isnan(row(frame, "A", "2022-2")["imbalance_sd"])  # one subject: no imbalance


def test_attendance_by_hand(tiny):
    frame = read(tiny.out, "student_attendance")
    first, second = row(frame, "A", "2023-1"), row(frame, "A", "2023-2")
    assert (first["days_enrolled"], first["days_absent"]) == (95, 5)
    assert first["attendance_rate"] == pytest.approx(1 - 5 / 95)
    assert math.isnan(first["rate_change"])
    assert second["rate_change"] == pytest.approx(1.0 - (1 - 5 / 95))
    third = row(frame, "A", "2024-2")  # no 2024-1 record: no change against an older term
    assert math.isnan(third["rate_change"])
    assert third["attendance_rate_4t"] == pytest.approx(1 - (5 + 0 + 9) / (95 + 90 + 90))


def test_literacy_change_by_hand(tiny):
    frame = read(tiny.out, "student_literacy")
    assert len(frame) == 2
    first, second = row(frame, "A", "2023-2"), row(frame, "A", "2024-2")
    assert math.isnan(first["digital_change"]) and math.isnan(first["science"])
    assert (second["digital"], second["digital_change"]) == (75.0, 5.0)
    assert second["reading_change"] == -10.0
    assert second["science"] == 60.0 and math.isnan(second["science_change"])  # first science score
    assert second["literacy_mean"] == pytest.approx((75 + 70 + 60) / 3)


def test_moral_and_aesthetic_labor_by_hand(tiny):
    frame = read(tiny.out, "student_moral")
    a = row(frame, "A", "2023-1")
    assert (a["volunteer_hours"], a["honors"], a["discipline_events"], a["class_duty"]) == (6.0, 1.0, 0.0, 8.0)
    assert math.isnan(a["moral_share"])
    assert row(frame, "A", "2024-1")["discipline_4t"] == 3.0  # 2022-2 is within 2022-2..2024-1
    assert row(frame, "A", "2024-2")["discipline_4t"] == 0.0  # and out of 2023-1..2024-2
    assert row(frame, "B", "2024-1")["discipline_4t"] == 4.0
    c = row(frame, "C", "2023-1")  # a politics grade but no conduct record: conduct unknown, not 0
    assert c["moral_share"] == pytest.approx(0.8) and math.isnan(c["discipline_events"])
    frame = read(tiny.out, "student_aesthetic_labor")
    a = row(frame, "A", "2023-1")
    assert (a["arts_hours"], a["performances"], a["labor_hours"], a["labor_skill"]) == (10.0, 1.0, 15.0, 4.0)
    assert a["music_share"] == pytest.approx(0.95) and math.isnan(a["art_share"])
    b = row(frame, "B", "2023-1")  # an art grade only: activity unknown, not 0
    assert b["art_share"] == pytest.approx(0.8)
    assert math.isnan(b["arts_hours"]) and math.isnan(b["music_share"])
    assert (frame["student_key"] != "C").all()  # neither activity nor 美/劳/PE grades


def test_five_domain_weights_and_renormalization_by_hand(tiny):
    frame = read(tiny.out, "student_five_domain")
    a = row(frame, "A", "2023-1")
    # 德: discipline 0 → 100, attendance (0.947 - 0.85) / 0.15, volunteer 6 h of 20, honors 1 of 2;
    # no politics grade, so its 0.20 is renormalized away.
    attendance_points = 100 * ((1 - 5 / 95) - 0.85) / 0.15
    assert a["de"] == pytest.approx((0.3 * 100 + 0.2 * attendance_points + 0.2 * 30 + 0.1 * 50) / 0.8)
    assert a["zhi"] == pytest.approx((0.6 * 82.5 + 0.2 * 100) / 0.8)  # no literacy yet
    assert a["ti"] == pytest.approx(85.0)  # fitness only (no PE grade)
    assert a["mei"] == pytest.approx((0.3 * 100 / 3 + 0.25 * 95 + 0.2 * 50) / 0.75)  # no art grade
    assert a["lao"] == pytest.approx((0.4 * 50 + 0.3 * 75) / 0.7)  # no labor grade
    assert a["domains_computed"] == 5
    assert a["overall"] == pytest.approx(np.mean([a[d] for d in DOMAINS]))
    d = row(frame, "D", "2023-1")  # attendance only
    assert d["de"] == pytest.approx(100.0) and d["domains_computed"] == 1 and d["overall"] == d["de"]
    assert all(math.isnan(d[x]) for x in ("zhi", "ti", "mei", "lao"))
    # Literacy is carried one term: A's 2023-2 score counts in 2024-1.
    literacy_75 = (70 + 80) / 2
    assert row(frame, "A", "2024-1")["zhi"] == pytest.approx((0.6 * 65 + 0.2 * 100 + 0.2 * literacy_75) / 1.0)
    # 体: the 2024 test is dated 2025-03-01, after 2024-1 ended: 2024-1 still uses the 2023 test.
    assert row(frame, "A", "2024-1")["ti"] == pytest.approx(85.0)
    assert row(frame, "A", "2024-2")["ti"] == pytest.approx(50.0)


def test_five_domain_weights_are_configurable(tiny):
    weights = {**DOMAIN_WEIGHTS, "de": {"volunteer_hours": 0.5, "honors": 0.5}}
    out = tiny.out / "five_custom.parquet"
    five_domain_family(weights).build(tiny.lake, out)
    frame = pd.read_parquet(out)
    a = frame[(frame["student_key"] == "A") & (frame["event_timestamp"] == END["2023-1"])].iloc[0]
    assert a["de"] == pytest.approx(0.5 * 30 + 0.5 * 50)


def test_point_in_time_by_hand_a_later_term_changes_nothing_earlier(tiny):
    grades = [r for r in _grade_rows() if not (r[0] == "A" and r[1] == "2024-2")]
    grades += [("A", "2024-2", "math", "final", 5, 100), ("E", "2024-2", "math", "final", 99, 100)]
    lake = write_tiny_lake(
        tiny.tmp / "lake2", grades=grades,
        attendance_rows=[("A", "2023-1", 95, 5), ("A", "2023-2", 90, 0), ("A", "2024-2", 90, 60),
                         ("D", "2023-1", 95, 0)],
        literacy_rows=[("A", "2023-2", "digital", 70.0), ("A", "2023-2", "reading", 80.0),
                       ("A", "2024-2", "digital", 10.0)])
    out = tiny.tmp / "indicators2"
    write_fitness_sibling(out, a_2024_total=10.0)  # A's test dated after 2024-1 ended changes
    build_all(lake, out)
    for name in BY_NAME:
        before, after = read(tiny.out, name), read(out, name)
        early = lambda f: f[f["event_timestamp"] < END["2024-2"]].reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(early(before), early(after), check_dtype=False)  # E's NaN grade
        if name not in ("student_moral", "student_aesthetic_labor"):  # nothing planted there
            assert not before.equals(after), name  # the planted change did land in 2024-2


def test_a_lake_without_optional_tables_gives_empty_files_with_the_schema(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    terms_only = write_tiny_lake(tmp_path / "terms_only", skip=(
        "classes", "class_memberships", "grades", "attendance", "literacy_assessments", "conduct_records",
        "activity_records"))
    for lake in (empty, terms_only):
        out = tmp_path / f"out_{lake.name}"
        counts = build_all(lake, out)
        assert set(counts.values()) == {0}
        for family in FAMILIES:
            assert pq.read_schema(out / f"{family.name}.parquet").equals(family.arrow_schema(), check_metadata=False)
    # Without literacy and fitness the rest still computes; zhi renormalizes over what is there.
    lake = write_tiny_lake(tmp_path / "no_literacy", skip=("literacy_assessments",))
    out = tmp_path / "out_no_literacy"
    counts = build_all(lake, out)
    assert counts["student_literacy"] == 0 and counts["student_subject_term"] > 0
    frame = read(out, "student_five_domain")
    a = row(frame, "A", "2024-1")
    assert a["zhi"] == pytest.approx((0.6 * 65 + 0.2 * 100) / 0.8)
    assert math.isnan(a["ti"]) and a["domains_computed"] == 2  # 德 (conduct) and 智


# ============================================================================================
# Weights validation
# ============================================================================================


@pytest.mark.parametrize(("change", "message"), [
    ({"de": {"discipline_events": 1.2, "honors": -0.2}}, "negative"),
    ({"de": {"discipline_events": 0.5, "honors": 0.4}}, "sum to 0.9"),
    ({"de": {"kindness": 1.0}}, "unknown indicator"),
    ({"de": {}}, "no indicators"),
    ({"de": {"honors": float("nan")}}, "not a finite number"),
    ({"de": {"honors": "1"}}, "not a finite number"),
    ({"sports": {"fitness_total": 1.0}}, "domains must be exactly"),
])
def test_bad_weights_are_refused(change, message):
    weights = {**DOMAIN_WEIGHTS, **change}
    with pytest.raises(ValueError, match=message):
        validate_weights(weights)
    with pytest.raises(ValueError, match=message):
        five_domain_family(weights)


def test_missing_domain_and_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="missing \\['lao'\\]"):
        validate_weights({d: w for d, w in DOMAIN_WEIGHTS.items() if d != "lao"})
    broken = {**INDICATORS, "honors": Indicator("student_moral", "honors", 2.0, 2.0, "flat")}
    with pytest.raises(ValueError, match="not a range"):
        validate_weights(DOMAIN_WEIGHTS, broken)
    wrong = {**INDICATORS, "honors": Indicator("student_moral", "medals", 0.0, 2.0, "no such field")}
    with pytest.raises(ValueError, match="no field 'medals'"):
        validate_weights(DOMAIN_WEIGHTS, wrong)
    fitness = {**INDICATORS, "fitness_total": Indicator("student_fitness", "bmi", 10.0, 40.0, "not offered")}
    with pytest.raises(ValueError, match="total_score only"):
        validate_weights(DOMAIN_WEIGHTS, fitness)


def test_default_weights_are_valid_and_documented():
    validate_weights(DOMAIN_WEIGHTS)
    doc = five_domain.__doc__
    for domain, table in DOMAIN_WEIGHTS.items():
        first = next(iter(table))
        line = next(line for line in doc.splitlines() if line.strip().startswith(f"{domain} ") and first in line)
        for name, weight in table.items():
            assert f"{name} {f'{weight:.2f}'.lstrip('0')}" in line, (domain, name)
    for name, indicator in INDICATORS.items():
        assert indicator.meaning, name


# ============================================================================================


def _term_idx(term_ids: pd.Series) -> pd.Series:
    return term_ids.str[:4].astype(int) * 2 + term_ids.str[-1].astype(int) - 1


def _end_to_idx(terms: pd.DataFrame) -> dict:
    ends = pd.to_datetime(terms["end_date"]).dt.tz_localize("UTC")
    return dict(zip(ends, _term_idx(terms["term_id"])))


def test_a_parallel_build_writes_what_the_serial_one_does(city, tmp_path):
    """Two families at a time, each after the families it reads: the same files, row for row."""
    from features.indicators import FAMILIES as EVERY_FAMILY
    from features.indicators import build_indicators

    counts = build_indicators(city.lake, tmp_path, workers=2)
    assert list(counts) == [f.name for f in EVERY_FAMILY]
    for name in BY_NAME:
        family = BY_NAME[name]
        order = family.keys + ["event_timestamp"]
        pd.testing.assert_frame_equal(read(tmp_path, name).sort_values(order).reset_index(drop=True),
                                      read(city.out, name).sort_values(order).reset_index(drop=True))
    assert all(dependency in counts for f in EVERY_FAMILY for dependency in f.reads)
