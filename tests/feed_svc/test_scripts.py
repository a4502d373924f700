"""Each of feed's Lua scripts called directly (through the one loader, on one node and on
a cluster): what it writes and answers, apart from the store around it."""

from __future__ import annotations

from typing import Any

import pytest

from feed_svc import scripts
from feed_svc.keys import (
    GROUP,
    JOBS_KEY,
    LANDED_KEY,
    bucket_key,
    entry,
    feed_key,
    floor_key,
    pad,
    progress_key,
    user_posts_key,
)
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from tests.conftest import run_on_both_topologies

READER, AUTHOR, NOW = 5, 9, 1_700_000_000_000


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_on_both_topologies(metafunc)


@pytest.fixture
def lua(redis: RedisClient) -> LuaScripts:
    return LuaScripts(redis, scripts.SOURCES)


async def _feed(redis: RedisClient, user: int) -> list[str]:
    return [text(m) for m in await redis.zrange(feed_key(user), 0, -1)]


async def _column(redis: RedisClient, stream: str, name: str) -> list[str]:
    """One field of every entry of ``stream``, oldest first."""
    rows: Any = await redis.xrange(stream)
    return [text(fields[name.encode()]) for _, fields in rows]


async def _fields(redis: RedisClient, key: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in (await redis.hgetall(key)).items()}


async def test_take_token_spends_the_burst_then_says_when_the_next_token_comes(
    lua: LuaScripts,
) -> None:
    key = [bucket_key(AUTHOR)]
    assert await lua.call("take_token", key, [1, 2, NOW]) == [1, 0]
    assert await lua.call("take_token", key, [1, 2, NOW]) == [1, 0]
    assert await lua.call("take_token", key, [1, 2, NOW]) == [0, 1000]
    assert await lua.call("take_token", key, [1, 2, NOW + 1000]) == [1, 0]


async def test_fanout_insert_adds_an_entry_once_and_keeps_the_cap(
    lua: LuaScripts, redis: RedisClient
) -> None:
    keys = [feed_key(READER)]
    for post in (1, 2, 3):
        assert await lua.call("fanout_insert", keys, [entry(post, AUTHOR), 2, ""]) == 1
    await lua.call("fanout_insert", keys, [entry(3, AUTHOR), 2, ""])
    assert await _feed(redis, READER) == [entry(2, AUTHOR), entry(3, AUTHOR)]


async def test_merge_entries_adds_caps_and_sets_the_floor(
    lua: LuaScripts, redis: RedisClient
) -> None:
    keys = [feed_key(READER), floor_key(READER)]
    members = [entry(p, AUTHOR) for p in (4, 1, 3, 2)]
    assert await lua.call("merge_entries", keys, [3, pad(2), *members]) == 3
    assert await _feed(redis, READER) == [entry(p, AUTHOR) for p in (2, 3, 4)]
    assert text(await redis.get(floor_key(READER))) == pad(2)
    assert await lua.call("merge_entries", keys, [3, ""]) == 3  # the floor stays
    assert text(await redis.get(floor_key(READER))) == pad(2)


async def test_remove_entries_drops_an_authors_entries_and_raises_a_full_caches_floor(
    lua: LuaScripts, redis: RedisClient
) -> None:
    keys = [feed_key(READER), floor_key(READER)]
    await lua.call("merge_entries", keys, [3, "", entry(1, 7), entry(2, AUTHOR), entry(3, 7)])
    assert await lua.call("remove_entries", keys, [3, f":{AUTHOR}"]) == 1
    assert await _feed(redis, READER) == [entry(1, 7), entry(3, 7)]
    # the cache was full: it is complete from its oldest entry only, never lower
    assert text(await redis.get(floor_key(READER))) == pad(1)
    assert await lua.call("remove_entries", keys, [3, "", entry(3, 7)]) == 1
    assert await lua.call("remove_entries", [feed_key(1), floor_key(1)], [3, ":7"]) == 0


async def _job(redis: RedisClient, fields: dict[str, str]) -> str:
    await redis.xgroup_create(JOBS_KEY, GROUP, id="0", mkstream=True)
    job_id = text(await redis.xadd(JOBS_KEY, fields))  # type: ignore[arg-type]
    await redis.xreadgroup(GROUP, "w1", {JOBS_KEY: ">"}, count=1)
    return job_id


