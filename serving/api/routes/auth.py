"""Token endpoint for API clients (OAuth2 password flow), and who the token belongs to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from serving.api.deps import CurrentUser, SettingsDep, ThrottleDep, UsersDep
from serving.schemas import ErrorMessage, Me, Token
from serving.sign_in import SIGN_IN_FAILED, TooManyFailures, issue_token, sign_in

router = APIRouter(tags=["auth"])


@router.post("/token", response_model=Token,
             responses={401: {"model": ErrorMessage}, 429: {"model": ErrorMessage}})
def login_for_access_token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], settings: SettingsDep,
    users: UsersDep, throttle: ThrottleDep,
) -> Token:
    try:
        user = sign_in(users, throttle, form.username, form.password, request.client.host if request.client else None)
    except TooManyFailures as error:
        raise HTTPException(status_code=status.HTTP_429_TOO_MANY_REQUESTS, detail=str(error),
                            headers={"Retry-After": str(error.retry_after)}) from None
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=SIGN_IN_FAILED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Token(access_token=issue_token(user, settings))


@router.get("/me", response_model=Me)
def who_am_i(user: CurrentUser) -> Me:
    return Me(username=user.username, role=user.role.value, scope=list(user.scope))
