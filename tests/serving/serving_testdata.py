"""Test data and client helpers for the serving tests.

A module of its own, not conftest: every conftest.py outside a package is named `conftest`,
so importing from one is ambiguous once other test folders have theirs.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"


def fitness_year(school_year: int, grade: int, total: float | None, level: str | None) -> dict:
    return {
        "school_year": school_year,
        "grade": grade,
        "test_date": f"{school_year}-11-03",
        "total_score": total,
        "level": level,
        "bmi": 18.2,
        "bmi_category": "normal",
        "scores": {"vital_capacity": 80.0, "run_50m": 76.0, "sit_and_reach": 90.0, "pull_up": None},
    }


def portrait_record(student_key: str, class_id: str, school_id: str) -> dict:
    history = [
        fitness_year(2023, 7, 72.5, "pass"),
        fitness_year(2024, 8, 81.0, "good"),
        fitness_year(2025, 9, 91.5, "excellent"),
    ]
    latest = {
        **history[-1],
        "score_bmi": 100.0,
        "standard_score": 89.5,
        "bonus": 2.0,
    }
    del latest["test_date"]
    return {
        "student_key": student_key,
        "class_id": class_id,
        "school_id": school_id,
        "grade": 9,
        "sex": "f",
        "school_year": 2025,
        "fitness_latest": latest,
        "fitness_history": history,
        "risk": {"probability": 0.12, "model_name": "fitness_risk", "model_version": 3,
                 "epsilon": 2.0, "delta": 1e-5},
    }


def token_for(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
