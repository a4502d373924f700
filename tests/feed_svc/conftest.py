"""A real feed_svc and a real account_svc (etcd, Redis, gRPC on loopback) per test."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from account_svc.app import build as build_account
from account_svc.config import AccountConfig
from feed_svc.app import FeedApp, build
from feed_svc.config import FeedConfig
from feed_svc.fanout import BatchHook
from feedchat.account.v1 import account_pb2, account_pb2_grpc
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat.feed.v1 import feed_pb2_grpc
from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.server import ServiceHost
from tests.conftest import run_on_both_topologies
from tests.waiting import eventually

AUTHORITY = authority_from_config("", "", dev=True)

# Small sizes and timings so chunking, claims and caps play out with few users, fast.
FAST: dict[str, Any] = {
    "fanout_workers": 2,
    "fanout_chunk": 40,
    "fanout_batch": 10,
    "fanout_block": 0.2,
    "fanout_claim_idle": 30.0,
    "post_rate": 1000.0,
    "post_burst": 1000,
    "author_cache_ttl": 0.5,
}

_names = itertools.count()

# The modules that exercise the store (posting and fanout, follows, merged reads and pages,
# live streams, alerts, the refill from the record, replica acks) also run on the Redis
# Cluster; the rest (request validation, process wiring, crash timing) do not depend on its
# topology.
ON_BOTH_TOPOLOGIES = {
    "test_posts",
    "test_follow",
    "test_timeline",
    "test_feed_paging",
    "test_hybrid",
    "test_stream",
    "test_post_alerts",
    "test_record",
    "test_replica_acks",
    "test_cache_removal",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rsplit(".", 1)[-1] in ON_BOTH_TOPOLOGIES:
        run_on_both_topologies(metafunc)


def user_metadata(user_id: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_access(user_id).token}"),)


def service_metadata(name: str = "ops") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_service(name).token}"),)


@dataclass
class Client:
    """One user's view of the feed service."""

    user_id: int
    stub: feed_pb2_grpc.FeedServiceStub

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return user_metadata(self.user_id)

    async def post(self, text: str) -> pb.Post:
        reply: pb.CreatePostResponse = await self.stub.CreatePost(
            pb.CreatePostRequest(text=text), metadata=self.md
        )
        return reply.post

    async def follow(self, user_id: int) -> bool:
        reply: pb.FollowResponse = await self.stub.Follow(
            pb.FollowRequest(user_id=user_id), metadata=self.md
        )
        return reply.changed

    async def unfollow(self, user_id: int) -> bool:
        reply: pb.UnfollowResponse = await self.stub.Unfollow(
            pb.UnfollowRequest(user_id=user_id), metadata=self.md
        )
        return reply.changed

    async def feed(self, page_size: int = 0, page_token: str = "") -> pb.GetFeedResponse:
        request = pb.GetFeedRequest(page_size=page_size, page_token=page_token)
        reply: pb.GetFeedResponse = await self.stub.GetFeed(request, metadata=self.md)
        return reply

    async def feed_ids(self, page_size: int = 100) -> list[int]:
        """Every post id of the feed, all pages."""
        ids: list[int] = []
        token = ""
        while True:
            page = await self.feed(page_size, token)
            ids += [p.post_id for p in page.posts]
            token = page.next_page_token
            if not token:
                return ids


@dataclass
class System:
    """account_svc + feed_svc, running, with helpers to make users."""

    feed_app: FeedApp
    account_host: ServiceHost
    config: FeedConfig
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        feed_channel = grpc.aio.insecure_channel(self.feed_app.host.address)
        account_channel = grpc.aio.insecure_channel(self.account_host.address)
        self.channels += [feed_channel, account_channel]
        self.stub = feed_pb2_grpc.FeedServiceStub(feed_channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(account_channel)

    async def sign_up(self, name: str = "") -> Client:
        """A real account (so it can be followed and shown as an author)."""
        username = name or f"user{next(_names)}"
        reply = await self.accounts.SignUp(
            account_pb2.SignUpRequest(
                username=username, password="correct horse battery", display_name=username.title()
            )
        )
        return Client(reply.user_id, self.stub)

    def reader(self, user_id: int) -> Client:
        """A caller without an account record (enough to follow and read)."""
        return Client(user_id, self.stub)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


StartSystem = Callable[..., Awaitable[System]]


@pytest.fixture
async def start_system(
    make_config: Callable[..., Any], redis: RedisClient
) -> AsyncIterator[StartSystem]:
    """Start account_svc and feed_svc with feed config overrides (``account``: account_svc
    config overrides); stopped after the test."""
    running: list[System] = []
    hosts: list[ServiceHost] = []

    async def start(
        on_batch: BatchHook | None = None,
        account: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> System:
        account_config = make_config(
            AccountConfig,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            instance=f"account-{next(_names)}",
            **(account or {}),
        )
        account_host = await build_account(account_config)
        await account_host.start()
        hosts.append(account_host)
        config = make_config(FeedConfig, **{**FAST, **overrides}, instance=f"feed-{next(_names)}")
        app = await build(config, on_batch=on_batch)
        await app.host.start()
        hosts.append(app.host)
        system = System(app, account_host, config)
        running.append(system)
        return system

    yield start
    for system in running:
        await system.close()
    for host in reversed(hosts):
        await host.stop()


@pytest.fixture
async def system(start_system: StartSystem) -> System:
    return await start_system()


async def fanout_done(
    system: System, post_id: int, timeout: float = 10.0
) -> pb.GetFanoutStatusResponse:
    """Wait until a post's fanout is DONE (or pulled at read time); its final status."""
    last: list[pb.GetFanoutStatusResponse] = []

    async def done() -> bool:
        status = await system.stub.GetFanoutStatus(
            pb.GetFanoutStatusRequest(post_id=post_id), metadata=service_metadata()
        )
        last[:] = [status]
        return status.state in (pb.FANOUT_STATE_DONE, pb.FANOUT_STATE_PULLED_AT_READ)

    await eventually(done, timeout, f"fanout of post {post_id}")
    return last[0]
