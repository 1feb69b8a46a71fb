"""Fixtures for the serving tests: an app over an in-memory reader and a temporary home."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from serving.app import create_app
from serving.reader import InMemoryPortraitReader
from serving.users import UserStore

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


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def users(settings) -> UserStore:
    store = UserStore(settings.users_path)
    store.add("teacher", PASSWORD, "class_teacher", ["class-1"])
    store.add("nurse", PASSWORD, "health_staff", ["school-A"])
    store.add("officer", PASSWORD, "data_officer", [])
    return store


@pytest.fixture
def client(settings, users) -> TestClient:
    reader = InMemoryPortraitReader([
        portrait_record("stu-own", "class-1", "school-A"),
        portrait_record("stu-other-class", "class-2", "school-A"),
        portrait_record("stu-other-school", "class-9", "school-B"),
    ])
    return TestClient(create_app(settings, reader))


def token_for(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
