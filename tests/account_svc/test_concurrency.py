"""Races the stores must win: one owner per name, one use per refresh token (PostgreSQL
constraints and row locks), and login limits that hold when guesses arrive all at once
(Redis scripts)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import asyncpg
import grpc

from feedchat.account.v1 import account_pb2 as pb
from tests.account_svc.conftest import FAST, PASSWORD, Account, StartAccount


async def _codes(calls: Sequence[Awaitable[object]]) -> list[grpc.StatusCode]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    codes = []
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            codes.append(result.code())
        else:
            assert not isinstance(result, BaseException), result
            codes.append(grpc.StatusCode.OK)
    return codes


async def test_concurrent_sign_ups_of_one_name_have_one_winner(
    start_account: StartAccount,
) -> None:
    first, second = await start_account(), await start_account()
    names = ["race", "RACE", "Race", "rAce", "raCe", "racE"]
    codes = await _codes(
        [(first if i % 2 else second).sign_up(name) for i, name in enumerate(names)]
    )
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.ALREADY_EXISTS) == len(names) - 1


async def test_concurrent_refreshes_of_one_token_succeed_once(account: Account) -> None:
    user = await account.sign_up("twice")
    request = pb.RefreshTokenRequest(refresh_token=user.refresh_token)
    codes = await _codes([account.stub.RefreshToken(request) for _ in range(6)])
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 5


async def test_simultaneous_guesses_cannot_exceed_the_username_limit(
    start_account: StartAccount,
) -> None:
    account = await start_account(login_max_per_username=4, login_max_per_peer=1000)
    await account.sign_up("target")
    guesses = [
        account.stub.Login(pb.LoginRequest(username="target", password=f"guess {i:04d}"))
        for i in range(20)
    ]
    codes = await _codes(guesses)
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 4
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 16


async def _stored_hash(database_url: str, user_id: int) -> str:
    db = await asyncpg.connect(database_url)
    try:
        stored = await db.fetchval(
            "SELECT password_hash FROM credentials WHERE user_id = $1", user_id
        )
    finally:
        await db.close()
    assert isinstance(stored, str)
    return stored


async def test_login_upgrades_a_hash_made_with_older_parameters(
    start_account: StartAccount, database_url: str
) -> None:
    old = await start_account()
    user = await old.sign_up("upgrade")
    assert "t=1," in await _stored_hash(database_url, user.user_id)
    stronger = await start_account(argon2_time_cost=FAST["argon2_time_cost"] + 1)
    await stronger.stub.Login(pb.LoginRequest(username="upgrade", password=PASSWORD))
    assert "t=2," in await _stored_hash(database_url, user.user_id)
    # An instance with the old parameters still verifies the new hash.
    await old.stub.Login(pb.LoginRequest(username="upgrade", password=PASSWORD))
