"""The hybrid strategy: chunked fanout to active followers, celebrities pulled at read
time, inactive followers skipped and their feed rebuilt (complete at once) on return."""

from __future__ import annotations

import asyncio

from feed_svc.keys import feed_key
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_runtime.replies import text
from tests.feed_svc.conftest import StartSystem, System, fanout_done
from tests.waiting import eventually


async def cached_ids(system: System, user: int) -> list[int]:
    members = await system.feed_app.redis.zrange(feed_key(user), 0, -1)
    return [int(text(m).split(":")[0]) for m in members]


async def make_active(system: System, users: list[int]) -> None:
    """Mark many followers active the way a feed read does (without 100 RPCs)."""
    now = system.feed_app.feed.clock()
    for user in users:
        await system.feed_app.store.timelines.touch_seen(user, now)


async def test_fanout_splits_into_chunks_and_reaches_every_active_follower(
    system: System,
) -> None:
    author = await system.sign_up()
    fans = list(range(5000, 5095))  # 95 followers: 3 jobs of at most 40, batches of 10
    for fan in fans:
        await system.feed_app.store.graph.follow(fan, author.user_id)
    await make_active(system, fans)
    post = await author.post("to everyone")
    status = await fanout_done(system, post.post_id)
    assert (
        status.state,
        status.followers_total,
        status.followers_done,
        status.followers_pending,
        status.followers_skipped_inactive,
    ) == (pb.FANOUT_STATE_DONE, 95, 95, 0, 0)
    assert status.lag_ms >= 0
    for fan in fans:
        assert await cached_ids(system, fan) == [post.post_id]


async def test_celebrity_posts_are_pulled_at_read_time(start_system: StartSystem) -> None:
    system = await start_system(celebrity_threshold=4)
    star, regular = await system.sign_up("star"), await system.sign_up("regular")
    readers = [await system.sign_up() for _ in range(4)]
    await system.reader(777).follow(star.user_id)  # star: 5 followers, regular: 4
    for reader in readers:
        await reader.follow(star.user_id)
        await reader.follow(regular.user_id)
        await reader.feed()
    await system.feed_app.feed.timeline.wait_rebuilds()
    early = await regular.post("before")
    await fanout_done(system, early.post_id)
    celebrity_post = await star.post("hello fans")
    late = await regular.post("after")
    await fanout_done(system, late.post_id)
    status = await fanout_done(system, celebrity_post.post_id)
    assert status.state == pb.FANOUT_STATE_PULLED_AT_READ
    for reader in readers:
        assert await cached_ids(system, reader.user_id) == [early.post_id, late.post_id]
        page = await reader.feed()
        assert [p.post_id for p in page.posts] == [
            late.post_id,
            celebrity_post.post_id,
            early.post_id,
        ]
        assert page.posts[1].author.username == "star"


async def test_inactive_followers_are_skipped_and_rebuilt_complete_on_return(
    start_system: StartSystem,
) -> None:
    system = await start_system(inactive_after=1.0)
    author, other = await system.sign_up(), await system.sign_up()
    reader = await system.sign_up()
    await reader.follow(author.user_id)
    await reader.follow(other.user_id)
    await reader.feed()
    await system.feed_app.feed.timeline.wait_rebuilds()
    first = (await author.post("while active")).post_id
    await fanout_done(system, first)
    assert await cached_ids(system, reader.user_id) == [first]

    await asyncio.sleep(1.1)  # the reader goes quiet for longer than inactive_after
    missed = []
    for i in range(12):
        writer = author if i % 2 else other
        post = await writer.post(f"while away {i}")
        status = await fanout_done(system, post.post_id)
        assert (status.followers_total, status.followers_skipped_inactive) == (1, 1)
        missed.append(post.post_id)
    assert await cached_ids(system, reader.user_id) == [first]  # nothing was written

    page = await reader.feed(10)  # the first read back is complete at once
    assert [p.post_id for p in page.posts] == missed[::-1][:10]
    rest = await reader.feed(10, page.next_page_token)
    assert [p.post_id for p in rest.posts] == [missed[1], missed[0], first]

    async def rebuilt() -> bool:
        return await cached_ids(system, reader.user_id) == [first, *missed]

    await eventually(rebuilt, what="the returning reader's cache rebuilt")
    assert not await system.feed_app.redis.exists(f"feed:{{u{reader.user_id}}}:stale")
    # Active again: the next post is fanned out to the reader, not skipped.
    again = await author.post("welcome back")
    status = await fanout_done(system, again.post_id)
    assert status.followers_skipped_inactive == 0
    assert (await cached_ids(system, reader.user_id))[-1] == again.post_id


async def test_a_new_reader_sees_a_complete_feed_before_any_cache_exists(
    system: System,
) -> None:
    authors = [await system.sign_up() for _ in range(4)]
    posted = []
    for i in range(3):
        for author in authors:
            posted.append((await author.post(f"p{i}")).post_id)
    reader = await system.sign_up()
    for author in authors:
        await reader.follow(author.user_id)
    assert await system.feed_app.store.timelines.last_seen(reader.user_id) is None
    page = await reader.feed(5)
    assert [p.post_id for p in page.posts] == sorted(posted, reverse=True)[:5]
    assert await reader.feed_ids(page_size=5) == sorted(posted, reverse=True)
