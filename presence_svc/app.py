"""Wiring of one presence_svc process: Redis, the hub, the tracker, the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc

from feedchat.presence.v1 import presence_pb2, presence_pb2_grpc
from feedchat_runtime import redis_client
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.server import ServiceHost
from presence_svc.config import PresenceConfig
from presence_svc.following import FeedFollowing, FollowingSource
from presence_svc.hub import SubscriptionHub
from presence_svc.presence import PresenceTracker
from presence_svc.servicer import PresenceServicer
from presence_svc.store import PresenceStore

logger = logging.getLogger(__name__)

SERVICE = "presence"
SERVICE_NAME = presence_pb2.DESCRIPTOR.services_by_name["PresenceService"].full_name


@dataclass
class PresenceApp:
    """A built (not yet started) presence server and its parts."""

    host: ServiceHost
    redis: redis_client.RedisClient
    store: PresenceStore
    hub: SubscriptionHub
    tracker: PresenceTracker
    servicer: PresenceServicer

    @property
    def address(self) -> str:
        return self.host.address

    async def start(self) -> None:
        await self.host.start()

    async def stop(self) -> None:
        await self.host.stop()


async def build(config: PresenceConfig, following: FollowingSource | None = None) -> PresenceApp:
    """Open the etcd session and Redis, start the hub and tracker, build the server.

    ``following`` replaces the default watch-list source (feed_svc) — tests pass one.
    """
    host = ServiceHost(config, SERVICE)
    await host.open()
    # A bounded pool: a burst of connecting streams waits for a connection instead of
    # opening hundreds (and running into file-descriptor or maxclients limits).
    redis = redis_client.connect_any(
        config.redis_url, max_connections=config.redis_pool, pool_timeout=5
    )
    host.dependencies.add("redis", redis.ping)
    host.on_stop(redis.aclose)
    store = PresenceStore(redis, config.max_devices)
    await store.scripts.load()
    if following is None:
        directory = ServiceDirectory(host.session, config, host.authority, SERVICE)
        host.on_stop(directory.close)
        following = FeedFollowing(directory, config.feed_timeout)
    hub = SubscriptionHub(redis, config.instance, store.states)
    await hub.start()
    host.on_stop(hub.close)
    tracker = PresenceTracker(store, config)
    tracker.start()
    host.on_stop(tracker.stop)
    servicer = PresenceServicer(config, tracker, hub, following)

    def add_services(server: grpc.aio.Server) -> list[str]:
        presence_pb2_grpc.add_PresenceServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    host.build(add_services, AuthPolicy())

    async def end_streams_on_drain() -> None:
        await host.draining.wait()
        servicer.drain()

    drainer = asyncio.create_task(end_streams_on_drain(), name="presence-drain")

    async def stop_drainer() -> None:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer

    host.on_stop(stop_drainer)
    return PresenceApp(host, redis, store, hub, tracker, servicer)


async def serve(config: PresenceConfig) -> None:
    """Run one presence_svc process until SIGTERM/SIGINT."""
    app = await build(config)
    await app.host.run()
