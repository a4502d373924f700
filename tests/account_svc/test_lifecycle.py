"""Password change, sign-out everywhere and account deletion on a real account_svc: what
the refresh tokens, the passwords and the username do afterwards, and the statuses of
bad input. (Deletion's effect on the feed: tests/feed_svc/test_account_deletion.py.)"""

from __future__ import annotations

import grpc
import pytest

from feedchat.account.v1 import account_pb2 as pb
from feedchat_client.errors import error_details
from tests.account_svc.conftest import PASSWORD, Account, StartAccount, bearer
from tests.waiting import eventually

NEW_PASSWORD = "a brand new passphrase"


async def _login(account: Account, username: str, password: str) -> pb.LoginResponse:
    reply: pb.LoginResponse = await account.stub.Login(
        pb.LoginRequest(username=username, password=password)
    )
    return reply


async def _refresh_error(account: Account, refresh_token: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=refresh_token))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    return details.reason


async def _failure(call: object) -> tuple[grpc.StatusCode, str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    details = await error_details(caught.value)
    return details.code, details.reason, [f for f, _ in details.field_violations]


async def test_password_change_revokes_other_devices_and_new_password_logs_in(
    account: Account,
) -> None:
    phone = await account.sign_up("pat")
    laptop = await _login(account, "pat", PASSWORD)
    changed = await account.stub.ChangePassword(
        pb.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=bearer(laptop.access_token),
    )
    assert changed.user_id == phone.user_id
    assert await _refresh_error(account, phone.refresh_token) == "REFRESH_TOKEN_REVOKED"
    assert await _refresh_error(account, laptop.refresh_token) == "REFRESH_TOKEN_REVOKED"
    # The changing device goes on with the pair it got back.
    again = await account.stub.RefreshToken(
        pb.RefreshTokenRequest(refresh_token=changed.refresh_token)
    )
    assert again.user_id == phone.user_id
    code, reason, _ = await _failure(
        account.stub.Login(pb.LoginRequest(username="pat", password=PASSWORD))
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_CREDENTIALS")
    assert (await _login(account, "pat", NEW_PASSWORD)).user_id == phone.user_id


async def test_password_change_bad_input_has_precise_statuses(account: Account) -> None:
    user = await account.sign_up("quinn")
    md = bearer(user.access_token)

    def change(current: str, new: str) -> object:
        return account.stub.ChangePassword(
            pb.ChangePasswordRequest(current_password=current, new_password=new), metadata=md
        )

    assert await _failure(change("wrong password", NEW_PASSWORD)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "WRONG_PASSWORD",
        [],
    )
    assert await _failure(change(PASSWORD, "short")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_INVALID",
        ["new_password"],
    )
    assert await _failure(change("x" * 129, NEW_PASSWORD)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_INVALID",
        ["current_password"],
    )
    assert await _failure(change(PASSWORD, PASSWORD)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_UNCHANGED",
        ["new_password"],
    )
    code, reason, _ = await _failure(
        account.stub.ChangePassword(
            pb.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD)
        )
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    # Nothing above changed anything: the old password and refresh token still work.
    assert (await _login(account, "quinn", PASSWORD)).user_id == user.user_id
    await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=user.refresh_token))


async def test_wrong_passwords_count_against_the_login_limit(
    start_account: StartAccount,
) -> None:
    account = await start_account(login_max_per_username=2)
    user = await account.sign_up("rex")
    md = bearer(user.access_token)
    request = pb.DeleteAccountRequest(password="not the password")
    for _ in range(2):
        code, reason, _ = await _failure(account.stub.DeleteAccount(request, metadata=md))
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "WRONG_PASSWORD")
    code, reason, _ = await _failure(
        account.stub.DeleteAccount(pb.DeleteAccountRequest(password=PASSWORD), metadata=md)
    )
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_RATE_LIMITED")


