"""Scope rules of `serving.access` beyond the matrix: a training center's teachers.

A center may open a teacher who enrolled in one of its courses, or whom the teacher-training model
puts on the invite list of one of its courses (a center told to invite someone must be able to see
why). The invite lists are indexed once per publish, not parsed on every request.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from serving_testdata import bearer, directory, feature_reader, token_for

from serving.access import Forbidden, invited_here, teacher_in_scope
from serving.app import create_app
from serving.audit import audit_path
from serving.users import Role, User

CENTER = User(username="center", role=Role.TRAINING_CENTER, scope=("center-1",), disabled=False)
OTHER_CENTER = User(username="center9", role=Role.TRAINING_CENTER, scope=("center-9",), disabled=False)


def _refused(user, key, directory_, reader) -> str:
    with pytest.raises(Forbidden) as refused:
        teacher_in_scope(user, key, directory_, reader)
    return refused.value.code


def test_enrolled_or_invited_teachers_are_in_a_centers_scope():
    reader, where = feature_reader(with_future_models=True), directory()
    teacher_in_scope(CENTER, "tch-own", where, reader)  # enrolled in course-1 and course-2
    teacher_in_scope(CENTER, "tch-invited", where, reader)  # only on course-1's invite list
    assert invited_here(CENTER, "tch-invited", where, reader) == ["course-1"]
    assert _refused(CENTER, "tch-invited-elsewhere", where, reader) == "out_of_scope.teacher"
    assert _refused(CENTER, "tch-other", where, reader) == "out_of_scope.teacher"
    assert _refused(CENTER, "zz-unknown", where, reader) == "out_of_scope.teacher"
    # The other center's invitee is theirs.
    teacher_in_scope(OTHER_CENTER, "tch-invited-elsewhere", where, reader)
    assert _refused(OTHER_CENTER, "tch-invited", where, reader) == "out_of_scope.teacher"


def test_without_scored_invites_only_enrolment_counts():
    reader, where = feature_reader(), directory()
    teacher_in_scope(CENTER, "tch-own", where, reader)
    assert _refused(CENTER, "tch-invited", where, reader) == "out_of_scope.teacher"


def test_other_roles_are_refused_by_role_whatever_the_teacher():
    reader, where = feature_reader(with_future_models=True), directory()
    for role in (Role.CLASS_TEACHER, Role.HEALTH_STAFF, Role.DATA_OFFICER):
        user = User(username="x", role=role, scope=("center-1",), disabled=False)
        assert _refused(user, "tch-invited", where, reader) == "role_forbidden"


def test_the_invite_lists_are_read_once_per_publish():
    reader, where = feature_reader(with_future_models=True), directory()
    teacher_in_scope(CENTER, "tch-invited", where, reader)
    reads = reader.reads
    for _ in range(50):
        teacher_in_scope(CENTER, "tch-invited", where, reader)
        assert _refused(CENTER, "tch-other", where, reader) == "out_of_scope.teacher"
    assert reader.reads == reads, "a scope check must not read the store once the lists are indexed"
    # A publish (the store's version changes) puts tch-other on course-2's list: in scope from now on.
    reader.put("course_invite_score", "course-2", {
        "model_name": "teacher_training", "model_version": 2, "model_epsilon": 1.0, "model_delta": 1e-5,
        "invites_json": json.dumps([{"teacher_key": "tch-other", "expected_gain": 3.0, "dimension": "awareness",
                                     "reason": "awareness at 50.0: expected +3.0"}])})
    teacher_in_scope(CENTER, "tch-other", where, reader)
    assert invited_here(CENTER, "tch-other", where, reader) == ["course-2"]
    assert reader.reads == reads + len(where.courses)  # one read of every course's list


def test_an_invited_teachers_portrait_says_why_and_holds_no_school_data(settings, users):
    client = TestClient(create_app(settings, feature_reader(with_future_models=True), directory=directory()))
    headers = bearer(token_for(client, "center"))
    body = client.get("/api/v1/teachers/tch-invited/portrait", headers=headers).json()
    assert body["courses_here"] == [] and body["invited_to"] == ["course-1"]
    assert body["digital_literacy"]["dimensions"][2] == {"dimension": "application", "score": 58.0, "change": 4.0}
    text = json.dumps(body)
    for leak in ("school-A", "class-1", "head_class", "students_taught", "stu-"):
        assert leak not in text
    recommendations = client.get("/api/v1/teachers/tch-invited/recommendations", headers=headers).json()
    assert recommendations["available"] and recommendations["recommendations"][0]["course_id"] == "course-2"
    reads = [json.loads(line) for line in audit_path(settings.home).read_text().splitlines()]
    assert [(line["read"], line["key"]) for line in reads] == [("teacher_portrait", "tch-invited"),
                                                               ("teacher_recommendations", "tch-invited")]
    refused = client.get("/api/v1/teachers/tch-invited-elsewhere/portrait", headers=headers)
    unknown = client.get("/api/v1/teachers/zz-unknown/portrait", headers=headers)
    assert refused.status_code == unknown.status_code == 403 and refused.json() == unknown.json()
