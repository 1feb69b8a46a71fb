"""A small city for the serving tests, held in memory, and client helpers.

A module of its own, not conftest: every conftest.py outside a package is named `conftest`,
so importing from one is ambiguous once other test folders have theirs.

Two schools; school-A has class-1 (the teacher's) and class-2, school-B has class-9. Center-1
runs course-1 and course-2, center-9 runs course-9. Every key kind has an own key (in the
matching user's scope), another's key (exists, out of scope) and no unknown one (tests make it up).
Once the teacher-training model is scored (`with_future_models`), course-1's invite list also names
tch-invited (enrolled nowhere: in center-1's scope through the invite) and course-9's names
tch-invited-elsewhere (out of center-1's scope).
"""

from __future__ import annotations

import json

import pandas as pd
from fastapi.testclient import TestClient

from serving.directory import Directory
from serving.model_cards import AuditRow, InMemoryModelCards, ModelVersionCard
from serving.online import InMemoryFeatureReader

PASSWORD = "correct horse battery staple"

STUDENTS = {
    # key: (class, school, grade, sex)
    "stu-own": ("class-1", "school-A", 9, "f"),
    "stu-own-2": ("class-1", "school-A", 9, "m"),
    "stu-other-class": ("class-2", "school-A", 9, "m"),
    "stu-other-school": ("class-9", "school-B", 7, "f"),
}
COURSES = {"course-1": "center-1", "course-2": "center-1", "course-9": "center-9"}
TRAININGS = [("tch-own", "course-1"), ("tch-own", "course-2"), ("tch-other", "course-9")]
TEACHERS = ("tch-own", "tch-other", "tch-invited", "tch-invited-elsewhere")
# course → its invite list once the teacher-training model is scored: (teacher, expected gain, dimension, reason)
INVITES = {
    "course-1": [("tch-invited", 5.2, "application", "application at 58.0: expected +5.2"),
                 ("tch-own", 4.5, "application", "application at 58.0: expected +4.5")],
    "course-2": [("tch-own", 4.5, "application", "application at 58.0: expected +4.5")],
    "course-9": [("tch-invited-elsewhere", 6.1, "application", "application at 40.0: expected +6.1"),
                 ("tch-own", 4.5, "application", "application at 58.0: expected +4.5")],
}

# The users every test may sign in as: username → (role, scope).
USERS = {
    "teacher": ("class_teacher", ["class-1", "class-empty"]),
    "nurse": ("health_staff", ["school-A", "school-empty"]),
    "center": ("training_center", ["center-1", "center-empty"]),
    "officer": ("data_officer", []),
}

ITEMS = ("vital_capacity", "run_50m", "sit_and_reach", "rope_skip_1min", "sit_up_1min", "shuttle_50x8",
         "standing_long_jump", "pull_up", "run_800m", "run_1000m")


# The fitness-risk model's reasons (`training.score`): the features moving the risk most, against neutral values.
FAILING_REASONS = [{"feature": "score_run_50m", "value": 40.0, "effect": 0.21},
                   {"feature": "total_change", "value": -26.0, "effect": 0.15},
                   {"feature": "total_score", "value": 55.0, "effect": 0.08}]
PASSING_REASONS = [{"feature": "total_score", "value": 91.5, "effect": -0.09},
                   {"feature": "total_change", "value": 10.5, "effect": -0.03}]
# The value-added view once growth is scored: class-1's medians (its teacher's to see), and the other
# classes', the teachers' and the schools' with values found nowhere else (no role may see them).
CLASS_GROWTH = {
    "class-1": [{"subject": "math", "students": 45, "median_growth_percentile": 61.5},
                {"subject": "chinese", "students": 44, "median_growth_percentile": 48.0},
                {"subject": "physics", "students": 12, "median_growth_percentile": 55.0}],
    "class-2": [{"subject": "math", "students": 41, "median_growth_percentile": 37.25}],
    "class-9": [{"subject": "math", "students": 40, "median_growth_percentile": 71.25}],
}
TEACHER_GROWTH = {key: [{"subject": "math", "students": 86, "median_growth_percentile": 43.75}] for key in
                  ("tch-own", "tch-other", "tch-invited", "tch-invited-elsewhere")}
SCHOOL_GROWTH = {"school-A": [{"subject": "math", "students": 86, "median_growth_percentile": 52.25}],
                 "school-B": [{"subject": "math", "students": 40, "median_growth_percentile": 66.75}]}


def fitness_year(school_year: int, grade: int, total: float | None, level: str | None, run_50m: float = 76.0) -> dict:
    return {
        "school_year": school_year, "grade": grade, "test_date": f"{school_year}-11-03", "total_score": total,
        "level": level, "bmi": 18.2, "bmi_category": "normal", "score_bmi": 100.0,
        "scores": {"vital_capacity": 80.0, "run_50m": run_50m, "sit_and_reach": 90.0, "pull_up": None},
    }


