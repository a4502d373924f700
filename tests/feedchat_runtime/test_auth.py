"""Bearer credentials: user tokens and service credentials can never stand in for each other."""

from __future__ import annotations

import time

import jwt
import pytest

from feedchat_runtime.auth import ALGORITHM, ISSUER, Caller, TokenAuthority
from feedchat_runtime.errors import Unauthenticated

AUTH, SERVICE = "a" * 32, "s" * 32


def _forge(secret: str, typ: str, sub: str = "42", ttl: float = 60) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "typ": typ, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(AUTH, SERVICE)


def test_each_kind_of_credential_names_its_caller(authority: TokenAuthority) -> None:
    assert authority.verify_bearer(authority.issue_access(42).token) == Caller(user_id=42)
    assert authority.verify_bearer(authority.issue_service("feed").token) == Caller(
        service="feed"
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_forge(AUTH, "service"), "TOKEN_INVALID"),  # user key cannot mint a service cred
        (_forge(SERVICE, "access"), "TOKEN_INVALID"),  # service key is not a user key
        (_forge(AUTH, "refresh"), "TOKEN_WRONG_TYPE"),  # refresh tokens only refresh
        (_forge(AUTH, "access", ttl=-10), "TOKEN_EXPIRED"),
        (_forge("x" * 32, "access"), "TOKEN_INVALID"),
        ("not-a-jwt", "TOKEN_INVALID"),
    ],
)
def test_forged_expired_or_misused_tokens_are_refused(
    authority: TokenAuthority, token: str, reason: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        authority.verify_bearer(token)
    assert caught.value.reason == reason
