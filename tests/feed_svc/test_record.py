"""PostgreSQL is the feed's record: the follow graph, post alerts settings and posts
survive a wiped Redis and restarted services (feeds are rebuilt from it), and a lost
PostgreSQL means NOT_SERVING and UNAVAILABLE with nothing half-written, then recovery
without a restart."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_local.embedded import EmbeddedServer, postgres_url
from feedchat_runtime.redis_client import RedisClient
from tests.feed_svc.conftest import (
    Client,
    StartSystem,
    System,
    fanout_done,
    service_metadata,
    user_metadata,
)
from tests.rpc_errors import failure
from tests.waiting import wait_until


async def _graph(system: System, user: int, followers: bool) -> list[int]:
    request = (
        pb.ListFollowersRequest(user_id=user)
        if followers
        else pb.ListFollowingRequest(user_id=user)
    )
    call = system.stub.ListFollowers if followers else system.stub.ListFollowing
    reply = await call(request, metadata=service_metadata())
    return list(reply.user_ids)


async def _user_posts(system: System, user: int) -> list[tuple[int, str]]:
    reply = await system.stub.ListUserPosts(
        pb.ListUserPostsRequest(user_id=user), metadata=user_metadata(user)
    )
    return [(p.post_id, p.text) for p in reply.posts]


async def test_graph_posts_and_feeds_survive_a_wiped_redis_and_restart(
    start_system: StartSystem, redis: RedisClient
) -> None:
    system = await start_system()
    author, other = await system.sign_up(), await system.sign_up()
    reader = await system.sign_up()
    assert await reader.follow(author.user_id) and await reader.follow(other.user_id)
    await other.follow(author.user_id)
    await reader.stub.SetPostAlerts(
        pb.SetPostAlertsRequest(author_id=author.user_id, enabled=True), metadata=reader.md
    )
    posts = [await author.post("first"), await other.post("second"), await author.post("third")]
    retried = await author.stub.CreatePost(
        pb.CreatePostRequest(text="once", request_id="r-1"), metadata=author.md
    )
    for post in [*posts, retried.post]:
        await fanout_done(system, post.post_id)
    before = await reader.feed_ids()
    assert before == [retried.post.post_id, *reversed([p.post_id for p in posts])]
    authored = await _user_posts(system, author.user_id)
    await system.feed_app.host.stop()
    await system.account_host.stop()
    await redis.flushall()

    again = await start_system()
    reader = Client(reader.user_id, again.stub)
    assert await _graph(again, reader.user_id, followers=False) == sorted(
        [author.user_id, other.user_id]
    )
    assert await _graph(again, author.user_id, followers=True) == sorted(
        [reader.user_id, other.user_id]
    )
    assert await _user_posts(again, author.user_id) == authored
    assert await reader.feed_ids() == before  # pulled from the record, cache rebuilt behind
    await again.feed_app.feed.timeline.wait_rebuilds()
    assert await reader.feed_ids() == before  # from the rebuilt cache
    assert await reader.follow(author.user_id) is False  # the follow is still recorded
    alerts = await reader.stub.ListPostAlerts(pb.ListPostAlertsRequest(), metadata=reader.md)
    assert list(alerts.author_ids) == [author.user_id]
    repeat = await again.stub.CreatePost(
        pb.CreatePostRequest(text="once", request_id="r-1"),
        metadata=Client(author.user_id, again.stub).md,
    )
    assert repeat.post.post_id == retried.post.post_id


async def _health_is(system: System, status: int) -> bool:
    stub = health_pb2_grpc.HealthStub(system.channels[0])
    reply = await stub.Check(health_pb2.HealthCheckRequest())
    return bool(reply.status == status)


async def test_lost_postgres_means_not_serving_and_unavailable_then_recovery(
    start_system: StartSystem, private_postgres: EmbeddedServer
) -> None:
    system = await start_system(postgres_url=postgres_url(private_postgres), health_interval=0.1)
    author, reader = await system.sign_up(), await system.sign_up()
    kept = await author.post("kept")
    private_postgres.stop()
    await wait_until(
        lambda: _health_is(system, health_pb2.HealthCheckResponse.NOT_SERVING),
        what="NOT_SERVING",
    )
    for call in (
        reader.stub.Follow(pb.FollowRequest(user_id=author.user_id), metadata=reader.md),
        author.stub.CreatePost(pb.CreatePostRequest(text="lost"), metadata=author.md),
    ):
        details = await failure(call)
        assert details.code.name == "UNAVAILABLE"
        assert details.reason == "DATABASE_UNAVAILABLE"

    private_postgres.start()
    await wait_until(
        lambda: _health_is(system, health_pb2.HealthCheckResponse.SERVING), what="SERVING"
    )
    assert await _graph(system, reader.user_id, followers=False) == []
    assert await _user_posts(system, author.user_id) == [(kept.post_id, "kept")]
    assert await reader.follow(author.user_id) is True  # nothing of the failed one was left
    again = await author.post("after")
    assert [p for p, _ in await _user_posts(system, author.user_id)] == [
        again.post_id,
        kept.post_id,
    ]


async def test_a_read_right_after_redis_is_wiped_gets_the_whole_feed(
    system: System, redis: RedisClient
) -> None:
    author, reader = await system.sign_up(), await system.sign_up()
    await reader.follow(author.user_id)
    await reader.feed()
    posts = [await author.post(f"post {i}") for i in range(3)]
    for post in posts:
        await fanout_done(system, post.post_id)
    before = await reader.feed_ids()
    assert before == [p.post_id for p in reversed(posts)]

    await redis.flushall()  # live: the services keep running

    assert await reader.feed_ids() == before  # at once, not an emptied cache
    assert await _graph(system, reader.user_id, followers=False) == [author.user_id]
    assert await _graph(system, author.user_id, followers=True) == [reader.user_id]
