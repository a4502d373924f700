"""The exact merge behind every feed read, checked against a brute-force answer."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from feed_svc.keys import entry, pad
from feed_svc.records import FeedRecords, open_records
from feed_svc.store import FeedStore
from feed_svc.store_timelines import IdList
from feed_svc.timeline import FeedEntry, Source, merge_newest
from feedchat_runtime.redis_client import RedisClient, connect_any


@pytest.fixture
async def store(redis: RedisClient, redis_url: str, database_url: str) -> AsyncIterator[FeedStore]:
    db = await open_records(database_url, 2)
    client = connect_any(redis_url)
    yield FeedStore.over(client, FeedRecords(db))
    await client.aclose()
    await db.close()


async def test_merge_is_exact_for_few_and_many_sources(store: FeedStore) -> None:
    rng = random.Random(7)
    truth: list[FeedEntry] = []
    sources: list[Source] = []
    base = 2**60  # Snowflake-sized ids, far beyond float precision
    pipe = store.redis.pipeline(transaction=False)
    pool = rng.sample(range(base, base + 5000), 5000)  # post ids are unique
    for author in range(1, 81):
        count = rng.choice([0, 1, 3, 30, 120])
        ids, pool = pool[:count], pool[count:]
        posts = IdList.posts(author)
        if ids:
            pipe.zadd(posts.key, {pad(i): 0 for i in ids})
        sources.append(Source(posts))
        truth += [FeedEntry(i, author) for i in ids]
    cache_ids = rng.sample(truth, 200)  # a cache duplicating some authors' posts
    cache = IdList.feed(1000)
    pipe.zadd(cache.key, {entry(e.post_id, e.author_id): 0 for e in cache_ids})
    await pipe.execute()
    sources.append(Source(cache, primary=True))
    truth.sort(reverse=True)
    for upper, lower, n in [
        (None, None, 20),
        (base + 2500, None, 50),
        (None, base + 4000, 500),
        (base + 3000, base + 1000, 1),
        (base + 10, None, 20),
    ]:
        expected = [
            e
            for e in truth
            if (upper is None or e.post_id < upper) and (lower is None or e.post_id >= lower)
        ][:n]
        in_cache = set(cache_ids)
        for picked in (sources[:5] + sources[-1:], sources[:40], sources):
            authors = {s.ids.author for s in picked}
            cached = None in authors
            want = [
                e
                for e in truth
                if (e.author_id in authors or (cached and e in in_cache))
                and (upper is None or e.post_id < upper)
                and (lower is None or e.post_id >= lower)
            ][:n]
            assert await merge_newest(store, picked, upper, lower, n, script_max=0) == want
            assert await merge_newest(store, picked, upper, lower, n, script_max=1000) == want
        assert await merge_newest(store, sources, upper, lower, n) == expected
