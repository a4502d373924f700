"""PostgreSQL is the record: accounts survive a wiped Redis, the cache follows writes, and a
lost PostgreSQL means NOT_SERVING and UNAVAILABLE, then recovery without a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from account_svc.keys import user_cache_key
from feedchat.account.v1 import account_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_local.embedded import EmbeddedServer, postgres_url
from feedchat_runtime.postgres import load_migrations
from tests.account_svc.conftest import PASSWORD, Account, StartAccount, bearer
from tests.waiting import wait_until


async def test_accounts_survive_a_wiped_redis_and_a_restart(
    start_account: StartAccount, redis: aioredis.Redis
) -> None:
    first = await start_account()
    user = await first.sign_up("keeper")
    await first.stub.UpdateProfile(
        pb.UpdateProfileRequest(display_name="Keeper", bio="kept"),
        metadata=bearer(user.access_token),
    )
    await first.host.stop()
    await redis.flushall()

    again = await start_account()
    login = await again.stub.Login(pb.LoginRequest(username="KEEPER", password=PASSWORD))
    assert login.user_id == user.user_id
    users = await again.stub.GetUsers(
        pb.GetUsersRequest(user_ids=[user.user_id]), metadata=bearer(login.access_token)
    )
    assert [(u.username, u.display_name, u.bio) for u in users.users] == [
        ("keeper", "Keeper", "kept")
    ]
    # The refresh-token family is in the record too: rotation still works after the wipe.
    await again.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=login.refresh_token))


async def test_get_users_fills_the_cache_and_a_profile_update_replaces_it(
    account: Account, redis: aioredis.Redis
) -> None:
    user = await account.sign_up("cached")
    auth = bearer(user.access_token)
    request = pb.GetUsersRequest(user_ids=[user.user_id])
    await account.stub.GetUsers(request, metadata=auth)
    assert await redis.exists(user_cache_key(user.user_id))
    await account.stub.UpdateProfile(pb.UpdateProfileRequest(bio="new"), metadata=auth)
    users = await account.stub.GetUsers(request, metadata=auth)
    assert users.users[0].bio == "new"


async def test_services_starting_together_on_an_empty_database_both_serve(
    start_account: StartAccount, database_url: str
) -> None:
    first, second = await asyncio.gather(start_account(), start_account())
    await first.sign_up("one")
    await second.sign_up("two")
    db = await asyncpg.connect(database_url)
    try:
        versions = await db.fetch(
            "SELECT version FROM feedchat_migrations WHERE component = 'account' ORDER BY version"
        )
    finally:
        await db.close()
    # Each migration applied once, though two processes raced to apply them.
    assert [r["version"] for r in versions] == [m.version for m in load_migrations("account_svc")]


async def _health(account: Account) -> Any:
    stub = health_pb2_grpc.HealthStub(account.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest())
    return reply.status


async def test_lost_postgres_means_not_serving_and_unavailable_then_recovery(
    start_account: StartAccount, private_postgres: EmbeddedServer
) -> None:
    account = await start_account(postgres_url=postgres_url(private_postgres), health_interval=0.1)
    await account.sign_up("before")
    private_postgres.stop()
    await wait_until(
        lambda: _health_is(account, health_pb2.HealthCheckResponse.NOT_SERVING),
        what="NOT_SERVING",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.sign_up("during")
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.reason == "DATABASE_UNAVAILABLE"
    assert "database is unavailable" in details.message

    private_postgres.start()
    await wait_until(
        lambda: _health_is(account, health_pb2.HealthCheckResponse.SERVING), what="SERVING"
    )
    await account.sign_up("during")  # nothing of the failed attempt was left behind
    await account.stub.Login(pb.LoginRequest(username="before", password=PASSWORD))


async def _health_is(account: Account, status: Any) -> bool:
    return bool(await _health(account) == status)
