"""Bearer credentials: user tokens and service credentials can never stand in for each other."""

from __future__ import annotations

import time

import jwt
import pytest

from feedchat_runtime.auth import ALGORITHM, ISSUER, Caller, TokenAuthority
from feedchat_runtime.errors import Unauthenticated
from tests.waiting import wait_until

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
    assert authority.verify_bearer(authority.issue_service("feed").token) == Caller(service="feed")


@pytest.mark.parametrize(
    ("secret", "typ", "ttl", "reason"),
    [
        (AUTH, "service", 3600, "TOKEN_INVALID"),  # the user key cannot mint a service cred
        (SERVICE, "access", 3600, "TOKEN_INVALID"),  # the service key is not a user key
        (AUTH, "refresh", 3600, "TOKEN_WRONG_TYPE"),  # refresh tokens only refresh
        (AUTH, "access", -10, "TOKEN_EXPIRED"),
        ("x" * 32, "access", 3600, "TOKEN_INVALID"),
    ],
)
def test_forged_expired_or_misused_tokens_are_refused(
    authority: TokenAuthority, secret: str, typ: str, ttl: float, reason: str
) -> None:
    # Minted here, not at collection time, so a slow suite cannot expire them first.
    with pytest.raises(Unauthenticated) as caught:
        authority.verify_bearer(_forge(secret, typ, ttl=ttl))
    assert caught.value.reason == reason


def test_garbage_is_not_a_token(authority: TokenAuthority) -> None:
    with pytest.raises(Unauthenticated) as caught:
        authority.verify_bearer("not-a-jwt")
    assert caught.value.reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "subject",
    [
        "0",
        "-1",
        "9223372036854775808",
        "99999999999999999999999",
        "abc",
        "",
        " 12",
        "+5",
        "1_0",
        "007",
        "\u0663",
        "1.5",
    ],
)
def test_a_subject_that_is_not_a_user_id_is_unauthenticated(
    authority: TokenAuthority, subject: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        authority.verify_bearer(_forge(AUTH, "access", sub=subject))
    assert caught.value.reason == "TOKEN_INVALID"


def test_the_largest_user_id_is_a_subject(authority: TokenAuthority) -> None:
    top = (1 << 63) - 1
    assert authority.verify_bearer(_forge(AUTH, "access", sub=str(top))) == Caller(user_id=top)
    with pytest.raises(ValueError):
        authority.issue_access(0)


async def test_a_token_verified_before_still_expires(authority: TokenAuthority) -> None:
    short = TokenAuthority(AUTH, SERVICE, access_ttl=1.0)
    token = short.issue_access(42).token
    assert short.verify_bearer(token) == Caller(user_id=42)
    assert short.verify_bearer(token) == Caller(user_id=42)  # answered as verified before

    def refused() -> bool:
        try:
            short.verify_bearer(token)
        except Unauthenticated as exc:
            return exc.reason == "TOKEN_EXPIRED"
        return False

    await wait_until(refused, timeout=5, what="the remembered token to expire")


def test_a_forged_twin_of_a_verified_token_is_refused(authority: TokenAuthority) -> None:
    token = authority.issue_access(42).token
    assert authority.verify_bearer(token) == Caller(user_id=42)
    header, payload, _ = token.split(".")
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "x" * 32)
    assert forged.split(".")[1] == payload  # same claims, other signature
    with pytest.raises(Unauthenticated):
        authority.verify_bearer(forged)