def student_rows(key: str, class_id: str, school_id: str, grade: int, sex: str, *, failing: bool = False) -> dict:
    """Every online view's row of one student, as Feast would return them."""
    history = [fitness_year(2023, grade - 2, 72.5, "pass"), fitness_year(2024, grade - 1, 81.0, "good"),
               fitness_year(2025, grade, 55.0 if failing else 91.5, "fail" if failing else "excellent",
                            run_50m=40.0 if failing else 76.0)]
    latest = history[-1]
    fitness = {
        "school_year": 2025, "grade": grade, "sex": sex, "bmi": 18.2, "bmi_category": "normal", "score_bmi": 100.0,
        **{f"score_{item}": latest["scores"].get(item) for item in ITEMS},
        "standard_score": 53.0 if failing else 89.5, "bonus": 2.0, "total_score": latest["total_score"],
        "level": latest["level"], "total_change": -26.0 if failing else 10.5,
        "years_failed_in_row": 1 if failing else 0, "tests_taken": 3, "graduation_score": None,
    }
    return {
        "student_enrollment": {"school_year": 2025, "class_id": class_id, "school_id": school_id, "grade": grade},
        "student_fitness": fitness,
        "student_fitness_history": {"history_json": json.dumps(history)},
        "student_five_domain": {"de": 80.0, "zhi": 72.0, "ti": 91.0, "mei": 65.0, "lao": 70.0,
                                "domains_computed": 5, "overall": 75.6},
        "student_academics": {"grade": grade, "subjects": 7, "mean_share": 0.78, "mean_z": 0.3, "imbalance_sd": 0.4,
                              "imbalance_range": 1.1, "failed_subjects": 1 if failing else 0,
                              "trend": -0.06 if failing else 0.02},
        "student_literacy": {"digital": 70.0, "reading": 75.0, "science": 68.0, "digital_change": 2.0,
                             "reading_change": -1.0, "science_change": 0.5, "literacy_mean": 71.0},
        "student_moral": {"volunteer_hours": 12.0, "honors": 1.0, "discipline_events": 0.0, "class_duty": 1.0,
                          "discipline_4t": 0.0, "moral_share": 0.85},
        "student_aesthetic_labor": {"arts_hours": 20.0, "performances": 1.0, "labor_hours": 15.0, "labor_skill": 3.0,
                                    "music_share": 0.8, "art_share": 0.82, "labor_share": 0.9, "pe_share": 0.88},
        "student_attendance": {"days_enrolled": 95, "days_absent": 12 if failing else 2,
                               "attendance_rate": 0.874 if failing else 0.979, "rate_change": -0.05 if failing else 0.0,
                               "attendance_rate_4t": 0.95},
        "fitness_risk_score": {"risk_probability": 0.71 if failing else 0.12, "level": "red" if failing else "green",
                               "reasons_json": json.dumps(FAILING_REASONS if failing else PASSING_REASONS),
                               "model_name": "fitness_risk", "model_version": 3, "model_epsilon": 2.0,
                               "model_delta": 1e-5},
    }


def teacher_rows() -> dict[str, dict]:
    literacy = {"awareness": 62.0, "knowledge_skills": 70.5, "application": 58.0, "responsibility": 75.0,
                "development": 66.0, "change_awareness": 3.0, "change_knowledge_skills": -1.5,
                "change_application": 4.0, "change_responsibility": 0.0, "change_development": 2.0,
                "mean_score": 66.3, "change_mean_score": 1.5, "dimensions_assessed": 5, "assessments_taken": 2,
                "days_since_previous": 365}
    training = {"term_id": "2025-1", "school_year": 2025, "hours_completed": 36.0, "hours_completed_in_term": 12.0,
                "courses_completed": 2, "courses_enrolled": 3, "completion_rate": 0.67, "hours_awareness": 12.0,
                "hours_knowledge_skills": 24.0, "hours_application": 0.0, "hours_responsibility": 0.0,
                "hours_development": 0.0}
    teaching = {"school_year": 2025, "school_id": "school-A", "subjects": "math", "subjects_taught": 1,
                "classes_taught": 2, "students_taught": 90, "is_head_teacher": 1, "head_class_id": "class-1",
                "years_experience": 12, "title": "first"}
    return {"teacher_digital_literacy": literacy, "teacher_training": training, "teacher_teaching": teaching}


