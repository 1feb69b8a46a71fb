"""The JSON API: sign-in, probes, what each role's answers hold (and leave out), models to come."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_testdata import PASSWORD, bearer, directory, feature_reader, token_for

from core.config import Settings
from privacy.ledger import PrivacyLedger
from serving.app import create_app
from serving.audit import audit_path
from serving.online import InMemoryFeatureReader
from serving.security import create_access_token
from serving.throttle import LoginThrottle


def _get(client, user, path, **params):
    response = client.get(path, headers=bearer(token_for(client, user)), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def write_dp_statistics(settings: Settings) -> None:
    """Release files shaped like `training.statistics` writes them (grade 9 and 7, both sexes)."""
    folder = settings.home / "statistics"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for grade in (7, 9):
        for sex in "mf":
            rows.append({"grade": grade, "sex": sex, "domain": None, "statistic": "count", "value": 120.0, "epsilon": 0.1})
            for domain in ("de", "zhi", "ti", "mei", "lao"):
                for stat, value in (("p10", 50.0), ("p25", 60.0), ("p50", 70.0), ("p75", 80.0), ("p90", 88.0)):
                    rows.append({"grade": grade, "sex": sex, "domain": domain, "statistic": stat, "value": value, "epsilon": 0.1})
    norms = pd.DataFrame(rows).assign(term_end=pd.Timestamp("2026-01-20", tz="UTC"), suppressed=False,
                                      mechanism="OpenDP exponential mechanism (quantiles)", noise_scale=1.0)
    norms["value"] = norms["value"].astype("Float64")
    norms.to_parquet(folder / "five_domain_norms.parquet")
    rates = []
    for grade in (7, 9):
        for sex, tested, passing in (("m", 100.0, 90.0), ("f", 100.0, 70.0)):
            rates += [{"grade": grade, "sex": sex, "statistic": "tested", "value": tested, "epsilon": 0.2},
                      {"grade": grade, "sex": sex, "statistic": "passing", "value": passing, "epsilon": 0.2},
                      {"grade": grade, "sex": sex, "statistic": "pass_rate", "value": passing / tested, "epsilon": 0.4}]
    frame = pd.DataFrame(rates).assign(school_year=2025, suppressed=False, mechanism="Integer Laplace",
                                       noise_scale=5.0)
    frame["value"] = frame["value"].astype("Float64")
    frame.to_parquet(folder / "fitness_pass_rates.parquet")


# --- probes and sign-in ----------------------------------------------------------------------------


def test_healthz_needs_nothing(client):
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}


def test_readyz_checks_store_directory_and_the_models_trained_today(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["online_store"] == body["checks"]["directory"] == "ok"
    assert body["checks"]["model:fitness_risk:fitness_risk_score"] == "ok"
    assert body["checks"]["model:growth:growth_score"] == "absent"  # still to come: reported, not required


def test_readyz_is_503_without_the_fitness_risk_scores(settings, users):
    views = {name: rows for name, rows in feature_reader()._views.items() if name != "fitness_risk_score"}
    client = TestClient(create_app(settings, InMemoryFeatureReader(views), directory=directory()))
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "not ready"


def test_readyz_reports_a_store_that_cannot_be_built(tmp_path):
    # No reader given: the app would build the Feast one over an empty home.
    response = TestClient(create_app(Settings(home=tmp_path)), raise_server_exceptions=False).get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "not ready"


def test_openapi_documents_every_route_with_its_refusals(client):
    spec = client.get("/openapi.json").json()
    portrait = spec["paths"]["/api/v1/students/{student_key}/portrait"]["get"]
    assert {"200", "401", "403", "404"} <= set(portrait["responses"])
    assert client.get("/docs").status_code == 200


def test_token_flow_and_me(client):
    token = token_for(client, "teacher")
    assert _get(client, "teacher", "/api/v1/me") == {"username": "teacher", "role": "class_teacher",
                                                      "scope": ["class-1", "class-empty"]}
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_wrong_password_and_unknown_user_get_the_same_401(client):
    response = client.post("/api/v1/token", data={"username": "teacher", "password": "nope"})
    unknown = client.post("/api/v1/token", data={"username": "ghost", "password": "nope"})
    assert response.status_code == unknown.status_code == 401
    assert response.json() == unknown.json()
    assert "Incorrect username or password" in response.json()["detail"]


def test_garbage_expired_or_disabled_tokens_are_401(client, settings, users):
    expired = create_access_token("teacher", "class_teacher", settings.secret("token"), -1)
    good = token_for(client, "teacher")
    for token in ("garbage", expired):
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    users.disable("teacher")
    assert client.get("/api/v1/me", headers=bearer(good)).status_code == 401


def test_failed_logins_are_rate_limited_per_account(settings, users):
    now = [0.0]
    throttle = LoginThrottle(max_failures_per_account=3, window_seconds=600, clock=lambda: now[0])
    client = TestClient(create_app(settings, feature_reader(), directory=directory(), throttle=throttle))
    for _ in range(3):
        assert client.post("/api/v1/token", data={"username": "teacher", "password": "x"}).status_code == 401
    locked = client.post("/api/v1/token", data={"username": "teacher", "password": PASSWORD})
    assert locked.status_code == 429, "the right password during a lockout is refused too"
    assert int(locked.headers["retry-after"]) == 600 and "Wait about 10 minute" in locked.json()["detail"]
    # Another account is not locked by this one's failures; the page sign-in shares the lock.
    assert client.post("/api/v1/token", data={"username": "nurse", "password": PASSWORD}).status_code == 200
    assert client.post("/login", data={"username": "teacher", "password": PASSWORD}).status_code == 429
    now[0] = 601.0
    assert client.post("/api/v1/token", data={"username": "teacher", "password": PASSWORD}).status_code == 200


# --- class teachers ----------------------------------------------------------------------------------


def test_portrait_holds_every_domain_with_where_each_number_comes_from(client, settings):
    write_dp_statistics(settings)
    body = _get(client, "teacher", "/api/v1/students/stu-own/portrait")
    assert (body["student_key"], body["class_id"], body["grade"], body["sex"]) == ("stu-own", "class-1", 9, "f")
    assert "school_id" not in json.dumps(body) and "school-A" not in json.dumps(body)
    assert [year["school_year"] for year in body["history"]] == [2023, 2024, 2025]
    assert body["latest"]["level"] == "excellent" and body["latest"]["test_date"] == "2025-11-03"
    assert body["risk"] == {"probability": 0.12, "level": "green", "model_name": "fitness_risk", "model_version": 3,
                            "epsilon": 2.0, "delta": 1e-5, "reasons": [
                                {"feature": "total_score", "value": 91.5, "reference": None, "effect": -0.09,
                                 "direction": "lowers"},
                                {"feature": "total_change", "value": 10.5, "reference": None, "effect": -0.03,
                                 "direction": "lowers"}]}
    five = body["five_domain"]
    assert five["scores"]["ti"] == 91.0
    assert five["norms"]["release"]["release"] == "five_domain_norms"
    assert five["norms"]["release"]["epsilon"] == pytest.approx(2.6)  # count 0.1 + 5 domains × 5 × 0.1
    bands = {norm["domain"]: norm["band"] for norm in five["norms"]["domains"]}
    assert bands == {"de": "p75_p90", "zhi": "p50_p75", "ti": "above_p90", "mei": "p25_p50", "lao": "p50_p75"}
    # Strengths at or above the cohort's P75 (80: de ties it), weaknesses below its P25 (60).
    assert (five["strengths"], five["weaknesses"]) == (["de", "ti"], [])
    assert {norm["domain"]: norm["standing"] for norm in five["norms"]["domains"]} == {
        "de": "strength", "zhi": None, "ti": "strength", "mei": None, "lao": None}
    assert body["academics"]["mean_share"] == 0.78 and body["attendance"]["days_absent"] == 2
    assert body["trends"] == {"academics": "up", "fitness": "up", "attendance": "flat"}
    assert body["warnings"] == [] and body["warning_level"] is None


def test_strengths_and_weaknesses_follow_the_quartiles_of_the_sorted_dp_norms(client, settings):
    write_dp_statistics(settings)
    norms_path = settings.home / "statistics" / "five_domain_norms.parquet"
    norms = pd.read_parquet(norms_path)
    # Grade 9 girls (stu-own): mei's noisy percentiles come out crossed (p75 under p50, p25 over p50);
    # lao's P25 (and P50) land on the student's 70 (a tie is the band above: no weakness); zhi's P25 is 72.5, above its 72.
    crossed = {"p10": 50.0, "p25": 72.0, "p50": 70.0, "p75": 66.0, "p90": 88.0}
    cell = (norms["grade"] == 9) & (norms["sex"] == "f")
    for stat, value in crossed.items():
        norms.loc[cell & (norms["domain"] == "mei") & (norms["statistic"] == stat), "value"] = value
    norms.loc[cell & (norms["domain"] == "lao") & (norms["statistic"] == "p25"), "value"] = 70.0
    norms.loc[cell & (norms["domain"] == "zhi") & (norms["statistic"] == "p25"), "value"] = 72.5
    norms.loc[cell & (norms["domain"] == "zhi") & (norms["statistic"] == "p50"), "value"] = 75.0
    norms.to_parquet(norms_path)
    five = _get(client, "teacher", "/api/v1/students/stu-own/portrait")["five_domain"]
    mei = next(norm for norm in five["norms"]["domains"] if norm["domain"] == "mei")
    # Sorted (post-processing of the release): 50 ≤ 66 ≤ 70 ≤ 72 ≤ 88; the student's 65 is under P25.
    assert [mei[stat] for stat in ("p10", "p25", "p50", "p75", "p90")] == [50.0, 66.0, 70.0, 72.0, 88.0]
    assert mei["band"] == "p10_p25" and mei["standing"] == "weakness"
    bands = {norm["domain"]: (norm["band"], norm["standing"]) for norm in five["norms"]["domains"]}
    assert bands["lao"] == ("p50_p75", None) and bands["zhi"] == ("p10_p25", "weakness")
    assert (five["strengths"], five["weaknesses"]) == (["de", "ti"], ["zhi", "mei"])


def test_models_still_to_come_say_so_instead_of_showing_numbers(client):
    body = _get(client, "teacher", "/api/v1/students/stu-own/portrait")
    assert body["growth"] == {"available": False, "model": None, "points": [],
                              "message": "not yet available: the growth model has not been scored into the online store"}
    assert body["academic_risk"]["available"] is False and body["academic_risk"]["probability"] is None


def test_models_slot_in_once_their_scores_are_in_the_online_store(settings, users):
    client = TestClient(create_app(settings, feature_reader(with_future_models=True), directory=directory()))
    body = _get(client, "teacher", "/api/v1/students/stu-own/portrait")
    assert body["growth"]["available"] and body["growth"]["model"] == {"name": "growth", "version": 1,
                                                                       "epsilon": 3.0, "delta": 1e-6}
    assert {(p["subject"], p["term_id"]) for p in body["growth"]["points"]} >= {("math", "2024-1"), ("chinese", "2025-1")}
    academic = body["academic_risk"]
    assert (academic["probability"], academic["level"]) == (0.3, "amber")
    assert [(r["feature"], r["value"], r["direction"]) for r in academic["reasons"]] == [
        ("attendance_rate", 0.874, "raises"), ("failed_subjects", 1.0, "raises"), ("mean_share", 0.78, "lowers")]
    # Academic risk warns the way fitness risk does: the model's level, and what it weighed.
    [warning] = [w for w in body["warnings"] if w["reason"] == "academic_model_risk"]
    assert (warning["level"], warning["model_level"], warning["value"]) == ("watch", "amber", 0.3)
    assert warning["model_reasons"] == academic["reasons"]
    recommendations = _get(client, "center", "/api/v1/teachers/tch-own/recommendations")
    assert recommendations["recommendations"][0] == {
        "course_id": "course-2", "title": "Course course-2", "center_id": "center-1", "expected_gain": 4.5,
        "dimension": "application", "reason": "targets application, your weakest (58.0): expected +4.5",
        "reason_parts": [{"kind": "targets_weakest", "dimension": "application", "score": 58.0, "gain": 4.5,
                          "weakest_rank": 1, "targets": [], "weakest": []}]}
    invites = _get(client, "center", "/api/v1/courses/course-1/invites")
    assert invites["available"] and [i["teacher_key"] for i in invites["invites"]] == ["tch-invited", "tch-own"]
    assert [i["enrolled"] for i in invites["invites"]] == [False, True] and invites["course"]["invited"] == 2
    assert invites["invites"][0]["reason_parts"] == [{"kind": "dimension_gain", "dimension": "application",
                                                      "score": 58.0, "gain": 5.2, "weakest_rank": None,
                                                      "targets": [], "weakest": []}]
    overview = _get(client, "center", "/api/v1/centers/center-1")
    assert [c["invited"] for c in overview["courses"]] == [2, 1]


def test_warnings_give_reasons_items_and_the_model_behind_them(client):
    body = _get(client, "teacher", "/api/v1/students/stu-own-2/portrait")
    reasons = {w["reason"]: w for w in body["warnings"]}
    assert body["warning_level"] == "high"
    assert reasons["fitness_model_risk"]["source"] == "model" and reasons["fitness_model_risk"]["value"] == 0.71
    assert reasons["fitness_model_risk"]["model_level"] == "red" and reasons["fitness_model_risk"]["level"] == "high"
    assert [(r["feature"], r["direction"]) for r in reasons["fitness_model_risk"]["model_reasons"]] == [
        ("score_run_50m", "raises"), ("total_change", "raises"), ("total_score", "raises")]
    assert reasons["fitness_failed"]["model_level"] is None and reasons["fitness_failed"]["model_reasons"] == []
    assert reasons["fitness_model_risk"]["model"] == {"name": "fitness_risk", "version": 3, "epsilon": 2.0,
                                                      "delta": 1e-5}
    assert reasons["fitness_failed"]["items"] == ["run_50m"] and reasons["fitness_failed"]["source"] == "rule"
    assert reasons["fitness_declining"]["items"] == ["run_50m"]
    assert {"subjects_failed", "academic_decline", "chronic_absence"} <= set(reasons)
    assert body["warnings"][0]["level"] == "high"  # the most serious first


def test_class_portraits_summarise_each_student(client):
    body = _get(client, "teacher", "/api/v1/classes/class-1/portraits")
    assert [s["student_key"] for s in body["students"]] == ["stu-own", "stu-own-2"]
    assert (body["warnings_high"], body["warnings_watch"]) == (1, 0)
    weak = body["students"][1]
    assert weak["fitness_level"] == "fail" and weak["risk"]["probability"] == 0.71
    # The level, not the reasons: those are in the student's portrait.
    assert weak["risk"]["level"] == "red" and weak["risk"]["reasons"] == []
    assert weak["trends"] == {"academics": "down", "fitness": "down", "attendance": "down"}
    assert weak["five_domain"]["overall"] == 75.6
    assert body["outcomes"]["fitness_pass_rate"] == 0.5


def test_class_portraits_say_the_value_added_view_is_not_yet_available(client):
    growth = _get(client, "teacher", "/api/v1/classes/class-1/portraits")["growth"]
    assert growth == {"available": False, "model": None, "term_id": None, "subjects": [],
                      "message": "not yet available: the growth model has not been scored into the online store"}


def test_class_portraits_hold_the_classs_own_median_growth_per_subject(settings, users):
    client = TestClient(create_app(settings, feature_reader(with_future_models=True), directory=directory()))
    body = _get(client, "teacher", "/api/v1/classes/class-1/portraits")
    growth = body["growth"]
    assert growth["available"] and growth["term_id"] == "2025-1" and growth["message"] is None
    assert growth["model"] == {"name": "growth", "version": 1, "epsilon": 3.0, "delta": 1e-6}
    # Core subjects first (Chinese, math, English), as the growth chart opens on them.
    assert growth["subjects"] == [{"subject": "chinese", "students": 44, "median_growth_percentile": 48.0},
                                  {"subject": "math", "students": 45, "median_growth_percentile": 61.5},
                                  {"subject": "physics", "students": 12, "median_growth_percentile": 55.0}]
    text = json.dumps(body)
    for other in ("37.25", "71.25", "43.75", "52.25", "66.75"):  # other classes, teachers, schools
        assert other not in text


def test_a_class_whose_subjects_are_all_too_small_says_why(settings, users):
    reader = feature_reader(with_future_models=True)
    reader.put("class_growth_score", "class-1", {"model_name": "growth", "model_version": 1, "model_epsilon": 3.0,
                                                 "model_delta": 1e-6, "term_id": "2025-1", "growth_json": "[]"})
    client = TestClient(create_app(settings, reader, directory=directory()))
    growth = _get(client, "teacher", "/api/v1/classes/class-1/portraits")["growth"]
    assert growth["available"] and growth["subjects"] == [] and "10 or more students" in growth["message"]
    reader.put("class_growth_score", "class-1", {"model_name": "growth", "growth_json": "not json"})
    assert _get(client, "teacher", "/api/v1/classes/class-1/portraits")["growth"]["subjects"] == []


def test_a_roster_entry_whose_enrollment_moved_is_left_out(settings, users):
    reader = feature_reader()
    reader.put("student_enrollment", "stu-own-2", {"school_year": 2025, "class_id": "class-2",
                                                   "school_id": "school-A", "grade": 9})
    client = TestClient(create_app(settings, reader, directory=directory()))
    body = _get(client, "teacher", "/api/v1/classes/class-1/portraits")
    assert [s["student_key"] for s in body["students"]] == ["stu-own"]


# --- health staff ----------------------------------------------------------------------------------------


def test_health_staff_see_fitness_and_nothing_else(client):
    body = _get(client, "nurse", "/api/v1/students/stu-own-2/fitness")
    assert set(body) == {"student_key", "class_id", "grade", "sex", "school_year", "latest", "history", "risk",
                         "risk_available", "warning_level", "warnings"}
    assert {w["reason"] for w in body["warnings"]} == {"fitness_model_risk", "fitness_failed", "fitness_declining"}
    text = json.dumps(body)
    for leak in ("five_domain", "academics", "attendance", "mean_share", "subjects_failed"):
        assert leak not in text


def test_fitness_warnings_rank_filter_and_sort(settings, users):
    reader = feature_reader()
    reader.put("fitness_risk_score", "stu-other-class", {"risk_probability": 0.3, "model_name": "fitness_risk",
                                                         "model_version": 3, "model_epsilon": 2.0,
                                                         "model_delta": 1e-5})
    client = TestClient(create_app(settings, reader, directory=directory()))
    body = _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings")
    assert [(w["student_key"], w["warning_level"]) for w in body["warnings"]] == [("stu-own-2", "high"),
                                                                                 ("stu-other-class", "watch")]
    assert body["total"] == 2 and body["risk_available"]
    assert _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings", level="fail")["total"] == 1
    declining = _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings", reason="fitness_declining")
    assert [w["student_key"] for w in declining["warnings"]] == ["stu-own-2"]
    assert _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings", grade=7)["total"] == 0
    by_total = _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings", sort="total")
    assert [w["student_key"] for w in by_total["warnings"]] == ["stu-own-2", "stu-other-class"]
    paged = _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings", limit=1, offset=1)
    assert [w["student_key"] for w in paged["warnings"]] == ["stu-other-class"] and paged["total"] == 2
    bad = client.get("/api/v1/schools/school-A/fitness-warnings", params={"reason": "grades"},
                     headers=bearer(token_for(client, "nurse")))
    assert bad.status_code == 422  # only fitness reasons exist for health staff


def test_fitness_warnings_show_the_models_level_and_the_items_and_trends_behind_it(client):
    body = _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings")
    [row] = [w for w in body["warnings"] if w["student_key"] == "stu-own-2"]
    assert row["risk"]["level"] == "red" and row["risk"]["reasons"] == []  # they come with the model's warning
    [model] = [r for r in row["reasons"] if r["reason"] == "fitness_model_risk"]
    assert (model["level"], model["model_level"]) == ("high", "red")
    assert model["model_reasons"][0] == {"feature": "score_run_50m", "value": 40.0, "reference": None,
                                         "effect": 0.21, "direction": "raises"}
    # Beside the rules' reasons, as before.
    assert {"fitness_failed", "fitness_declining"} <= {r["reason"] for r in row["reasons"]}
    record = _get(client, "nurse", "/api/v1/students/stu-own-2/fitness")
    assert record["risk"]["level"] == "red" and len(record["risk"]["reasons"]) == 3


def test_the_models_level_decides_its_warning_and_the_probability_stands_in_without_one(settings, users):
    reader = feature_reader()
    model = {"model_name": "fitness_risk", "model_version": 3, "model_epsilon": 2.0, "model_delta": 1e-5}
    # Green at 30 %: the model gives no warning (its level, not serving's reading of the probability).
    reader.put("fitness_risk_score", "stu-own", {**model, "risk_probability": 0.3, "level": "green"})
    # A row written before the models gave levels: 30 % is a watch, at the same fixed thresholds.
    reader.put("fitness_risk_score", "stu-other-class", {**model, "risk_probability": 0.3})
    client = TestClient(create_app(settings, reader, directory=directory()))
    body = _get(client, "nurse", "/api/v1/schools/school-A/fitness-warnings")
    levels = {w["student_key"]: w["warning_level"] for w in body["warnings"]}
    assert "stu-own" not in levels and levels["stu-other-class"] == "watch"
    [fallback] = [w for w in body["warnings"] if w["student_key"] == "stu-other-class"]
    assert fallback["reasons"][0]["model_level"] is None and fallback["reasons"][0]["model_reasons"] == []
    # Reasons the service cannot read are left out, not guessed.
    reader.put("fitness_risk_score", "stu-own", {**model, "risk_probability": 0.6, "level": "red",
                                                 "reasons_json": '[{"feature": "bmi"}, "x", {"feature": "bmi", '
                                                                 '"value": 31.0, "effect": "0.1"}]'})
    record = _get(client, "nurse", "/api/v1/students/stu-own/fitness")
    assert [(r["feature"], r["effect"]) for r in record["risk"]["reasons"]] == [("bmi", 0.1)]


def test_fitness_statistics_put_the_school_beside_the_dp_city(client, settings):
    body = _get(client, "nurse", "/api/v1/schools/school-A/fitness-statistics")
    assert body["city"] == [] and "portrait statistics" in body["city_message"]
    write_dp_statistics(settings)
    body = _get(client, "nurse", "/api/v1/schools/school-A/fitness-statistics")
    [grade9] = body["grades"]
    assert (grade9["grade"], grade9["students"], grade9["tested"]) == (9, 3, 3)
    assert grade9["levels"] == {"excellent": 2, "good": 0, "pass": 0, "fail": 1}
    assert grade9["pass_rate"] == pytest.approx(2 / 3)
    both = [c for c in body["city"] if c["grade"] == 9 and c["sex"] is None]
    assert both[0]["pass_rate"] == pytest.approx(0.8)  # (90 + 70) / (100 + 100): post-processing of the release
    assert body["city_release"]["epsilon"] == pytest.approx(0.4)


# --- training centers --------------------------------------------------------------------------------------


def test_teacher_portrait_is_literacy_and_training_only(client):
    body = _get(client, "center", "/api/v1/teachers/tch-own/portrait")
    assert [d["dimension"] for d in body["digital_literacy"]["dimensions"]] == [
        "awareness", "knowledge_skills", "application", "responsibility", "development"]
    assert body["training"]["hours_completed"] == 36.0 and body["courses_here"] == ["course-1", "course-2"]
    text = json.dumps(body)
    for leak in ("school-A", "class-1", "head_class", "students_taught", "stu-"):
        assert leak not in text


def test_center_overview_and_unscored_invites(client):
    body = _get(client, "center", "/api/v1/centers/center-1")
    assert [c["course_id"] for c in body["courses"]] == ["course-1", "course-2"]
    assert body["courses"][0]["stats"]["completion_rate"] == 0.75 and body["teachers_trained"] == 1
    assert body["invites_available"] is False
    invites = _get(client, "center", "/api/v1/courses/course-1/invites")
    assert invites["available"] is False and invites["invites"] == [] and invites["enrolled_teachers"] == ["tch-own"]
    assert "teacher_training" in invites["message"]


# --- data officer ----------------------------------------------------------------------------------------------


def test_ledger_shows_budget_used_and_left(client, settings):
    ledger = PrivacyLedger(settings.ledger_url)
    ledger.open_release("2025", epsilon=10.0, delta=1e-4)
    ledger.spend("2025", what="fitness_risk DP-SGD", epsilon=2.0, delta=1e-5, mechanism="DP-SGD", accountant="prv")
    [release] = _get(client, "officer", "/api/v1/privacy/ledger")["releases"]
    assert (release["epsilon_spent"], release["epsilon_left"]) == (2.0, 8.0)
    assert release["spends"][0]["what"] == "fitness_risk DP-SGD"


def test_model_cards_with_audits_and_which_outputs_exist(client):
    body = _get(client, "officer", "/api/v1/models")
    assert [(v["name"], v["version"]) for v in body["versions"]] == [("fitness_risk", 3), ("fitness_risk", 2)]
    assert body["versions"][0]["audits"][1]["epsilon_lower_bound"] == 1.9
    outputs = {o["model"] + ":" + o["view"]: o["available"] for o in body["outputs"]}
    assert outputs["fitness_risk:fitness_risk_score"] and not outputs["growth:growth_score"]
    assert {"growth:class_growth_score", "growth:teacher_growth_score", "growth:school_growth_score"} <= set(outputs)
    shown = {o["view"]: o["shown_to"] for o in body["outputs"]}
    assert shown["class_growth_score"] == ["class_teacher"] and shown["fitness_risk_score"] == ["class_teacher",
                                                                                                "health_staff"]
    assert shown["teacher_growth_score"] == shown["school_growth_score"] == []  # kept, shown to no role
    card = _get(client, "officer", "/api/v1/models/fitness_risk")
    assert card["version"] == 3 and card["epsilon"] == 2.0 and card["card_markdown"].startswith("# fitness_risk v3")
    assert _get(client, "officer", "/api/v1/models/fitness_risk", version=2)["version"] == 2


def test_ingest_report_counts_quarantine_without_values(client, settings):
    lake = settings.lake_dir
    (lake / "quarantine").mkdir(parents=True)
    pd.DataFrame({"student_id": ["a", "b"]}).to_parquet(lake / "students.parquet")
    pd.DataFrame({"table": ["students"] * 2, "file": ["s.csv"] * 2, "row": [3, 4], "column": ["sex"] * 2,
                  "value": ["x-raw-value", "y"], "rule": ["code"] * 2}).to_parquet(lake / "quarantine" / "students.parquet")
    body = _get(client, "officer", "/api/v1/ingest/report")
    assert body["tables"] == [{"table": "students", "rows": 2, "rows_quarantined": 2, "written_at": body["tables"][0]["written_at"]}]
    assert body["quarantine"] == [{"table": "students", "column": "sex", "rule": "code", "rows": 2}]
    assert "x-raw-value" not in json.dumps(body)


# --- the audit trail -----------------------------------------------------------------------------------------


def test_every_portrait_read_is_audited_with_the_pseudonym_only(client, settings, caplog):
    headers = bearer(token_for(client, "teacher"))
    with caplog.at_level(logging.INFO, logger="portrait.audit"):
        client.get("/api/v1/students/stu-own/portrait", headers=headers)
        client.get("/api/v1/classes/class-1/portraits", headers=headers)
        # A denied key is caller input (perhaps a national id typed by mistake): never logged.
        client.get("/api/v1/students/110101200501011234/portrait", headers=headers)
    lines = [json.loads(line) for line in audit_path(settings.home).read_text().splitlines()]
    reads = [(line["read"], line["key"]) for line in lines if "read" in line]
    assert reads == [("student_portrait", "stu-own"), ("class_portraits", "stu-own"), ("class_portraits", "stu-own-2")]
    assert all(line["user"] == "teacher" and line["role"] == "class_teacher" and line["at"] for line in lines)
    assert lines[-1] == {"at": lines[-1]["at"], "user": "teacher", "role": "class_teacher", "denied": "student_portrait"}
    text = audit_path(settings.home).read_text() + caplog.text
    assert "110101200501011234" not in text and PASSWORD not in text
    assert "excellent" not in text and "91.5" not in text  # no portrait values, only who read which key
    entries = _get(client, "officer", "/api/v1/audit/reads")["entries"]
    assert entries[0]["denied"] == "student_portrait" and entries[-1]["key"] == "stu-own"


def test_cached_rows_are_dropped_when_the_store_changes(app, client, features):
    headers = bearer(token_for(client, "teacher"))
    client.get("/api/v1/classes/class-1/portraits", headers=headers)
    reads = features.reads
    client.get("/api/v1/classes/class-1/portraits", headers=headers)
    assert features.reads == reads, "a second class read comes from the cache"
    features.put("fitness_risk_score", "stu-own", {"risk_probability": 0.9, "model_name": "fitness_risk",
                                                   "model_version": 4, "model_epsilon": 2.0, "model_delta": 1e-5})
    body = client.get("/api/v1/classes/class-1/portraits", headers=headers).json()
    assert body["students"][0]["risk"]["model_version"] == 4
