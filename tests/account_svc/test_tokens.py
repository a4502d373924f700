"""The guard on AccountService: expired, forged and wrong-kind tokens; refresh rotation."""

from __future__ import annotations

import grpc
import jwt
import pytest

from feedchat.account.v1 import account_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_runtime.auth import (
    DEV_AUTH_SECRET,
    DEV_SERVICE_SECRET,
    TokenAuthority,
    authority_from_config,
)
from tests.account_svc.conftest import PASSWORD, Account, bearer


async def _profile_error(account: Account, token: str | None) -> grpc.aio.AioRpcError:
    metadata = bearer(token) if token is not None else None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.GetProfile(pb.GetProfileRequest(), metadata=metadata)
    return caught.value


async def test_missing_token_is_unauthenticated(account: Account) -> None:
    details = await error_details(await _profile_error(account, None))
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "TOKEN_MISSING"


async def test_expired_access_token_is_unauthenticated(account: Account) -> None:
    user = await account.sign_up("ivy")
    expired = TokenAuthority(DEV_AUTH_SECRET, DEV_SERVICE_SECRET, access_ttl=-5)
    details = await error_details(
        await _profile_error(account, expired.issue_access(user.user_id).token)
    )
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "TOKEN_EXPIRED"


async def test_token_signed_with_another_key_is_unauthenticated(account: Account) -> None:
    user = await account.sign_up("jack")
    forger = TokenAuthority("not-the-real-key-" * 3, "not-the-service-key-" * 3)
    details = await error_details(
        await _profile_error(account, forger.issue_access(user.user_id).token)
    )
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "TOKEN_INVALID"


async def test_unsigned_token_is_unauthenticated(account: Account) -> None:
    user = await account.sign_up("kate")
    claims = {"iss": "feedchat", "sub": str(user.user_id), "typ": "access", "iat": 0, "exp": 2**40}
    forged = jwt.encode(claims, "", algorithm="none")
    details = await error_details(await _profile_error(account, forged))
    assert details.code == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_token_does_not_work_as_access_token(account: Account) -> None:
    user = await account.sign_up("liam")
    details = await error_details(await _profile_error(account, user.refresh_token))
    assert details.code == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_rotates_and_a_spent_refresh_token_is_refused(account: Account) -> None:
    user = await account.sign_up("mia")
    first = await account.stub.RefreshToken(
        pb.RefreshTokenRequest(refresh_token=user.refresh_token)
    )
    assert first.user_id == user.user_id
    assert first.refresh_token != user.refresh_token
    await account.stub.GetProfile(pb.GetProfileRequest(), metadata=bearer(first.access_token))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=user.refresh_token))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "REFRESH_TOKEN_REUSED"


async def test_reusing_a_spent_refresh_token_revokes_the_newer_one(account: Account) -> None:
    user = await account.sign_up("noah")
    stolen = user.refresh_token
    rotated = await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=stolen))
    with pytest.raises(grpc.aio.AioRpcError):
        await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=stolen))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=rotated.refresh_token))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "REFRESH_TOKEN_REVOKED"
    # Logging in again starts a fresh, working chain.
    login = await account.stub.Login(pb.LoginRequest(username="noah", password=PASSWORD))
    await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=login.refresh_token))


async def test_validly_signed_but_never_issued_refresh_token_is_refused(
    account: Account,
) -> None:
    user = await account.sign_up("olga")
    unknown = authority_from_config("", "", dev=True).issue_refresh(user.user_id).token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=unknown))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "REFRESH_TOKEN_REVOKED"


async def test_access_token_is_not_accepted_by_refresh(account: Account) -> None:
    user = await account.sign_up("pete")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=user.access_token))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_service_credential_reads_users_but_cannot_act_as_a_user(
    account: Account,
) -> None:
    user = await account.sign_up("quinn")
    service = bearer(authority_from_config("", "", dev=True).issue_service("feed").token)
    found = await account.stub.GetUsers(
        pb.GetUsersRequest(user_ids=[user.user_id]), metadata=service
    )
    assert [u.username for u in found.users] == ["quinn"]
    looked = await account.stub.LookupUsername(
        pb.LookupUsernameRequest(username="Quinn"), metadata=service
    )
    assert looked.user.user_id == user.user_id
    named = await account.stub.GetProfile(
        pb.GetProfileRequest(user_id=user.user_id), metadata=service
    )
    assert named.user.username == "quinn"
    for call in (
        account.stub.UpdateProfile(pb.UpdateProfileRequest(bio="hacked"), metadata=service),
        account.stub.GetProfile(pb.GetProfileRequest(), metadata=service),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        details = await error_details(caught.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "USER_TOKEN_REQUIRED",
        )


async def test_expired_refresh_token_is_refused(account: Account) -> None:
    user = await account.sign_up("ruth")
    expired = TokenAuthority(DEV_AUTH_SECRET, DEV_SERVICE_SECRET, refresh_ttl=-5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.RefreshToken(
            pb.RefreshTokenRequest(refresh_token=expired.issue_refresh(user.user_id).token)
        )
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "TOKEN_EXPIRED"
