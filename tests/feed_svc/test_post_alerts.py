"""Opt-in post alerts: feed_svc writes one ``feed_post`` entry per opted-in follower to
notify_svc's queue (``notify:queue``) when a post is created, celebrities included."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from feed_svc.fanout import FanoutSettings, FanoutWorker
from feed_svc.keys import JOBS_KEY
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_runtime.notify_queue import QUEUE_KEY
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.snowflake import timestamp_ms
from tests.feed_svc.conftest import Client, StartSystem, System, fanout_done
from tests.redis_reads import stream_entries
from tests.waiting import eventually


async def set_alerts(client: Client, author: int, enabled: bool = True) -> None:
    await client.stub.SetPostAlerts(
        pb.SetPostAlertsRequest(author_id=author, enabled=enabled), metadata=client.md
    )


async def list_alerts(client: Client) -> list[int]:
    reply = await client.stub.ListPostAlerts(pb.ListPostAlertsRequest(), metadata=client.md)
    return list(reply.author_ids)


async def alerts_for(redis: RedisClient, post_id: int) -> list[dict[str, str]]:
    """The notify:queue entries written for one post."""
    found = []
    for _, fields in await stream_entries(redis, QUEUE_KEY):
        entry = {k.decode(): v.decode() for k, v in fields.items()}
        if entry.get("message_id") == str(post_id):
            found.append(entry)
    return found


async def jobs_drained(system: System) -> None:
    """Wait until every fanout job (alert jobs included) is acknowledged and deleted."""
    redis = system.feed_app.redis

    async def empty() -> bool:
        return int(await redis.xlen(JOBS_KEY)) == 0

    await eventually(empty, what="fanout jobs drained")


async def test_opted_in_follower_gets_one_alert_with_the_contract_fields(
    system: System, redis: RedisClient
) -> None:
    author, fan, quiet = await system.sign_up(), await system.sign_up(), await system.sign_up()
    await fan.follow(author.user_id)
    await quiet.follow(author.user_id)
    await set_alerts(fan, author.user_id)
    assert await list_alerts(fan) == [author.user_id]
    assert await list_alerts(quiet) == []
    text = "x" * 150 + " long post"
    post = await author.post(text)
    await fanout_done(system, post.post_id)
    await jobs_drained(system)
    assert await alerts_for(redis, post.post_id) == [
        {
            "kind": "feed_post",
            "user_id": str(fan.user_id),
            "channel_id": str(author.user_id),
            "message_id": str(post.post_id),
            "sender_id": str(author.user_id),
            "preview": text[:140],
            "created_ms": str(timestamp_ms(post.post_id)),
        }
    ]


async def test_author_without_opted_in_followers_queues_no_alert_job(
    system: System, redis: RedisClient
) -> None:
    author, fan = await system.sign_up(), await system.sign_up()
    await fan.follow(author.user_id)
    assert await system.feed_app.store.graph.author_state(author.user_id) == (False, 1, 0)
    post = await author.post("nobody asked for alerts")
    await fanout_done(system, post.post_id)
    await jobs_drained(system)
    assert await alerts_for(redis, post.post_id) == []


async def test_celebrity_post_still_alerts_opted_in_followers(
    start_system: StartSystem, redis: RedisClient
) -> None:
    system = await start_system(celebrity_threshold=2)
    star = await system.sign_up()
    fans = [await system.sign_up() for _ in range(3)]
    for fan in fans:
        await fan.follow(star.user_id)
    await set_alerts(fans[0], star.user_id)
    await set_alerts(fans[2], star.user_id)
    post = await star.post("hello fans")
    status = await fanout_done(system, post.post_id)
    assert status.state == pb.FANOUT_STATE_PULLED_AT_READ
    await jobs_drained(system)
    recipients = sorted(int(e["user_id"]) for e in await alerts_for(redis, post.post_id))
    assert recipients == sorted([fans[0].user_id, fans[2].user_id])


async def test_alerts_are_written_in_batches_to_many_opted_in_followers(
    start_system: StartSystem, redis: RedisClient
) -> None:
    system = await start_system(fanout_batch=10)
    author = await system.sign_up()
    feed = system.feed_app.feed
    fans = list(range(9100, 9125))  # 25 opted-in followers: 3 batches of at most 10
    for fan in fans:
        await feed.follow(fan, author.user_id)
        await feed.set_post_alerts(fan, author.user_id, True)
    post = await author.post("to the alerted")
    await jobs_drained(system)
    recipients = [int(e["user_id"]) for e in await alerts_for(redis, post.post_id)]
    assert sorted(recipients) == fans


async def test_unfollow_stops_alerts(system: System, redis: RedisClient) -> None:
    author, fan = await system.sign_up(), await system.sign_up()
    await fan.follow(author.user_id)
    await set_alerts(fan, author.user_id)
    first = await author.post("first")
    await jobs_drained(system)
    assert len(await alerts_for(redis, first.post_id)) == 1
    assert await fan.unfollow(author.user_id)
    assert await list_alerts(fan) == []
    await fan.follow(author.user_id)  # following again does not bring the alerts back
    second = await author.post("second")
    await fanout_done(system, second.post_id)
    await jobs_drained(system)
    assert await alerts_for(redis, second.post_id) == []


async def test_turning_alerts_off_stops_them(system: System, redis: RedisClient) -> None:
    author, fan = await system.sign_up(), await system.sign_up()
    await fan.follow(author.user_id)
    await set_alerts(fan, author.user_id)
    await set_alerts(fan, author.user_id, enabled=False)
    assert await list_alerts(fan) == []
    post = await author.post("quiet")
    await fanout_done(system, post.post_id)
    await jobs_drained(system)
    assert await alerts_for(redis, post.post_id) == []


async def _refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = await error_details(caught.value)
    return caught.value.code(), details.reason


async def test_alerts_without_following_or_for_self_or_unknown_users_are_refused(
    system: System,
) -> None:
    author, fan = await system.sign_up(), await system.sign_up()
    assert await _refused(set_alerts(fan, author.user_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_FOLLOWING",
    )
    assert await _refused(set_alerts(fan, fan.user_id)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CANNOT_ALERT_SELF",
    )
    assert await _refused(set_alerts(fan, 987654321987)) == (
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
    )
    assert (await _refused(set_alerts(fan, 0)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert await list_alerts(fan) == []


async def test_alert_limit_per_user_is_enforced(start_system: StartSystem) -> None:
    system = await start_system(max_post_alerts=2)
    fan = await system.sign_up()
    authors = [await system.sign_up() for _ in range(3)]
    for author in authors:
        await fan.follow(author.user_id)
    await set_alerts(fan, authors[0].user_id)
    await set_alerts(fan, authors[1].user_id)
    await set_alerts(fan, authors[1].user_id)  # idempotent, not counted twice
    assert await _refused(set_alerts(fan, authors[2].user_id)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_POST_ALERTS",
    )
    assert await list_alerts(fan) == sorted([authors[0].user_id, authors[1].user_id])


async def test_alert_job_of_a_dead_worker_is_claimed_and_alerts_once(
    start_system: StartSystem, redis: RedisClient
) -> None:
    system = await start_system(fanout_workers=0, fanout_claim_idle=0.3)
    store = system.feed_app.store
    author, fan = await system.sign_up(), await system.sign_up()
    await fan.follow(author.user_id)
    await set_alerts(fan, author.user_id)
    post = await author.post("survives a crash")
    settings = FanoutSettings.from_config(system.config)
    taken = await store.queue.read_jobs("doomed", 10, 100)  # read, then "dies" without working
    assert sorted(job.kind for job in taken) == ["alerts", "chunk"]
    assert await alerts_for(redis, post.post_id) == []
    rescuer = FanoutWorker(store, settings, "rescuer")

    async def rescued() -> bool:
        await rescuer.step()
        return int(await redis.xlen(JOBS_KEY)) == 0

    await eventually(rescued, what="the dead worker's jobs claimed and done")
    assert [e["user_id"] for e in await alerts_for(redis, post.post_id)] == [str(fan.user_id)]
