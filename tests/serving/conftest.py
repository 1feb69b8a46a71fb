"""Fixtures for the serving tests: an app over an in-memory reader and a temporary home."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serving_testdata import PASSWORD, portrait_record

from core.config import Settings
from serving.app import create_app
from serving.reader import InMemoryPortraitReader
from serving.users import UserStore


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

