"""Signing in, for the token endpoint and the sign-in page alike: throttle, check, issue a token."""

from __future__ import annotations

from core.config import Settings
from serving.security import create_access_token
from serving.throttle import LoginThrottle
from serving.users import User, UserStore

SIGN_IN_FAILED = (
    "Incorrect username or password. Check both and try again; "
    "if it still fails, your account may be disabled: ask your school's data officer."
)


class TooManyFailures(Exception):
    def __init__(self, retry_after: int) -> None:
        minutes = max(1, round(retry_after / 60))
        super().__init__(f"Too many failed sign-ins. Wait about {minutes} minute(s) before trying again; "
                         f"if you forgot your password, ask your school's data officer to reset it.")
        self.retry_after = retry_after


def sign_in(users: UserStore, throttle: LoginThrottle, username: str, password: str,
            address: str | None) -> User | None:
    """The user when the password is right (None otherwise); raises TooManyFailures while locked out.

    The lockout is checked before the password, so guesses made during it are not even tried.
    """
    wait = throttle.retry_after(username, address)
    if wait is not None:
        raise TooManyFailures(wait)
    user = users.authenticate(username, password)
    if user is None:
        throttle.failed(username, address)
        return None
    throttle.succeeded(username)
    return user


def issue_token(user: User, settings: Settings) -> str:
    """A short-lived signed token for `user` (the API returns it; the pages keep it in a cookie)."""
    return create_access_token(
        user.username, user.role.value, settings.secret("token"), settings.token_minutes
    )