async def test_split_job_replaces_a_job_by_its_chunks_once(
    lua: LuaScripts, redis: RedisClient
) -> None:
    job = await _job(redis, {"kind": "split", "post": "1"})
    keys = [JOBS_KEY, progress_key(1)]
    chunks = ["1", str(AUTHOR), "0", "40", "1", str(AUTHOR), "40", "80"]
    assert await lua.call("split_job", keys, [GROUP, job, 80, NOW, *chunks]) == 1
    assert await lua.call("split_job", keys, [GROUP, job, 80, NOW, *chunks]) == 0
    assert await _column(redis, JOBS_KEY, "kind") == ["chunk", "chunk"]
    assert await _fields(redis, progress_key(1)) == {"total": "80", "chunks": "2"}


async def test_ack_chunk_counts_a_chunk_once_and_logs_the_post_as_landed(
    lua: LuaScripts, redis: RedisClient
) -> None:
    job = await _job(redis, {"kind": "chunk"})
    await redis.hset(progress_key(1), mapping={"chunks": 1, "total": 3})
    keys = [JOBS_KEY, progress_key(1), LANDED_KEY]
    args = [GROUP, job, 2, 1, NOW, entry(1, AUTHOR), 0, "feed:control"]
    assert await lua.call("ack_chunk", keys, args) == 1
    assert await lua.call("ack_chunk", keys, args) == 0
    progress = await _fields(redis, progress_key(1))
    assert (progress["written"], progress["skipped"], progress["finished_ms"]) == (
        "2",
        "1",
        str(NOW),
    )
    assert await _column(redis, LANDED_KEY, "e") == [entry(1, AUTHOR)]


async def test_queue_post_queues_a_fanout_and_an_alerts_job_only_once(
    lua: LuaScripts, redis: RedisClient
) -> None:
    keys = [progress_key(1), JOBS_KEY, LANDED_KEY]
    args = [NOW, "whole", 3, "1", 60, entry(1, AUTHOR), 0, "feed:control", "feed:a:9"]
    job = ["post", "1", "author", str(AUTHOR)]
    assert await lua.call("queue_post", keys, [*args, *job]) == 1
    assert await lua.call("queue_post", keys, [*args, *job]) == 0
    assert await _column(redis, JOBS_KEY, "kind") == ["chunk", "alerts"]
    assert (await _fields(redis, progress_key(1)))["total"] == "3"
    assert await redis.xlen(LANDED_KEY) == 0  # logged when its chunk is acknowledged


async def test_queue_post_logs_a_celebritys_post_as_landed_at_once(
    lua: LuaScripts, redis: RedisClient
) -> None:
    keys = [progress_key(2), JOBS_KEY, LANDED_KEY]
    args = [NOW, "pulled", 10**6, "0", 60, entry(2, AUTHOR), 0, "feed:control", "feed:a:9"]
    assert await lua.call("queue_post", keys, [*args, "post", "2"]) == 1
    assert not await redis.exists(JOBS_KEY)
    assert (await _fields(redis, progress_key(2)))["state"] == "pulled"
    assert await redis.xlen(LANDED_KEY) == 1


async def test_resume_state_reads_the_log_after_a_position_and_the_held_chunks(
    lua: LuaScripts, redis: RedisClient
) -> None:
    first = text(await redis.xadd(LANDED_KEY, {"e": entry(1, AUTHOR)}))
    second = text(await redis.xadd(LANDED_KEY, {"e": entry(2, AUTHOR)}))
    await _job(redis, {"kind": "chunk", "post": "3", "author": str(AUTHOR)})
    mark, landed, more, pending = await lua.call(
        "resume_state", [LANDED_KEY, JOBS_KEY], [GROUP, first, 10, 10]
    )
    assert text(mark) == second
    assert [text(m) for m in landed] == [entry(2, AUTHOR)]
    assert (more, [text(p) for p in pending]) == (0, [f"3:{AUTHOR}"])
    _, _, more, _ = await lua.call("resume_state", [LANDED_KEY, JOBS_KEY], [GROUP, "0-0", 1, 10])
    assert more == 1


async def test_merge_newest_merges_lists_newest_first_without_repeats(
    lua: LuaScripts, redis: RedisClient
) -> None:
    cached = feed_key(READER)
    await redis.zadd(cached, {entry(5, 7): 0, entry(3, AUTHOR): 0, entry(1, 7): 0})
    posts = user_posts_key(READER)  # an author's own list: bare ids, same slot
    await redis.zadd(posts, {pad(4): 0, pad(3): 0})
    merged = await lua.call("merge_newest", [cached, posts], ["+", "-", 3, "", str(AUTHOR)])
    assert [text(m) for m in merged] == [entry(5, 7), entry(4, AUTHOR), entry(3, AUTHOR)]
