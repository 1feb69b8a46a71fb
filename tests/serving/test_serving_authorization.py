"""The authorization matrix: every route × every role × an own, another's and an unknown key.

For each cell the expected answer follows from two tables, `ALLOWED` (which roles may open a
route) and `KEYS` (which keys are each role's own): an allowed role gets 200 for each of its own keys
and 403 for each of another's; an unknown key gets exactly the same 403 (status and body) as
another's, unless the role's own scope names it (then 404); a role that may not open a route gets
one 403 whatever the key. The first test checks the matrix lists every route the app serves, so a
new route cannot ship without its row.

The app reads the small city with every model scored, so a training center's own teachers include
one it only knows from an invite list (tch-invited), and another center's invitee
(tch-invited-elsewhere) is as foreign as another center's trainee.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from serving_testdata import USERS, bearer, feature_reader, sign_in_page, token_for

from serving.pages import auth, classes, officer, schools, students, training

ROLES = tuple(USERS)  # teacher (class teacher), nurse (health staff), center (training center), officer


@dataclass(frozen=True)
class Route:
    path: str  # with {key} for the key
    kind: str | None  # what kind of key, None for routes without one
    allowed: frozenset[str]


def route(path: str, kind: str | None, *allowed: str) -> Route:
    return Route(path, kind, frozenset(allowed or ROLES))


API = [
    route("/api/v1/me", None),
    route("/api/v1/students/{key}/portrait", "student", "teacher"),
    route("/api/v1/students/{key}/fitness", "student", "teacher", "nurse"),
    route("/api/v1/classes/{key}/portraits", "class", "teacher"),
    route("/api/v1/schools/{key}/fitness-warnings", "school", "nurse"),
    route("/api/v1/schools/{key}/fitness-statistics", "school", "nurse"),
    route("/api/v1/teachers/{key}/portrait", "teacher", "center"),
    route("/api/v1/teachers/{key}/recommendations", "teacher", "center"),
    route("/api/v1/courses/{key}/invites", "course", "center"),
    route("/api/v1/centers/{key}", "center", "center"),
    route("/api/v1/privacy/ledger", None, "officer"),
    route("/api/v1/models", None, "officer"),
    route("/api/v1/models/{key}", "model", "officer"),
    route("/api/v1/ingest/report", None, "officer"),
    route("/api/v1/audit/reads", None, "officer"),
]
PAGES = [
    route("/students/{key}", "student", "teacher"),
    route("/students/{key}/print", "student", "teacher"),
    route("/students/{key}/fitness", "student", "teacher", "nurse"),
    route("/classes/{key}", "class", "teacher"),
    route("/schools/{key}/fitness", "school", "nurse"),
    route("/centers/{key}", "center", "center"),
    route("/courses/{key}", "course", "center"),
    route("/teachers/{key}", "teacher", "center"),
    route("/officer", None, "officer"),
    route("/officer/models/{key}", "model", "officer"),
]
# Pages every signed-in user (or anyone) may open; they read no keyed data.
OPEN_PAGES = {"/login", "/logout", "/lang/{lang}", "/"}

# kind → role → (own keys, others' keys that exist). Unknown keys are made up per kind below.
KEYS = {
    "student": {"teacher": (("stu-own",), ("stu-other-class",)), "nurse": (("stu-own",), ("stu-other-school",))},
    "class": {"teacher": (("class-1",), ("class-2",))},
    "school": {"nurse": (("school-A",), ("school-B",))},
    # Enrolled in a course of the center, or on the invite list of one of its courses.
    "teacher": {"center": (("tch-own", "tch-invited"), ("tch-other", "tch-invited-elsewhere"))},
    "course": {"center": (("course-1",), ("course-9",))},
    "center": {"center": (("center-1",), ("center-9",))},
    "model": {"officer": (("fitness_risk",), ())},
}
# Keys a role's own scope names but the engine has no data for: the one honest 404.
OWN_BUT_EMPTY = {("class", "teacher"): "class-empty", ("school", "nurse"): "school-empty",
                 ("center", "center"): "center-empty", ("model", "officer"): "no-such-model"}
UNKNOWN = "zz-unknown-0000"


@pytest.fixture
def features():
    """Every model scored: the invite lists decide part of a training center's scope."""
    return feature_reader(with_future_models=True)


def cells(routes: list[Route]):
    for r in routes:
        for role in ROLES:
            yield pytest.param(r, role, id=f"{r.path}-{role}")


def test_the_matrix_lists_every_route_of_the_app(app):
    api_paths = {path for path, methods in app.openapi()["paths"].items() if "get" in methods}
    listed = {r.path.replace("{key}", _param(path)) for r in API for path in api_paths
              if _same_route(r.path, path)}
    assert listed == api_paths - {"/healthz", "/readyz"}, "every API route needs a row in the matrix"
    page_paths = {r.path for module in (auth, classes, students, schools, training, officer) for r in module.router.routes}
    listed_pages = {_pattern(r.path) for r in PAGES}
    assert {_pattern(p) for p in page_paths} == listed_pages | {_pattern(p) for p in OPEN_PAGES}


