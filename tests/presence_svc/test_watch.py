"""Watch lists: the default list, limits, and subscriptions that follow the watchers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from feedchat.presence.v1 import presence_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_runtime.redis_client import RedisClient
from presence_svc.store import Beat, PresenceStore, channel
from tests.presence_svc.conftest import Cluster
from tests.waiting import eventually

Start = Callable[..., Awaitable[Cluster]]
ONLINE, AWAY, OFFLINE = (
    pb.PRESENCE_STATUS_ONLINE,
    pb.PRESENCE_STATUS_AWAY,
    pb.PRESENCE_STATUS_OFFLINE,
)


async def _subscribers(redis: RedisClient, user_id: int) -> int:
    if isinstance(redis, RedisCluster):  # every node: the hub's connection may be on any
        [(_, count)] = await redis.pubsub_numsub(
            channel(user_id), target_nodes=RedisCluster.ALL_NODES
        )
    else:
        [(_, count)] = await redis.pubsub_numsub(channel(user_id))
    return int(count)


async def test_stream_starts_watching_the_accounts_its_user_follows(start_cluster: Start) -> None:
    cluster = await start_cluster()
    online = await cluster.connect(1, 3)
    await online.snapshot()
    cluster.graph[1] = [3, 2]
    watcher = await cluster.connect(0, 1)
    first = await watcher.snapshot()
    assert [(p.user_id, p.status) for p in first.presences] == [(2, OFFLINE), (3, ONLINE)]
    assert (first.session.watch_count, first.session.heartbeat_interval_ms) == (2, 300)
    await cluster.connect(1, 2)
    assert (await watcher.change()).user_id == 2


async def test_replace_and_unwatch_change_whose_events_arrive(start_cluster: Start) -> None:
    cluster = await start_cluster()
    cluster.graph[1] = [2]
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch([3], replace=True)
    assert [p.user_id for p in (await watcher.snapshot()).presences] == [3]
    await cluster.connect(1, 2)  # no longer watched
    await cluster.connect(1, 3)
    assert (await watcher.change()).user_id == 3
    watcher.unwatch([3])
    watcher.watch([4])
    assert [p.user_id for p in (await watcher.snapshot()).presences] == [4]
    four = await cluster.connect(0, 4)
    await four.snapshot()
    await cluster.connect(1, 5)
    change = await watcher.change()
    assert (change.user_id, change.status) == (4, ONLINE)


async def test_instance_subscribes_only_while_its_streams_watch(
    start_cluster: Start, redis: aioredis.Redis
) -> None:
    cluster = await start_cluster()
    first = await cluster.connect(0, 1)
    await first.snapshot()
    second = await cluster.connect(0, 2)
    await second.snapshot()
    first.watch([9])
    await first.snapshot()
    second.watch([9])
    await second.snapshot()
    hub = cluster.apps[0].hub
    assert await _subscribers(redis, 9) == 1  # one subscription for both streams
    assert cluster.apps[1].hub.subscribed_users == 0
    await first.close()
    assert await _subscribers(redis, 9) == 1
    second.unwatch([9])
    await eventually(lambda: _is_zero(redis, 9))
    assert hub.subscribed_users == 0
    second.watch([9])
    await second.snapshot()
    assert await _subscribers(redis, 9) == 1
    await second.vanish()
    await eventually(lambda: _is_zero(redis, 9))


async def test_watch_list_is_bounded(start_cluster: Start) -> None:
    cluster = await start_cluster(max_watch=3)
    cluster.graph[1] = [10, 11, 12, 13, 14]
    watcher = await cluster.connect(0, 1)
    assert len((await watcher.snapshot()).presences) == 3  # the default list is clipped
    watcher.watch([20])
    try:
        await watcher.read()
        raise AssertionError("a fourth watched user was accepted")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = await error_details(err)
        assert details.reason == "WATCH_LIST_TOO_LONG"
        assert details.field_violations[0][0] == "watch.user_ids"


async def test_snapshot_comes_before_changes_and_no_change_is_lost(start_cluster: Start) -> None:
    cluster = await start_cluster()
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    devices = [await cluster.connect(1, uid) for uid in range(100, 150)]
    watcher.watch(list(range(100, 150)))
    for device in devices:
        device.heartbeat(AWAY)
    snapshot = await watcher.snapshot()
    versions = {p.user_id: p.version for p in snapshot.presences}
    # Every user ends at version 2 (online, then away): what the snapshot missed, a change
    # brings, and nothing the snapshot covered comes again.
    while any(v < 2 for v in versions.values()):
        change = await watcher.change()
        assert change.version == versions[change.user_id] + 1
        versions[change.user_id] = change.version
    assert set(versions.values()) == {2}


async def _is_zero(redis: RedisClient, user_id: int) -> bool:
    return await _subscribers(redis, user_id) == 0


# One node only: the outage is made with CLIENT KILL and maxclients on that node. On a
# cluster the outage is a dead master: tests/presence_svc/test_failover.py.
@pytest.mark.parametrize("redis_url", ["node"], indirect=True)
async def test_change_during_pubsub_outage_reaches_watcher_after_reconnect(
    start_cluster: Start, redis: aioredis.Redis
) -> None:
    cluster = await start_cluster()
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch([2])
    await watcher.snapshot()
    # Cut the pub/sub connections and keep them from coming back (no new clients), make
    # the transition through a connection that is already open, then let them reconnect.
    original = (await redis.config_get("maxclients"))["maxclients"]
    assert original is not None
    clients = int((await redis.info("clients"))["connected_clients"])
    await redis.config_set("maxclients", clients)
    try:
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        store = PresenceStore(redis, max_devices=4)
        now = int(time.time() * 1000)
        await store.heartbeat(Beat(2, "outside-device", "online", now, now + 60_000))
    finally:
        await redis.config_set("maxclients", original)
    change = await watcher.change(timeout=5.0)
    assert (change.user_id, change.status, change.version) == (2, ONLINE, 1)
