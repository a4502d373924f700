"""Lua scripts by SHA on either topology: a node that lost its scripts (a restart, a
promoted replica) gets them loaded again, for a single call, for a pipeline (all or error)
and for a pipeline of independent calls (each its own reply); and the slot grouping keeps
every script call in one slot on a cluster."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient, slot_groups
from feedchat_runtime.replicas import queue_wait
from tests.conftest import run_on_both_topologies

ADD = """
-- KEYS zsets; ARGV[1] member. Adds it to each; returns #KEYS.
for _, key in ipairs(KEYS) do redis.call('ZADD', key, 0, ARGV[1]) end
return #KEYS
"""

COUNT = """
-- KEYS[1] counter. Adds one; returns the new count.
return redis.call('INCR', KEYS[1])
"""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_on_both_topologies(metafunc)


async def test_a_call_after_the_scripts_were_flushed_loads_them_again(redis: RedisClient) -> None:
    scripts = LuaScripts(redis, {"add": ADD})
    assert await scripts.call("add", ["t:{a}:1"], ["m"]) == 1
    await redis.script_flush()
    assert await scripts.call("add", ["t:{a}:1", "t:{a}:2"], ["n"]) == 2
    assert await redis.zrange("t:{a}:2", 0, -1) == [b"n"]


async def test_a_pipeline_of_calls_per_slot_group_reloads_and_writes_every_key(
    redis: RedisClient,
) -> None:
    scripts = LuaScripts(redis, {"add": ADD})
    keys = [f"t:{{u{user}}}:tl" for user in range(200)]
    groups = slot_groups(redis, keys)
    assert sorted(i for group in groups for i in group) == list(range(200))
    await redis.script_flush()

    def build(pipe: object) -> None:
        for group in groups:
            scripts.queue(pipe, "add", [keys[i] for i in group], ["x"])

    replies = await scripts.execute(build)
    assert sum(int(r) for r in replies) == 200
    for key in keys[::37]:
        assert await redis.zrange(key, 0, -1) == [b"x"]


async def test_a_pipeline_of_independent_calls_keeps_each_reply_and_runs_each_once(
    redis: RedisClient,
) -> None:
    scripts = LuaScripts(redis, {"add": ADD, "count": COUNT})
    await redis.set("t:{b}:string", "not a zset")
    await redis.script_flush()

    def queue(pipe: object) -> None:
        scripts.queue(pipe, "count", ["t:{a}:n"], [])
        scripts.queue(pipe, "add", ["t:{b}:string"], ["m"])
        queue_wait(redis, pipe, "t:{a}:n", 0, 0)

    counted, refused, waited = await scripts.pipeline(queue)
    assert counted == 1 and isinstance(refused, ResponseError) and int(waited) >= 0
    assert await redis.get("t:{a}:n") == b"1"  # sent again after NOSCRIPT, run once
