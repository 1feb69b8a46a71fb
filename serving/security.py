"""Password hashing and access tokens: pure functions, no I/O, no app state.

Passwords are hashed with scrypt because it is memory-hard: a stolen user database costs an
attacker memory as well as time per guess, which GPUs and ASICs cannot shortcut cheaply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
TOKEN_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt_b64$hash_b64`: the cost parameters travel with the hash, so raising
    them later leaves every existing hash verifiable."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; False for a wrong password or a malformed hash."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        actual = _scrypt(password, salt, int(n), int(r), int(p), dklen=len(expected))
    except ValueError:
        return False
    # Constant time: how many leading bytes matched must not show in the response time.
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class InvalidTokenError(Exception):
    """The token is missing, malformed, forged or signed with another key."""


class ExpiredTokenError(InvalidTokenError):
    """The token was valid but its lifetime is over; the holder must sign in again."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    role: str
    expires_at: datetime


def create_access_token(subject: str, role: str, key: bytes, minutes: int) -> str:
    """A signed token naming the user and role, without their scope: the service re-reads the user
    (scope, disabled) on every request, so a scope in the token would never be used, and the token
    of a user over a hundred classes would cost more to verify than the rest of the request."""
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "role": role,
        "iat": now,
        "exp": now + timedelta(minutes=minutes),
    }
    return jwt.encode(claims, key, algorithm=TOKEN_ALGORITHM)


def decode_access_token(token: str, key: bytes) -> TokenClaims:
    """Verified claims of `token`; raises `ExpiredTokenError` or `InvalidTokenError`."""
    try:
        # `algorithms` pinned: a token must never choose its own verification algorithm.
        claims = jwt.decode(
            token, key, algorithms=[TOKEN_ALGORITHM], options={"require": ["sub", "exp", "role"]}
        )
    except jwt.ExpiredSignatureError as error:
        raise ExpiredTokenError("The access token has expired; sign in again.") from error
    except jwt.InvalidTokenError as error:
        raise InvalidTokenError(f"The access token is not valid: {error}") from error
    return TokenClaims(
        subject=claims["sub"],
        role=claims["role"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )
