import logging

from serving_testdata import PASSWORD, bearer, token_for
from fastapi.testclient import TestClient

from core.config import Settings
from serving.app import create_app
from serving.reader import InMemoryPortraitReader
from serving.security import create_access_token

DENIED = {"detail": "You may not read this student's portrait."}


def test_healthz_needs_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_asks_the_reader(client):
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_reports_a_reader_that_cannot_be_built(tmp_path):
    # No reader given: the app would build the Feast one, which is not importable here.
    app = create_app(Settings(home=tmp_path))
    response = TestClient(app, raise_server_exceptions=False).get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready"}


def test_token_flow_returns_a_bearer_token(client):
    response = client.post("/api/v1/token", data={"username": "teacher", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["access_token"]


def test_wrong_password_is_401_with_an_actionable_message(client):
    response = client.post("/api/v1/token", data={"username": "teacher", "password": "nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Incorrect username or password" in response.json()["detail"]
    unknown = client.post("/api/v1/token", data={"username": "ghost", "password": "nope"})
    assert unknown.status_code == 401 and unknown.json() == response.json()


def test_portrait_without_token_is_401(client):
    response = client.get("/api/v1/students/stu-own/portrait")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_garbage_or_expired_token_is_401(client, settings):
    expired = create_access_token("teacher", "class_teacher", ["class-1"], settings.secret("token"), -1)
    for token in ("garbage", expired):
        response = client.get("/api/v1/students/stu-own/portrait", headers=bearer(token))
        assert response.status_code == 401


def test_class_teacher_reads_own_class_student(client, caplog):
    token = token_for(client, "teacher")
    with caplog.at_level(logging.INFO, logger="portrait.audit"):
        response = client.get("/api/v1/students/stu-own/portrait", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"student_key", "class_id", "grade", "sex", "school_year", "latest", "history", "risk"}
    assert "school_id" not in response.text and "school-A" not in response.text
    assert (body["student_key"], body["class_id"], body["grade"], body["sex"]) == ("stu-own", "class-1", 9, "f")
    assert [year["school_year"] for year in body["history"]] == [2023, 2024, 2025]
    assert body["history"][0]["test_date"] == "2023-11-03"
    assert body["latest"]["level"] == "excellent" and body["latest"]["bonus"] == 2.0
    assert body["latest"]["scores"]["pull_up"] is None
    assert body["risk"] == {"probability": 0.12, "model_name": "fitness_risk", "model_version": 3,
                            "epsilon": 2.0, "delta": 1e-5}
    [audit] = [record for record in caplog.records if record.name == "portrait.audit"]
    assert "user=teacher" in audit.getMessage() and "student_key=stu-own" in audit.getMessage()
    assert PASSWORD not in audit.getMessage()


def test_other_class_and_unknown_key_are_indistinguishable(client):
    headers = bearer(token_for(client, "teacher"))
    other = client.get("/api/v1/students/stu-other-class/portrait", headers=headers)
    unknown = client.get("/api/v1/students/no-such-student/portrait", headers=headers)
    assert other.status_code == unknown.status_code == 403
    assert other.json() == unknown.json() == DENIED
    assert other.content == unknown.content


def test_health_staff_read_by_school(client):
    headers = bearer(token_for(client, "nurse"))
    assert client.get("/api/v1/students/stu-own/portrait", headers=headers).status_code == 200
    assert client.get("/api/v1/students/stu-other-class/portrait", headers=headers).status_code == 200
    other_school = client.get("/api/v1/students/stu-other-school/portrait", headers=headers)
    assert other_school.status_code == 403 and other_school.json() == DENIED


def test_other_roles_are_forbidden(client):
    headers = bearer(token_for(client, "officer"))
    response = client.get("/api/v1/students/stu-own/portrait", headers=headers)
    assert response.status_code == 403 and response.json() == DENIED


def test_disabled_user_is_401_even_with_a_valid_token(client, users):
    token = token_for(client, "teacher")
    users.disable("teacher")
    assert client.get("/api/v1/students/stu-own/portrait", headers=bearer(token)).status_code == 401
    response = client.post("/api/v1/token", data={"username": "teacher", "password": PASSWORD})
    assert response.status_code == 401


def test_portrait_with_missing_values(settings, users):
    sparse = {"student_key": "stu-new", "class_id": "class-1", "school_id": "school-A",
              "grade": None, "sex": None, "school_year": None,
              "fitness_latest": None, "fitness_history": [], "risk": None}
    client = TestClient(create_app(settings, InMemoryPortraitReader([sparse])))
    response = client.get("/api/v1/students/stu-new/portrait", headers=bearer(token_for(client, "teacher")))
    assert response.status_code == 200
    assert response.json()["latest"] is None and response.json()["history"] == []
    client.post("/login", data={"username": "teacher", "password": PASSWORD})
    page = client.get("/students/stu-new")
    assert page.status_code == 200 and "暂无体测记录" in page.text