@pytest.mark.parametrize(("route", "role"), list(cells(API)))
def test_api_matrix(client, route: Route, role: str):
    headers = bearer(token_for(client, role))
    _check(lambda path: client.get(path, headers=headers), route, role, api=True)


@pytest.mark.parametrize(("route", "role"), list(cells(PAGES)))
def test_page_matrix(client, route: Route, role: str):
    assert sign_in_page(client, role).status_code == 303
    _check(client.get, route, role, api=False)


@pytest.mark.parametrize("r", API, ids=lambda r: r.path)
def test_api_without_a_token_is_401_for_every_route(client, r: Route):
    response = client.get(r.path.replace("{key}", _own_or_any(r)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "sign in" in response.json()["detail"].lower() or "token" in response.json()["detail"].lower()


@pytest.mark.parametrize("r", PAGES, ids=lambda r: r.path)
def test_pages_send_the_signed_out_to_the_sign_in_form(client, r: Route):
    response = client.get(r.path.replace("{key}", _own_or_any(r)), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def _check(get, route: Route, role: str, *, api: bool) -> None:
    if route.kind is None:
        response = get(route.path)
        assert response.status_code == (200 if role in route.allowed else 403), response.text
        return
    by_role = KEYS[route.kind]
    if role in route.allowed:
        owns, others = by_role[role]
        for own in owns:
            assert get(route.path.format(key=own)).status_code == 200, own
        unknown = get(route.path.format(key=UNKNOWN))
        for key in others:
            other = get(route.path.format(key=key))
            assert other.status_code == unknown.status_code == 403, (key, other.text, unknown.text)
            assert _body(other, api) == _body(unknown, api), "unknown and forbidden keys must look the same"
        if not others:
            assert unknown.status_code == 404  # the officer's scope is every model: unknown means unknown
        empty = OWN_BUT_EMPTY.get((route.kind, role))
        if empty is not None:
            assert get(route.path.format(key=empty)).status_code == 404
    else:
        owns, others = by_role[min(by_role)]
        answers = [get(route.path.format(key=key)) for key in (*owns, *others, UNKNOWN)]
        assert {answer.status_code for answer in answers} == {403}
        assert len({_body(answer, api) for answer in answers}) == 1, "a refused role learns nothing from the key"
        if api:
            assert answers[0].json()["code"] == "role_forbidden"


def _body(response, api: bool) -> str:
    return response.text if api else response.text.replace("\n", "")


def _own_or_any(r: Route) -> str:
    if r.kind is None:
        return ""
    return next(iter(KEYS[r.kind].values()))[0][0]


def _same_route(template: str, path: str) -> bool:
    return _pattern(template) == _pattern(path)


def _param(path: str) -> str:
    import re

    found = re.findall(r"\{[^}]+\}", path)
    return found[0] if found else "{key}"


def _pattern(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "{}", path)


class RecordingReader:
    """The small city with every model scored, remembering which keys of which views were read."""

    def __init__(self) -> None:
        self._reader = feature_reader(with_future_models=True)
        self.read_keys: dict[str, set[str]] = {}

    def views(self):
        return self._reader.views()

    def version(self):
        return self._reader.version()

    def ready(self):
        return self._reader.ready()

    def read(self, view, keys):
        self.read_keys.setdefault(view, set()).update(keys)
        return self._reader.read(view, keys)


@pytest.mark.parametrize("role", ROLES)
def test_the_value_added_view_reaches_only_the_class_teacher_of_the_class(settings, users, role):
    """Every route a role may open, with each of its own keys: a class's median growth is read for
    its class teacher's own class only, and a teacher's or a school's medians for nobody
    (`serving.access` says why)."""
    from fastapi.testclient import TestClient
    from serving_testdata import CLASS_GROWTH, SCHOOL_GROWTH, TEACHER_GROWTH, directory, model_cards

    from serving.app import create_app

    reader = RecordingReader()
    client = TestClient(create_app(settings, reader, directory=directory(), model_cards=model_cards()))
    headers = bearer(token_for(client, role))
    bodies = []
    for r in API:
        if role not in r.allowed:
            continue
        for key in (KEYS[r.kind][role][0] if r.kind else ("",)):
            response = client.get(r.path.format(key=key), headers=headers)
            assert response.status_code == 200, (r.path, key)
            bodies.append(response.text)
    assert sign_in_page(client, role).status_code == 303
    for r in PAGES:
        if role in r.allowed:
            for key in (KEYS[r.kind][role][0] if r.kind else ("",)):
                assert client.get(r.path.format(key=key)).status_code == 200, (r.path, key)
    assert "teacher_growth_score" not in reader.read_keys and "school_growth_score" not in reader.read_keys
    assert reader.read_keys.get("class_growth_score", set()) == ({"class-1"} if role == "teacher" else set())
    text = "".join(bodies)
    hidden = [item["median_growth_percentile"] for rows in (TEACHER_GROWTH, SCHOOL_GROWTH) for growth in rows.values()
              for item in growth] + [item["median_growth_percentile"] for key, growth in CLASS_GROWTH.items()
                                     if key != "class-1" for item in growth]
    for value in hidden:
        assert f"{value}" not in text, value
