"""Token endpoint for API clients (OAuth2 password flow)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm

from core.config import Settings
from serving.api.deps import SettingsDep, UsersDep
from serving.schemas import Token
from serving.security import create_access_token
from serving.users import User

router = APIRouter(tags=["auth"])

SIGN_IN_FAILED = (
    "Incorrect username or password. Check both and try again; "
    "if it still fails, your account may be disabled: ask your school's data officer."
)


def issue_token(user: User, settings: Settings) -> str:
    """A signed token for `user`; shared with the web sign-in, which puts it in a cookie."""
    return create_access_token(
        user.username, user.role.value, list(user.scope), settings.secret("token"), settings.token_minutes
    )


@router.post("/token", response_model=Token)
def login_for_access_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], settings: SettingsDep, users: UsersDep
) -> Token:
    user = users.authenticate(form.username, form.password)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=SIGN_IN_FAILED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Token(access_token=issue_token(user, settings))
