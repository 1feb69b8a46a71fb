"""Typed dependencies for routes: the app's settings, portrait reader, user store, and the
signed-in user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from core.config import Settings
from serving.api import API_PREFIX
from serving.reader import PortraitReader
from serving.security import InvalidTokenError, decode_access_token
from serving.users import User, UserStore

TOKEN_COOKIE = "portrait_token"

# auto_error=False: a missing header is not yet a failure, the web pages send a cookie instead.
# Declared as OAuth2 so the interactive API docs offer a sign-in form.
_bearer = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/token", auto_error=False)


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_reader(request: Request) -> PortraitReader:
    return request.app.state.reader


def get_users(request: Request) -> UserStore:
    return request.app.state.users


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ReaderDep = Annotated[PortraitReader, Depends(get_reader)]
UsersDep = Annotated[UserStore, Depends(get_users)]


def get_optional_user(
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


def get_current_user(user: Annotated[User | None, Depends(get_optional_user)]) -> User:
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Not signed in, or the sign-in has expired. Request a new token at /api/v1/token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]