async def test_sign_out_everywhere_revokes_every_refresh_token(account: Account) -> None:
    first = await account.sign_up("sam")
    second = await _login(account, "sam", PASSWORD)
    reply = await account.stub.SignOutEverywhere(
        pb.SignOutEverywhereRequest(), metadata=bearer(second.access_token)
    )
    assert reply.revoked_refresh_tokens == 2
    assert await _refresh_error(account, first.refresh_token) == "REFRESH_TOKEN_REVOKED"
    assert await _refresh_error(account, second.refresh_token) == "REFRESH_TOKEN_REVOKED"
    # Logging in again works, and its refresh token rotates as usual.
    third = await _login(account, "sam", PASSWORD)
    await account.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=third.refresh_token))


async def test_deleted_account_cannot_log_in_and_its_username_is_held_then_freed(
    start_account: StartAccount,
) -> None:
    account = await start_account(username_hold=2.0)
    user = await account.sign_up("tess")
    md = bearer(user.access_token)
    reply = await account.stub.DeleteAccount(
        pb.DeleteAccountRequest(password=PASSWORD), metadata=md
    )
    assert reply.username_free_at.seconds > 0
    code, reason, _ = await _failure(
        account.stub.Login(pb.LoginRequest(username="tess", password=PASSWORD))
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_CREDENTIALS")
    assert await _refresh_error(account, user.refresh_token) == "REFRESH_TOKEN_REVOKED"
    code, reason, _ = await _failure(
        account.stub.GetProfile(pb.GetProfileRequest(user_id=user.user_id), metadata=md)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    found = await account.stub.GetUsers(pb.GetUsersRequest(user_ids=[user.user_id]), metadata=md)
    assert list(found.users) == []
    code, reason, _ = await _failure(
        account.stub.SignUp(pb.SignUpRequest(username="TESS", password=PASSWORD))
    )
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "USERNAME_HELD")
    # A second deletion with the leftover access token finds no account.
    code, reason, _ = await _failure(
        account.stub.DeleteAccount(pb.DeleteAccountRequest(password=PASSWORD), metadata=md)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")

    async def signed_up_again() -> pb.SignUpResponse | None:
        try:
            return await account.sign_up("tess", NEW_PASSWORD)
        except grpc.aio.AioRpcError:
            return None

    newcomer = await eventually(
        signed_up_again, 10.0, "the held username to be freed", interval=0.2
    )
    assert newcomer.user_id != user.user_id
    assert (await _login(account, "tess", NEW_PASSWORD)).user_id == newcomer.user_id


async def test_delete_account_with_a_wrong_password_deletes_nothing(account: Account) -> None:
    user = await account.sign_up("uma")
    code, reason, _ = await _failure(
        account.stub.DeleteAccount(
            pb.DeleteAccountRequest(password="not the password"), metadata=bearer(user.access_token)
        )
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "WRONG_PASSWORD")
    assert (await _login(account, "uma", PASSWORD)).user_id == user.user_id


async def test_access_token_works_after_sign_out_everywhere_until_it_expires(
    start_account: StartAccount,
) -> None:
    account = await start_account(access_token_ttl=2.0, refresh_token_ttl=60.0)
    user = await account.sign_up("vic")
    lifetime = user.access_token_expires_at.seconds - user.refresh_token_expires_at.seconds
    assert -59 <= lifetime <= -57  # the access token lives the configured 2 s, not longer
    md = bearer(user.access_token)
    await account.stub.SignOutEverywhere(pb.SignOutEverywhereRequest(), metadata=md)
    # Documented: no per-call revocation lookup, so the access token still works...
    me = await account.stub.GetProfile(pb.GetProfileRequest(), metadata=md)
    assert me.user.user_id == user.user_id

    async def refused() -> str:
        try:
            await account.stub.GetProfile(pb.GetProfileRequest(), metadata=md)
        except grpc.aio.AioRpcError as exc:
            return (await error_details(exc)).reason
        return ""

    # ...until its expiry, and nothing renews it.
    assert (
        await eventually(refused, 10.0, "the access token to expire", interval=0.2)
        == "TOKEN_EXPIRED"
    )
    assert await _refresh_error(account, user.refresh_token) == "REFRESH_TOKEN_REVOKED"
