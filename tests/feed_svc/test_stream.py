"""StreamFeed: live items without polling (fanned out and celebrity posts), resume,
acks, refresh, a bounded queue, and a clean end when the server drains."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from feed_svc.stream import FeedStream, Subscribed
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_runtime.errors import ResourceExhausted
from tests.feed_svc.conftest import Client, StartSystem, System, fanout_done

Req = pb.StreamFeedRequest


def subscribe(after: int = 0) -> pb.StreamFeedRequest:
    return Req(subscribe=Req.Subscribe(resume_after_post_id=after))


async def read(call: Any, timeout: float = 5.0) -> pb.StreamFeedResponse:
    frame = await asyncio.wait_for(call.read(), timeout)
    assert frame is not grpc.aio.EOF, "stream ended"
    return frame  # type: ignore[no-any-return]


async def open_stream(
    reader: Client, after: int = 0
) -> tuple[Any, list[int], pb.StreamFeedResponse]:
    """Subscribe; the replayed item ids and the subscribed frame."""
    call = reader.stub.StreamFeed(metadata=reader.md)
    await call.write(subscribe(after))
    replayed: list[int] = []
    while True:
        frame = await read(call)
        if frame.WhichOneof("frame") == "subscribed":
            return call, replayed, frame
        replayed.append(frame.item.post_id)


async def follower_of(system: System, *authors: Client) -> Client:
    reader = await system.sign_up()
    for author in authors:
        await reader.follow(author.user_id)
    await reader.feed()
    await system.feed_app.feed.timeline.wait_rebuilds()
    return reader


async def test_stream_delivers_new_posts_without_polling(system: System) -> None:
    author = await system.sign_up("author")
    reader = await follower_of(system, author)
    call, replayed, subscribed = await open_stream(reader)
    assert (replayed, subscribed.subscribed.resumed_count) == ([], 0)
    post = await author.post("live!")
    frame = await read(call)
    assert frame.item.post_id == post.post_id
    assert frame.item.author.username == "author"
    call.cancel()


async def test_stream_delivers_celebrity_posts(start_system: StartSystem) -> None:
    system = await start_system(celebrity_threshold=2)
    star = await system.sign_up("star")
    for fan in (501, 502):
        await system.reader(fan).follow(star.user_id)
    reader = await follower_of(system, star)  # third follower: star is over the threshold
    call, _, _ = await open_stream(reader)
    post = await star.post("to my many fans")
    assert (await fanout_done(system, post.post_id)).state == pb.FANOUT_STATE_PULLED_AT_READ
    assert (await read(call)).item.post_id == post.post_id
    assert [p.post_id for p in (await reader.feed()).posts] == [post.post_id]
    call.cancel()


# One node only: on the Redis Cluster a post published while the stream's resync has sent
# its SUBSCRIBE but the cluster has not yet confirmed it can be missed (the hub does not
# wait for the confirmation; presence's hub does). Known gap, see docs/scale-out.md.
@pytest.mark.parametrize("redis_url", ["node"], indirect=True)
async def test_streams_learn_of_follows_and_promotions_while_open(
    start_system: StartSystem,
) -> None:
    system = await start_system(celebrity_threshold=2)
    star, rising = await system.sign_up(), await system.sign_up()
    for fan in (601, 602, 603):
        await system.reader(fan).follow(star.user_id)
    await star.post("a first post makes star a celebrity")
    reader = await follower_of(system, rising)
    call, _, _ = await open_stream(reader)
    first = await rising.post("still ordinary")
    assert (await read(call)).item.post_id == first.post_id
    await reader.follow(star.user_id)  # a celebrity followed while the stream is open
    for fan in (604, 605):  # and rising crosses the threshold while it is open
        await system.reader(fan).follow(rising.user_id)
    promoted = await rising.post("now famous")
    from_star = await star.post("hello new fan")
    got = {(await read(call)).item.post_id for _ in range(2)}
    assert got == {promoted.post_id, from_star.post_id}
    call.cancel()


async def test_reconnecting_stream_gets_what_it_missed_first(system: System) -> None:
    author = await system.sign_up()
    reader = await follower_of(system, author)
    call, _, _ = await open_stream(reader)
    seen = await author.post("seen")
    assert (await read(call)).item.post_id == seen.post_id
    call.cancel()
    missed = [(await author.post(f"missed {i}")).post_id for i in range(3)]
    await fanout_done(system, missed[-1])
    call, replayed, subscribed = await open_stream(reader, after=seen.post_id)
    assert replayed == missed  # oldest first, before the subscribed frame
    assert (subscribed.subscribed.resumed_count, subscribed.subscribed.resume_truncated) == (
        3,
        False,
    )
    live = await author.post("live again")
    assert (await read(call)).item.post_id == live.post_id
    call.cancel()


async def test_resume_replays_at_most_the_limit(start_system: StartSystem) -> None:
    system = await start_system(stream_resume_max=2)
    author = await system.sign_up()
    reader = await follower_of(system, author)
    start = await author.post("start")
    missed = [(await author.post(f"missed {i}")).post_id for i in range(4)]
    await fanout_done(system, missed[-1])
    call, replayed, subscribed = await open_stream(reader, after=start.post_id)
    assert replayed == missed[-2:]
    assert subscribed.subscribed.resume_truncated
    call.cancel()


async def test_acknowledged_position_is_the_default_resume_point(system: System) -> None:
    author = await system.sign_up()
    reader = await follower_of(system, author)
    call, _, _ = await open_stream(reader)
    seen = await author.post("seen")
    assert (await read(call)).item.post_id == seen.post_id
    await call.write(Req(ack=Req.Ack(post_id=seen.post_id)))
    await call.write(Req(refresh=Req.Refresh(page_size=5)))  # also proves the ack was read
    refreshed = await read(call)
    assert [p.post_id for p in refreshed.refreshed.posts] == [seen.post_id]
    call.cancel()
    missed = await author.post("missed")
    await fanout_done(system, missed.post_id)
    call, replayed, _ = await open_stream(reader)
    assert replayed == [missed.post_id]
    call.cancel()


async def test_first_frame_must_be_a_subscribe(system: System) -> None:
    reader = await system.sign_up()
    call = reader.stub.StreamFeed(metadata=reader.md)
    await call.write(Req(ack=Req.Ack(post_id=1)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read(call)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SUBSCRIBE_FIRST")


async def test_stream_ends_cleanly_when_the_server_drains(system: System) -> None:
    reader = await system.sign_up()
    call, _, _ = await open_stream(reader)
    stopping = asyncio.create_task(system.feed_app.host.stop())
    assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await stopping


async def test_a_stream_that_falls_behind_is_cut_off(start_system: StartSystem) -> None:
    system = await start_system(stream_queue=8)
    author = await system.sign_up()
    reader = await follower_of(system, author)
    app = system.feed_app
    session = FeedStream(app.feed, app.hub, reader.user_id, asyncio.Event(), 8, 10, 60.0)
    await session.open(0)
    try:
        frames = await session.next_frames()
        assert frames is not None and isinstance(frames[0][0], Subscribed)
        for i in range(9):  # nobody takes frames off the queue meanwhile
            await fanout_done(system, (await author.post(f"p{i}")).post_id)
        with pytest.raises(ResourceExhausted) as caught:
            for _ in range(10):
                await asyncio.wait_for(session.next_frames(), 5)
        assert caught.value.reason == "STREAM_TOO_SLOW"
    finally:
        await session.close()


async def test_unsubscribed_stream_also_ends_when_the_server_drains(system: System) -> None:
    reader = await system.sign_up()
    call = reader.stub.StreamFeed(metadata=reader.md)
    await asyncio.wait_for(call.initial_metadata(), 5)  # accepted; it never subscribes
    stopping = asyncio.create_task(system.feed_app.host.stop())
    assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await stopping


async def test_a_deleted_post_leaves_open_streams_and_every_page(system: System) -> None:
    author = await system.sign_up("author")
    reader = await follower_of(system, author)
    stranger = await system.sign_up("stranger")  # follows nobody: told nothing
    call, _, _ = await open_stream(reader)
    own, _, _ = await open_stream(author)
    other, _, _ = await open_stream(stranger)
    kept = await author.post("stays")
    gone = await author.post("regretted")
    await fanout_done(system, gone.post_id)
    assert [(await read(call)).item.post_id for _ in range(2)] == [kept.post_id, gone.post_id]
    await system.stub.DeletePost(pb.DeletePostRequest(post_id=gone.post_id), metadata=author.md)
    for stream in (call, own):
        frame = await read(stream)
        while frame.WhichOneof("frame") != "removed":  # the author's own items come first
            frame = await read(stream)
        assert (frame.removed.post_id, frame.removed.author_id) == (gone.post_id, author.user_id)
    assert await reader.feed_ids(page_size=1) == [kept.post_id]
    refreshed_call = reader.stub.StreamFeed(metadata=reader.md)
    await refreshed_call.write(subscribe(kept.post_id - 1))  # a resume replays no deleted post
    replayed = await read(refreshed_call)
    assert (replayed.item.post_id, (await read(refreshed_call)).WhichOneof("frame")) == (
        kept.post_id,
        "subscribed",
    )
    with pytest.raises(TimeoutError):
        await read(other, timeout=0.5)
    for stream in (call, own, other, refreshed_call):
        stream.cancel()


async def test_a_body_read_before_a_delete_is_not_cached_after_it(system: System) -> None:
    author = await system.sign_up("author")
    post = await author.post("read, then deleted")
    posts = system.feed_app.feed.store.posts
    [stale] = (await posts.records.posts([post.post_id])).values()  # a page read's record query
    await system.stub.DeletePost(pb.DeletePostRequest(post_id=post.post_id), metadata=author.md)
    await posts.recache([stale])  # ...whose refill lands after the delete
    assert await posts.get_posts([post.post_id]) == [None]
    assert [p.post_id for p in (await author.feed()).posts] == []
