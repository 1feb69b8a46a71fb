"""Fixtures for the serving tests: an app over the small in-memory city and a temporary home."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient
from serving_testdata import PASSWORD, USERS, directory, feature_reader, model_cards

from core.config import Settings
from serving.app import create_app
from serving.users import UserStore


@pytest.fixture(scope="session")
def users_db(tmp_path_factory):
    """The users, hashed once per session (scrypt is slow on purpose); each test gets a copy."""
    path = tmp_path_factory.mktemp("users") / "users.db"
    store = UserStore(path)
    for username, (role, scope) in USERS.items():
        store.add(username, PASSWORD, role, scope)
    return path


@pytest.fixture
def settings(tmp_path, users_db) -> Settings:
    settings = Settings(home=tmp_path)
    shutil.copy(users_db, settings.users_path)
    return settings


@pytest.fixture
def users(settings) -> UserStore:
    return UserStore(settings.users_path)


@pytest.fixture
def features():
    return feature_reader()


@pytest.fixture
def app(settings, users, features):
    return create_app(settings, features, directory=directory(), model_cards=model_cards())


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app)
