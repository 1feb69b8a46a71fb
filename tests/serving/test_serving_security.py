from datetime import UTC, datetime

import pytest

from serving.security import (
    ExpiredTokenError,
    InvalidTokenError,
    create_access_token,
    decode_access_token,
    hash_password,
    verify_password,
)

KEY = b"k" * 32


def test_password_hash_round_trip_uses_production_parameters():
    stored = hash_password("s3cret pässword")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert verify_password("s3cret pässword", stored)
    assert not verify_password("s3cret password", stored)


def test_same_password_gets_a_different_salt():
    assert hash_password("same") != hash_password("same")


def test_tampered_or_malformed_hash_is_rejected():
    stored = hash_password("pw")
    scheme, n, r, p, salt, digest = stored.split("$")
    flipped = ("A" if digest[0] != "A" else "B") + digest[1:]
    assert not verify_password("pw", "$".join([scheme, n, r, p, salt, flipped]))
    assert not verify_password("pw", "$".join([scheme, n, r, p, "AAAAAAAAAAAAAAAAAAAAAA==", digest]))
    assert not verify_password("pw", "bcrypt$whatever")
    assert not verify_password("pw", "scrypt$x$8$1$salt$hash")
    assert not verify_password("pw", "")


def test_token_round_trip():
    token = create_access_token("teacher", "class_teacher", KEY, minutes=5)
    claims = decode_access_token(token, KEY)
    assert claims.subject == "teacher"
    assert claims.role == "class_teacher"
    assert claims.expires_at > datetime.now(UTC)


def test_expired_token_is_rejected():
    token = create_access_token("teacher", "class_teacher", KEY, minutes=-1)
    with pytest.raises(ExpiredTokenError):
        decode_access_token(token, KEY)


def test_token_signed_with_another_key_is_rejected():
    token = create_access_token("teacher", "class_teacher", b"x" * 32, minutes=5)
    with pytest.raises(InvalidTokenError):
        decode_access_token(token, KEY)
    with pytest.raises(InvalidTokenError):
        decode_access_token("not.a.token", KEY)