def feature_views(*, with_future_models: bool = False) -> dict[str, dict[str, dict]]:
    """{view: {key: row}} of the whole small city. `with_future_models` adds the score views of the
    models still to come (growth with its value-added view, academic risk, teacher training), to show
    they slot in."""
    views: dict[str, dict[str, dict]] = {}
    for key, (class_id, school_id, grade, sex) in STUDENTS.items():
        for view, row in student_rows(key, class_id, school_id, grade, sex, failing=key == "stu-own-2").items():
            views.setdefault(view, {})[key] = row
    for key in TEACHERS:
        for view, row in teacher_rows().items():
            views.setdefault(view, {})[key] = row
    views["class_outcomes"] = {class_id: {
        "term_id": "2025-1", "school_year": 2025, "school_id": school_id, "grade": 9, "students": 2, "results": 20,
        "mean_score_share": 0.78, "pass_rate": 0.9, "fitness_tested": 2, "mean_fitness_total": 73.3,
        "fitness_pass_rate": 0.5, "fitness_good_rate": 0.5, "attendance_rate": 0.93, "median_growth_percentile": None}
        for class_id, school_id in (("class-1", "school-A"), ("class-2", "school-A"), ("class-9", "school-B"))}
    views["course_stats"] = {course: {
        "term_id": "2025-1", "school_year": 2025, "center_id": center, "subject": "any", "level": "basic",
        "dimensions": "application", "hours": 12.0, "enrolled": 40, "enrolled_in_term": 8, "completed": 30,
        "completion_rate": 0.75, "ratings": 25, "mean_satisfaction": 4.2} for course, center in COURSES.items()}
    if with_future_models:
        model = {"model_version": 1, "model_epsilon": 3.0, "model_delta": 1e-6}
        views["growth_score"] = {key: {"model_name": "growth", **model, "growth_json": json.dumps([
            {"subject": subject, "term_id": term, "percentile": 40 + 5 * i + (10 if subject == "math" else 0)}
            for subject in ("math", "chinese") for i, term in enumerate(("2024-1", "2024-2", "2025-1"))])}
            for key in STUDENTS}
        views["academic_risk_score"] = {key: {"model_name": "academic_risk", **model, "risk_probability": 0.3,
                                              "level": "amber", "reasons_json": json.dumps(
                                                  [{"feature": "attendance_rate", "value": 0.874, "effect": 0.12},
                                                   {"feature": "failed_subjects", "value": 1.0, "effect": 0.05},
                                                   {"feature": "mean_share", "value": 0.78, "effect": -0.02}])}
                                        for key in STUDENTS}
        for view, rows in (("class_growth_score", CLASS_GROWTH), ("teacher_growth_score", TEACHER_GROWTH),
                           ("school_growth_score", SCHOOL_GROWTH)):
            views[view] = {key: {"model_name": "growth", **model, "term_id": "2025-1", "growth_json": json.dumps(growth)}
                           for key, growth in rows.items()}
        views["teacher_training_score"] = {key: {"model_name": "teacher_training", **model, "recommendations_json":
                                                 json.dumps([{"course_id": "course-2", "expected_gain": 4.5,
                                                              "dimension": "application",
                                                              "reason": "targets application, your weakest (58.0): "
                                                                        "expected +4.5"}])}
                                           for key in TEACHERS}
        views["course_invite_score"] = {course: {"model_name": "teacher_training", **model, "invites_json": json.dumps(
            [{"teacher_key": key, "expected_gain": gain, "dimension": dimension, "reason": reason}
             for key, gain, dimension, reason in invites])} for course, invites in INVITES.items()}
    return views


def feature_reader(**kwargs) -> InMemoryFeatureReader:
    return InMemoryFeatureReader(feature_views(**kwargs))


def directory() -> Directory:
    enrollment = pd.DataFrame(
        [(key, class_id, school_id, grade, 2025) for key, (class_id, school_id, grade, _) in STUDENTS.items()],
        columns=["student_key", "class_id", "school_id", "grade", "school_year"])
    courses = pd.DataFrame([(course, center, f"Course {course}", "any", "basic", 12.0, "application")
                            for course, center in COURSES.items()],
                           columns=["course_id", "center_id", "title", "subject", "level", "hours", "dimensions"])
    trainings = pd.DataFrame(TRAININGS, columns=["teacher_key", "course_id"])
    return Directory.from_frames(enrollment=enrollment, courses=courses, trainings=trainings)


def model_cards() -> InMemoryModelCards:
    audits = (AuditRow("dp", "loss_threshold", {"auc": 0.51, "tpr_at_1pct_fpr": 0.011, "tpr_at_01pct_fpr": 0.001,
                                                "epsilon_lower_bound": 0.05}),
              AuditRow("nonprivate", "loss_threshold", {"auc": 0.7, "tpr_at_1pct_fpr": 0.08,
                                                        "tpr_at_01pct_fpr": 0.02, "epsilon_lower_bound": 1.9}))
    card = "# fitness_risk v3\n\n**Intended use.** Flag students.\n\n<script>alert(1)</script>\n\n| m | v |\n|---|---|\n| auc | 0.8 |\n"
    return InMemoryModelCards([
        ModelVersionCard(name="fitness_risk", version=3, aliases=("champion", "challenger"), created_at="2026-01-01",
                         tags={"epsilon": "2.0", "delta": "1e-05", "data_release": "2025"}, card_markdown=card,
                         audits=audits, metrics={"auc_test": 0.8}),
        ModelVersionCard(name="fitness_risk", version=2, aliases=(), created_at="2025-01-01",
                         tags={"epsilon": "2.0", "delta": "1e-05", "data_release": "2024"}, card_markdown="# v2"),
    ])


def token_for(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in_page(client: TestClient, username: str, password: str = PASSWORD):
    return client.post("/login", data={"username": username, "password": password}, follow_redirects=False)
