"""The service's sources below the routes: the row cache, the directory, the DP releases, the throttle."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from serving.directory import Directory, ReloadingDirectory, current_enrollment, load_directory
from serving.dp_releases import DPReleases
from serving.model_cards import _aliases_by_version, audits_from_metrics
from serving.online import CachedFeatureReader, InMemoryFeatureReader
from serving.throttle import LoginThrottle


def test_cache_serves_repeated_reads_and_remembers_absent_rows():
    store = InMemoryFeatureReader({"v": {"a": {"x": 1}}})
    cached = CachedFeatureReader(store, max_rows=10)
    assert cached.read("v", ["a", "b"]) == [{"x": 1}, None]
    assert cached.read("v", ["b", "a"]) == [None, {"x": 1}]
    assert store.reads == 2 and (cached.hits, cached.misses) == (2, 2)
    cached.read("v", ["a"])[0]["x"] = 99  # a caller changing its copy
    assert cached.read("v", ["a"]) == [{"x": 1}]


def test_cache_is_flushed_by_a_publish_and_bounded():
    store = InMemoryFeatureReader({"v": {str(i): {"i": i} for i in range(5)}})
    cached = CachedFeatureReader(store, max_rows=2)
    cached.read("v", ["0", "1", "2"])
    assert cached.read("v", ["2"]) == [{"i": 2}] and store.reads == 3
    cached.read("v", ["0"])
    assert store.reads == 4, "the least recently used row went first"
    store.put("v", "2", {"i": 20})
    assert cached.read("v", ["2"]) == [{"i": 20}]
    assert CachedFeatureReader(store, max_rows=0).read("v", ["1"]) == [{"i": 1}]


def test_directory_lists_classes_schools_courses_and_who_trained_where():
    directory = Directory.from_frames(
        enrollment=pd.DataFrame({"student_key": ["s2", "s1", "s3"], "class_id": ["c1", "c1", "c2"],
                                 "school_id": ["A", "A", "B"], "grade": [3, 3, 4], "school_year": [2025] * 3}),
        courses=pd.DataFrame({"course_id": ["k1", "k2"], "center_id": ["T1", "T2"], "title": ["One", "Two"],
                              "dimensions": ["awareness;application", ""], "subject": ["any", "math"],
                              "level": ["basic", "advanced"], "hours": [12.0, None]}),
        trainings=pd.DataFrame({"teacher_id": ["t1", "t1", "t2"], "course_id": ["k1", "k2", "k2"]}))
    assert directory.class_info("c1").students == ("s1", "s2")
    assert directory.students_of_school("A") == ["s1", "s2"] and directory.classes_of_school("Z") == []
    assert directory.courses["k1"].dimensions == ("awareness", "application") and directory.courses["k2"].hours is None
    assert directory.centers_of_teacher("t1") == {"T1", "T2"} and directory.teachers_of_center("T2") == ["t1", "t2"]


def test_current_enrollment_follows_the_online_stores_rule(tmp_path):
    """Each student's latest row within the view's TTL (366 days) of the newest row, as publish does."""
    path = tmp_path / "student_enrollment.parquet"
    rows = [("kept", 2024, "c-2024"), ("kept", 2025, "c-2025"), ("left-last-year", 2024, "c-2024"),
            ("left-long-ago", 2022, "c-2022")]
    pd.DataFrame([{"student_key": key, "event_timestamp": pd.Timestamp(f"{year}-09-01", tz="UTC"), "school_year": year,
                   "class_id": class_id, "school_id": "A", "grade": 5} for key, year, class_id in rows]).to_parquet(path)
    current = current_enrollment(path).set_index("student_key")["class_id"].to_dict()
    assert current == {"kept": "c-2025", "left-last-year": "c-2024"}
    assert load_directory(tmp_path, tmp_path / "no-lake").class_info("c-2025").students == ("kept",)


def test_reloading_directory_rebuilds_when_a_file_changes(tmp_path, monkeypatch):
    import serving.directory as module

    monkeypatch.setattr(module, "RELOAD_CHECK_SECONDS", 0.0)
    path, built = tmp_path / "f", []
    path.write_text("1")
    source = ReloadingDirectory(lambda: built.append(1) or Directory(), [path])
    source.get(), source.get()
    assert len(built) == 1
    os.utime(path, ns=(1, 1))
    source.get()
    assert len(built) == 2


def test_releases_missing_or_suppressed_stay_empty(tmp_path):
    releases = DPReleases(tmp_path)
    assert releases.five_domain_norms(9, "f") is None and releases.fitness_pass_rates() == []
    pd.DataFrame({"school_year": [2025] * 6, "grade": [9] * 6, "sex": list("mmmfff"),
                  "statistic": ["tested", "passing", "pass_rate"] * 2,
                  "value": pd.array([100, 90, 0.9, None, None, None], dtype="Float64"),
                  "suppressed": [False] * 3 + [True] * 3, "epsilon": [0.2, 0.2, 0.4] * 2,
                  "mechanism": ["m"] * 6, "noise_scale": [5.0] * 6}).to_parquet(tmp_path / "fitness_pass_rates.parquet")
    cells = {(c.grade, c.sex): c for c in releases.fitness_pass_rates()}
    assert cells[(9, "m")].pass_rate == pytest.approx(0.9) and cells[(9, "f")].pass_rate is None
    assert cells[(9, None)].pass_rate is None and cells[(9, None)].suppressed  # a suppressed half hides the whole


def test_audit_metrics_regroup_by_target_and_attack():
    rows = audits_from_metrics({"audit.dp.threshold.auc": 0.5, "audit.dp.threshold.epsilon_lower_bound": 0.1,
                                "audit.nonprivate.canary.auc": 0.7, "auc_test": 0.8, "audit.bad": 1.0})
    assert [(r.target, r.attack, r.metrics) for r in rows] == [
        ("dp", "threshold", {"auc": 0.5, "epsilon_lower_bound": 0.1}), ("nonprivate", "canary", {"auc": 0.7})]


def test_aliases_come_from_the_registered_model():
    # MLflow's search_model_versions leaves versions' aliases empty; the registered model maps alias → version.
    assert _aliases_by_version({"champion": 1, "challenger": "1", "old": 2}) == {1: ("challenger", "champion"),
                                                                              2: ("old",)}
    assert _aliases_by_version(None) == {}


def test_pages_show_times_to_the_minute_in_utc():
    from serving.pages.render import _when

    assert _when("2026-12-03T07:24:19+00:00") == "2026-12-03 07:24 UTC"
    assert _when("2026-12-03T15:24:19+08:00") == "2026-12-03 07:24 UTC"
    assert _when(None) == "—" and _when("yesterday") == "yesterday"


def test_throttle_locks_an_account_then_lets_it_go():
    now = [0.0]
    throttle = LoginThrottle(max_failures_per_account=2, max_failures_per_address=3, window_seconds=60,
                             clock=lambda: now[0])
    throttle.failed("Teacher", "10.0.0.1")
    assert throttle.retry_after("teacher", "10.0.0.2") is None
    now[0] = 10.0
    throttle.failed("teacher ", "10.0.0.1")  # the same account, however it is typed
    assert throttle.retry_after("TEACHER", "10.0.0.9") == 50
    throttle.failed("nurse", "10.0.0.1")
    assert throttle.retry_after("someone-else", "10.0.0.1") == 50, "one address cannot walk through accounts"
    now[0] = 70.0
    assert throttle.retry_after("teacher", "10.0.0.2") is None


def test_workers_share_one_count_and_the_file_names_nobody(tmp_path):
    """`portrait serve` runs a worker per core: a guesser must not get a lockout's worth from each."""
    path, key = tmp_path / "sign-in-failures.db", b"k" * 32
    workers = [LoginThrottle(path, key=key, max_failures_per_account=3) for _ in range(2)]
    for attempt in range(3):
        workers[attempt % 2].failed("teacher", "10.0.0.7")
    assert all(worker.retry_after("teacher", None) is not None for worker in workers)
    assert b"teacher" not in path.read_bytes() and b"10.0.0.7" not in path.read_bytes()


def test_a_right_password_clears_the_account():
    throttle = LoginThrottle(max_failures_per_account=2)
    throttle.failed("teacher", None)
    throttle.succeeded("teacher")
    throttle.failed("teacher", None)
    assert throttle.retry_after("teacher", None) is None
