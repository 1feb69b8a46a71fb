"""Typed dependencies for routes: the app's sources of data, the signed-in user, and role guards.

The cheap ones are `async def`: FastAPI runs them on the event loop instead of handing each to the
thread pool (a hop that costs more than they do). The directory stays sync: a publish makes it
reload its files. Routes themselves are sync, since Feast's reads block, except the two busiest
(`routes/students.py`), which hand their one blocking call to the thread pool themselves.

Each source lives on `app.state` (set once by `serving.app.create_app`), so tests build an app
over in-memory sources and production over Feast, MLflow and the files under PORTRAIT_HOME.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from core.config import Settings
from serving.access import Resource, require_role
from serving.api import API_PREFIX
from serving.audit import AuditLog
from serving.directory import Directory
from serving.dp_releases import DPReleases
from serving.model_cards import ModelCards
from serving.online import FeatureReader
from serving.security import InvalidTokenError, decode_access_token
from serving.throttle import LoginThrottle
from serving.users import User, UserStore

TOKEN_COOKIE = "portrait_token"

# auto_error=False: a missing header is not yet a failure, the web pages send a cookie instead.
# Declared as OAuth2 so the interactive API docs offer a sign-in form.
_bearer = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/token", auto_error=False)


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_features(request: Request) -> FeatureReader:
    return request.app.state.features


def get_directory(request: Request) -> Directory:
    return request.app.state.directory()


async def get_releases(request: Request) -> DPReleases:
    return request.app.state.releases


async def get_model_cards(request: Request) -> ModelCards:
    return request.app.state.model_cards


async def get_audit(request: Request) -> AuditLog:
    return request.app.state.audit


async def get_users(request: Request) -> UserStore:
    return request.app.state.users


async def get_throttle(request: Request) -> LoginThrottle:
    return request.app.state.throttle


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
FeatureStoreDep = Annotated[FeatureReader, Depends(get_features)]
DirectoryDep = Annotated[Directory, Depends(get_directory)]
ReleasesDep = Annotated[DPReleases, Depends(get_releases)]
ModelDep = Annotated[ModelCards, Depends(get_model_cards)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
UsersDep = Annotated[UserStore, Depends(get_users)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]


async def get_optional_user(
    request: Request,
    settings: SettingsDep,
    users: UsersDep,
    bearer_token: Annotated[str | None, Depends(_bearer)],
) -> User | None:
    """The signed-in, enabled user, or None. The user is re-read on every request so that
    disabling an account or changing its scope takes effect before its tokens expire."""
    token = bearer_token or request.cookies.get(TOKEN_COOKIE)
    if not token:
        return None
    try:
        claims = decode_access_token(token, settings.secret("token"))
    except InvalidTokenError:
        return None
    user = users.get(claims.subject)
    if user is None or user.disabled:
        return None
    return user


async def get_current_user(user: Annotated[User | None, Depends(get_optional_user)]) -> User:
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Not signed in, or the sign-in has expired. Request a new token at /api/v1/token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]


def allowed(resource: Resource) -> Callable[[User], User]:
    """A dependency: the current user, when their role may open `resource` (403 otherwise)."""

    async def guard(user: CurrentUser) -> User:
        require_role(user, resource)
        return user

    guard.__name__ = f"allowed_{resource.value}"
    return guard


ClassTeacherPortraits = Annotated[User, Depends(allowed(Resource.STUDENT_PORTRAIT))]
FitnessReader = Annotated[User, Depends(allowed(Resource.STUDENT_FITNESS))]
ClassReader = Annotated[User, Depends(allowed(Resource.CLASS_PORTRAITS))]
SchoolFitnessReader = Annotated[User, Depends(allowed(Resource.SCHOOL_FITNESS))]
TeacherReader = Annotated[User, Depends(allowed(Resource.TEACHER_PORTRAIT))]
CourseReader = Annotated[User, Depends(allowed(Resource.COURSE_INVITES))]
CenterReader = Annotated[User, Depends(allowed(Resource.CENTER_OVERVIEW))]
LedgerReader = Annotated[User, Depends(allowed(Resource.PRIVACY_LEDGER))]
ModelCardReader = Annotated[User, Depends(allowed(Resource.MODEL_CARDS))]
IngestReader = Annotated[User, Depends(allowed(Resource.INGEST_REPORT))]
AuditLogReader = Annotated[User, Depends(allowed(Resource.AUDIT_LOG))]
