"""Sign in and out, pick a language, and land on the page of one's role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import RedirectResponse

from serving.api.deps import TOKEN_COOKIE, OptionalUser, SettingsDep, ThrottleDep, UsersDep
from serving.i18n import LANGUAGE_COOKIE, LANGUAGES, language_of, translator
from serving.pages.render import render, to_login
from serving.sign_in import TooManyFailures, issue_token, sign_in
from serving.users import Role

router = APIRouter()

# Where each role lands, given one key of its scope; None: a page without a key.
LANDING = {
    Role.CLASS_TEACHER: "/classes/{}",
    Role.HEALTH_STAFF: "/schools/{}/fitness",
    Role.TRAINING_CENTER: "/centers/{}",
}


@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.html", {})


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    users: UsersDep,
    throttle: ThrottleDep,
    # Defaults, not required fields: an empty form gets the sign-in page back, not a JSON 422.
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    t = translator(language_of(request))
    try:
        user = sign_in(users, throttle, username, password, request.client.host if request.client else None)
    except TooManyFailures as error:
        context = {"error": t("too_many_failures", minutes=max(1, round(error.retry_after / 60))), "username": username}
        response = render(request, "login.html", context, status_code=status.HTTP_429_TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    if user is None:
        context = {"error": t("sign_in_failed"), "username": username}
        return render(request, "login.html", context, status_code=status.HTTP_401_UNAUTHORIZED)
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
    response = to_login()
    response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="lax")
    return response


@router.get("/lang/{lang}")
def choose_language(lang: str, next: str = "/") -> Response:
    """Switch the pages' language and go back to `next`, a path of this site (never another site)."""
    target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    if lang in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax")
    return response


@router.get("/")
def home(request: Request, user: OptionalUser) -> Response:
    if user is None:
        return to_login()
    request.state.user = user
    if user.role is Role.DATA_OFFICER:
        return RedirectResponse("/officer", status_code=status.HTTP_303_SEE_OTHER)
    pattern = LANDING[user.role]
    if len(user.scope) == 1:
        return RedirectResponse(pattern.format(user.scope[0]), status_code=status.HTTP_303_SEE_OTHER)
    links = [(item, pattern.format(item)) for item in user.scope]
    return render(request, "home.html", {"links": links})
