"""Wiring: one feed_svc process (gRPC API, fanout worker pool, live pub/sub hub)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from feed_svc.authors import AccountAuthors, AuthorDirectory
from feed_svc.config import FeedConfig
from feed_svc.fanout import BatchHook, FanoutPool, FanoutSettings
from feed_svc.feed import Feed
from feed_svc.live import LiveHub
from feed_svc.records import FeedRecords, open_records
from feed_svc.servicer import SERVICE_NAME, SERVICE_ONLY, FeedServicer
from feed_svc.store import FeedStore
from feedchat.feed.v1 import feed_pb2_grpc
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.pages import page_tokens
from feedchat_runtime.redis_client import RedisClient, connect_any
from feedchat_runtime.replicas import ReplicaAcks
from feedchat_runtime.server import ServiceHost
from feedchat_runtime.snowflake import WorkerIdClaim

REGISTRY_NAME = "feed"


@dataclass
class FeedApp:
    """A built (not yet started) feed_svc process; tests drive it in-process."""

    host: ServiceHost
    feed: Feed
    store: FeedStore
    pool: FanoutPool
    hub: LiveHub
    redis: RedisClient


async def build(
    config: FeedConfig,
    authors: AuthorDirectory | None = None,
    on_batch: BatchHook | None = None,
) -> FeedApp:
    """Open the etcd session, claim a Snowflake worker id, wire everything, bind the port.

    ``authors`` replaces the account_svc-backed directory (tests); ``on_batch`` is passed
    to the fanout workers (tests pause a worker mid-job with it).
    """
    host = ServiceHost(config, REGISTRY_NAME)
    await host.open()
    try:
        db = await open_records(config.postgres_url, config.postgres_pool_size)
    except BaseException:
        await host.session.close(revoke=True)
        raise
    host.on_stop(db.close)
    host.dependencies.add("postgres", db.ping)
    claim = WorkerIdClaim(host.session)
    await claim.acquire()
    redis = connect_any(config.redis_url)
    host.dependencies.add("redis", redis.ping)
    store = FeedStore.over(redis, FeedRecords(db), ReplicaAcks.from_config(config))
    directory = ServiceDirectory(host.session, config, host.authority, REGISTRY_NAME)
    if authors is None:
        authors = AccountAuthors(directory, ttl=config.author_cache_ttl)
    feed = Feed(config, store, authors, claim.generator(), page_tokens(config))
    hub = LiveHub(redis)
    await hub.start()
    await store.queue.ensure_group()  # also without local workers: queue stats need the group
    pool = FanoutPool(
        store,
        FanoutSettings.from_config(config),
        f"{config.instance}-fanout",
        config.fanout_workers,
        on_batch,
    )
    await pool.start()
    servicer = FeedServicer(feed, hub, host.draining)

    def add_services(server: grpc.aio.Server) -> Sequence[str]:
        feed_pb2_grpc.add_FeedServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    stream_feed = f"/{SERVICE_NAME}/StreamFeed"
    host.build(
        add_services,
        AuthPolicy(
            service_only=SERVICE_ONLY,
            stream_limits={stream_feed: config.max_streams_per_user},
        ),
    )

    async def close_redis() -> None:
        await redis.aclose()

    async def stop_rebuilds() -> None:
        await asyncio.wait_for(feed.timeline.wait_rebuilds(), timeout=config.grace)

    async def sweep() -> None:
        """Forget streams that ended without a trace (their process died)."""
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):
                await store.timelines.sweep_streaming(feed.clock())

    host.background(sweep(), "feed-streaming-sweep")
    host.on_stop(close_redis)
    host.on_stop(directory.close)
    host.on_stop(hub.stop)
    host.on_stop(pool.stop)
    host.on_stop(stop_rebuilds)
    return FeedApp(host, feed, store, pool, hub, redis)


async def serve(config: FeedConfig) -> None:
    app = await build(config)
    await app.host.run()
