"""Server-rendered pages for teachers and health staff: sign-in, home, one student.

Plain HTML forms and an inline SVG chart, no JavaScript and nothing fetched from elsewhere,
so the pages work on a closed school network and print cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from serving import labels
from serving.access import DENIED_MESSAGE, read_portrait
from serving.api.deps import TOKEN_COOKIE, OptionalUser, ReaderDep, SettingsDep, UsersDep
from serving.api.routes.auth import issue_token
from serving.charts import fitness_history_svg
from serving.schemas import FitnessScores, FitnessYear, StudentPortrait

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

templates = Jinja2Templates(directory=Path(__file__).resolve().parents[2] / "templates")
templates.env.globals["labels"] = labels

SIGN_IN_FAILED = "用户名或密码不正确，请检查后重试；如仍失败，账号可能已停用，请联系学校数据专员。"

# Pages hold personal data: shared school computers must not cache them, and the policy
# forbids loading anything from elsewhere even if a template were ever changed to try.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def _number(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


templates.env.filters["number"] = _number


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=PAGE_HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _render(request, "login.html", {"user": None})


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    users: UsersDep,
    # Defaults, not required fields: an empty form gets the sign-in page back, not a JSON 422.
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    user = users.authenticate(username, password)
    if user is None:
        context = {"user": None, "error": SIGN_IN_FAILED, "username": username}
        return _render(request, "login.html", context, status_code=status.HTTP_401_UNAUTHORIZED)
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        TOKEN_COOKIE,
        issue_token(user, settings),
        max_age=settings.token_minutes * 60,
        httponly=True,  # scripts cannot read the token
        samesite="lax",  # other sites cannot make the browser send it with their forms
        secure=settings.environment == "production",  # HTTPS only, except on a developer's laptop
    )
    return response


@router.get("/logout")
def logout() -> Response:
    response = _to_login()
    response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="lax")
    return response


@router.get("/")
def home(request: Request, user: OptionalUser) -> Response:
    if user is None:
        return _to_login()
    return _render(request, "home.html", {"user": user})


@router.get("/students/{student_key}")
def student_page(request: Request, student_key: str, user: OptionalUser, reader: ReaderDep) -> Response:
    if user is None:
        return _to_login()
    record = read_portrait(reader, user, student_key)
    if record is None:
        context = {"user": user, "message": DENIED_MESSAGE}
        return _render(request, "forbidden.html", context, status_code=status.HTTP_403_FORBIDDEN)
    # The page is built from the public model only, so it shows exactly what the API shows.
    portrait = StudentPortrait.from_record(record)
    chart = fitness_history_svg([year.model_dump() for year in portrait.history])
    context = {
        "user": user,
        "portrait": portrait,
        # Markup only here: the SVG was assembled from numbers and escaped constant labels.
        "chart": Markup(chart),
        "item_rows": _item_rows(portrait.history),
    }
    return _render(request, "student.html", context)


def _item_rows(history: list[FitnessYear]) -> list[tuple[str, list[float | None]]]:
    """(label, score per year) for each item tested in at least one year; items depend on
    grade and sex, so the others would be rows of dashes."""
    rows = []
    for item in FitnessScores.model_fields:
        scores = [getattr(year.scores, item) for year in history]
        if any(score is not None for score in scores):
            rows.append((labels.ITEM_LABELS[item], scores))
    return rows
