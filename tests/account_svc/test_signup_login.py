"""Sign-up, username rules, login answers, and the login brute-force limits."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import grpc
import pytest

from feedchat.account.v1 import account_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_runtime.auth import authority_from_config
from tests.account_svc.conftest import PASSWORD, Account, StartAccount, bearer


async def test_sign_up_returns_tokens_that_identify_the_new_user(account: Account) -> None:
    reply = await account.sign_up("Alice.B_1")
    assert reply.user_id > 0
    assert reply.access_token_expires_at.seconds > time.time()
    assert reply.refresh_token_expires_at.seconds > reply.access_token_expires_at.seconds
    authority = authority_from_config("", "", dev=True)
    assert authority.verify_user(reply.access_token)[0] == reply.user_id
    profile = await account.stub.GetProfile(
        pb.GetProfileRequest(), metadata=bearer(reply.access_token)
    )
    assert profile.user.user_id == reply.user_id
    assert profile.user.username == "alice.b_1"
    assert profile.user.created_at.seconds > 0


async def test_duplicate_username_in_any_case_is_already_exists(account: Account) -> None:
    await account.sign_up("alice")
    for name in ("alice", "ALICE", "aLiCe"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await account.sign_up(name)
        details = await error_details(caught.value)
        assert details.code == grpc.StatusCode.ALREADY_EXISTS
        assert details.reason == "USERNAME_TAKEN"


@pytest.mark.parametrize(
    "username", ["ab", "x" * 33, "has space", "dash-no", "émile", "\u212aelvin", ""]
)
async def test_invalid_username_is_invalid_argument_naming_the_field(
    account: Account, username: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.sign_up(username)
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details.field_violations] == ["username"]


async def test_short_password_and_long_display_name_are_refused(account: Account) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.sign_up("bob", password="short")
    assert (await error_details(caught.value)).field_violations[0][0] == "password"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.SignUp(
            pb.SignUpRequest(username="bob", password=PASSWORD, display_name="d" * 65)
        )
    assert (await error_details(caught.value)).field_violations[0][0] == "display_name"


async def test_username_is_stored_case_folded_and_unique_in_the_record(
    account: Account, database_url: str
) -> None:
    reply = await account.sign_up("MixedCase")
    db = await asyncpg.connect(database_url)
    try:
        rows = await db.fetch("SELECT user_id, username FROM users")
        assert [(r["user_id"], r["username"]) for r in rows] == [(reply.user_id, "mixedcase")]
        # The constraint holds even for a row written by hand.
        with pytest.raises(asyncpg.UniqueViolationError):
            await db.execute(
                "INSERT INTO users (user_id, username, created_ms) VALUES (2, 'mixedcase', 0)"
            )
    finally:
        await db.close()


async def test_login_succeeds_case_insensitively(account: Account) -> None:
    signed = await account.sign_up("carol")
    reply = await account.stub.Login(pb.LoginRequest(username="CAROL", password=PASSWORD))
    assert reply.user_id == signed.user_id
    assert reply.access_token and reply.refresh_token


async def test_wrong_password_and_unknown_user_get_the_same_answer(account: Account) -> None:
    await account.sign_up("dave")
    answers = []
    for name, password in (("dave", "wrong password"), ("nobody", "wrong password")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await account.stub.Login(pb.LoginRequest(username=name, password=password))
        details = await error_details(caught.value)
        answers.append((details.code, details.message, details.reason))
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.UNAUTHENTICATED
    assert "dave" not in answers[0][1] and "nobody" not in answers[0][1]


async def _login_error(account: Account, username: str, password: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.Login(pb.LoginRequest(username=username, password=password))
    return caught.value


async def test_failed_logins_per_username_are_limited_with_retry_info(
    start_account: StartAccount,
) -> None:
    account = await start_account(login_max_per_username=3, login_window=60.0)
    await account.sign_up("erin")
    for _ in range(3):
        err = await _login_error(account, "erin", "bad guess 1")
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    # Over the limit even the right password is not checked.
    details = await error_details(await _login_error(account, "ERIN", PASSWORD))
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.reason == "LOGIN_RATE_LIMITED"
    assert details.retry_after is not None and 50 < details.retry_after <= 60
    # Another username from the same peer is unaffected.
    await account.sign_up("frank")
    await account.stub.Login(pb.LoginRequest(username="frank", password=PASSWORD))


async def test_successful_logins_do_not_use_up_the_limit(start_account: StartAccount) -> None:
    account = await start_account(login_max_per_username=2, login_max_per_peer=2)
    await account.sign_up("gina")
    for _ in range(5):
        await account.stub.Login(pb.LoginRequest(username="gina", password=PASSWORD))


async def test_failed_logins_per_peer_are_limited_across_usernames(
    start_account: StartAccount,
) -> None:
    account = await start_account(login_max_per_peer=4, login_max_per_username=100)
    for i in range(4):
        err = await _login_error(account, f"user{i}", "bad guess 1")
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    details = await error_details(await _login_error(account, "user9", "bad guess 1"))
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.retry_after is not None and details.retry_after > 0


async def test_login_limit_window_frees_after_retry_delay(start_account: StartAccount) -> None:
    account = await start_account(login_max_per_username=1, login_window=0.5)
    await account.sign_up("hank")
    await _login_error(account, "hank", "bad guess 1")
    details = await error_details(await _login_error(account, "hank", PASSWORD))
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.retry_after is not None and details.retry_after <= 0.5
    deadline = time.monotonic() + 5
    while True:
        try:
            await account.stub.Login(pb.LoginRequest(username="hank", password=PASSWORD))
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "login window never freed"
            await asyncio.sleep(0.05)


async def test_sign_ups_per_client_address_are_rate_limited(start_account: StartAccount) -> None:
    account = await start_account(signup_max_per_peer=3, signup_window=60)
    for name in ("ann", "ann", "bob"):  # a refused attempt (name taken) counts too
        with contextlib.suppress(grpc.aio.AioRpcError):
            await account.sign_up(name)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await account.sign_up("cid")
    details = await error_details(raised.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SIGNUP_RATE_LIMITED",
    )
    assert details.retry_after is not None and 0 < details.retry_after <= 60
    # logging in is a separate budget
    await account.stub.Login(pb.LoginRequest(username="ann", password=PASSWORD))
