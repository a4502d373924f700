"""presence_svc and its neighbours: the default watch list from a real feed_svc, and
other services asking who is online."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from feed_svc.app import build as build_feed
from feed_svc.authors import Author
from feed_svc.config import FeedConfig
from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.server import ServiceHost
from presence_svc.app import build
from presence_svc.client import PresenceClient
from presence_svc.config import PresenceConfig
from tests.presence_svc.conftest import FAST, DeviceClient, user_metadata


class EveryoneExists:
    """Feed's author directory without account_svc: every id is a user."""

    async def get_authors(self, user_ids: Collection[int]) -> dict[int, Author]:
        return {uid: Author(uid, f"user{uid}", "") for uid in user_ids}

    async def exists(self, user_id: int) -> bool:
        return True


# feed_svc does not run on Redis Cluster yet: one node only.
@pytest.mark.parametrize("redis_url", ["node"], indirect=True)
async def test_default_watch_list_is_read_from_feed_svc(
    make_config: Callable[..., Any], redis: aioredis.Redis
) -> None:
    feed = await build_feed(make_config(FeedConfig, instance="feed-0"), EveryoneExists())
    await feed.host.start()
    presence = await build(make_config(PresenceConfig, instance="presence-0", **FAST))
    await presence.start()
    client: DeviceClient | None = None
    try:
        async with grpc.aio.insecure_channel(feed.host.address) as channel:
            stub = feed_pb2_grpc.FeedServiceStub(channel)
            for author in (3, 2):
                await stub.Follow(feed_pb2.FollowRequest(user_id=author), metadata=user_metadata(1))
        client = DeviceClient(presence.address, 1)
        first = await client.snapshot()
        assert [p.user_id for p in first.presences] == [2, 3]
        assert first.session.watch_count == 2
    finally:
        if client is not None:
            await client.shut()
        await presence.stop()
        await feed.host.stop()


async def test_without_feed_svc_streams_start_with_an_empty_watch_list(
    make_config: Callable[..., Any], redis: aioredis.Redis
) -> None:
    presence = await build(make_config(PresenceConfig, instance="presence-0", **FAST))
    await presence.start()
    client = DeviceClient(presence.address, 1)
    try:
        first = await client.snapshot()
        assert (list(first.presences), first.session.watch_count) == ([], 0)
    finally:
        await client.shut()
        await presence.stop()


async def test_another_service_asks_who_is_online(
    make_config: Callable[..., Any], start_cluster: Any
) -> None:
    cluster = await start_cluster()
    device = await cluster.connect(1, 2)
    await device.snapshot()
    host = ServiceHost(make_config(instance="chat-0"), "chat")
    await host.open()
    directory = ServiceDirectory(host.session, host.config, host.authority, "chat")
    try:
        presence = PresenceClient(directory)
        assert await presence.online([2, 3]) == {2: True, 3: False}
        many = await presence.online(range(1, 2501))  # three GetPresence calls
        assert len(many) == 2500 and many[2] and not many[1]
    finally:
        await directory.close()
        await host.session.close()
