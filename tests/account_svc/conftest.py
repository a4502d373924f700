"""A real account_svc (ServiceHost, guard, etcd, Redis) on a free port, and call helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from account_svc.app import build
from account_svc.config import AccountConfig
from feedchat.account.v1 import account_pb2 as pb
from feedchat.account.v1 import account_pb2_grpc
from feedchat_runtime.server import ServiceHost
from tests.conftest import run_on_both_topologies

# Cheap argon2 parameters: the tests check behaviour, not hashing cost.
FAST: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
}

PASSWORD = "correct horse battery"

# The modules whose behaviour rests on Redis (login limits, the user cache) also run on
# the Redis Cluster; the rest (tokens, TLS, config, hashing) do not depend on its topology.
ON_BOTH_TOPOLOGIES = {"test_signup_login", "test_record", "test_scripts", "test_profiles"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rsplit(".", 1)[-1] in ON_BOTH_TOPOLOGIES:
        run_on_both_topologies(metafunc)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Account:
    """One running account_svc and a plaintext stub to it."""

    host: ServiceHost
    config: AccountConfig
    channel: grpc.aio.Channel
    stub: account_pb2_grpc.AccountServiceStub

    @property
    def address(self) -> str:
        return self.host.address

    async def sign_up(self, username: str, password: str = PASSWORD) -> pb.SignUpResponse:
        request = pb.SignUpRequest(username=username, password=password)
        reply: pb.SignUpResponse = await self.stub.SignUp(request)
        return reply


StartAccount = Callable[..., Awaitable[Account]]


@pytest.fixture
async def start_account(
    make_config: Callable[..., Any], redis: aioredis.Redis
) -> AsyncIterator[StartAccount]:
    """Start account_svc instances with config overrides; all stop after the test."""
    running: list[Account] = []

    async def start(**overrides: Any) -> Account:
        config = make_config(AccountConfig, **{**FAST, **overrides})
        host = await build(config)
        await host.start()
        channel = grpc.aio.insecure_channel(host.address)
        account = Account(host, config, channel, account_pb2_grpc.AccountServiceStub(channel))
        running.append(account)
        return account

    yield start
    for account in running:
        await account.channel.close()
        await account.host.stop()


@pytest.fixture
async def account(start_account: StartAccount) -> Account:
    return await start_account()
