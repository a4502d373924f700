"""The Lua scripts on a real Redis: compare-and-set sweeps, device aggregation."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from feedchat_runtime.redis_client import connect_any, open_pubsub
from presence_svc.store import SWEEP_BUCKETS, Beat, PresenceStore, channel, sweep_key_of


async def test_concurrent_sweeps_flip_and_publish_once(
    redis: aioredis.Redis, redis_url: str
) -> None:
    listener = await open_pubsub(redis)
    await listener.subscribe(channel(7))
    await listener.get_message(timeout=5.0)
    clients = [connect_any(redis_url) for _ in range(4)]
    stores = [PresenceStore(c, max_devices=4) for c in clients]
    try:
        await stores[0].heartbeat(Beat(7, "dev-a", "online", 1_000, 2_000))
        assert (await listener.get_message(timeout=5.0))["data"] == b"7 online 1000 1000 1"
        bucket = 7 % SWEEP_BUCKETS
        assert await stores[0].due(bucket, 3_000, 10) == [7]
        results = await asyncio.gather(*(s.sweep(bucket, [7], 3_000) for s in stores))
        assert sorted(r[0].changed for r in results) == [False, False, False, True]
        message = await listener.get_message(timeout=5.0)
        assert message["data"] == b"7 offline 1000 3000 2"
        assert await listener.get_message(timeout=0.3) is None
        assert await redis.zscore(sweep_key_of(7), "7") is None  # dropped from the index
        [state] = await stores[0].states([7])
        assert (state.status, state.seen_ms, state.version) == ("offline", 1_000, 2)
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
        for client in clients:
            await client.aclose()


async def test_sweep_keeps_users_with_a_live_device(redis: aioredis.Redis) -> None:
    store = PresenceStore(redis, max_devices=4)
    await store.heartbeat(Beat(8, "old", "online", 1_000, 2_000))
    await store.heartbeat(Beat(8, "new", "away", 1_500, 9_000))
    [settled] = await store.sweep(8 % SWEEP_BUCKETS, [8], 3_000)
    # "old" expired, "new" is away and alive: the user becomes away, not offline.
    assert (settled.changed, settled.status, settled.latest_deadline_ms) == (True, "away", 9_000)
    assert await store.device_count(8) == 1
    assert await redis.zscore(sweep_key_of(8), "8") == 9_000
    assert await store.due(8 % SWEEP_BUCKETS, 3_000, 10) == []


async def test_heartbeat_after_a_sweep_brings_the_device_back(redis: aioredis.Redis) -> None:
    store = PresenceStore(redis, max_devices=4)
    await store.heartbeat(Beat(9, "dev", "online", 1_000, 2_000))
    await store.sweep(9 % SWEEP_BUCKETS, [9], 3_000)
    [back] = await store.heartbeats([Beat(9, "dev", "", 3_100, 4_100)])
    assert (back.changed, back.status, back.version) == (True, "online", 3)
    [again] = await store.heartbeats([Beat(9, "dev", "", 3_200, 4_200)])
    assert (again.changed, again.version) == (False, 3)
