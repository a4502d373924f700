"""GetFeed paging: opaque checked tokens, no duplicates or gaps, no cut-off at the cap."""

from __future__ import annotations

import grpc
import pytest

from feed_svc.keys import feed_key
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from tests.feed_svc.conftest import Client, StartSystem, System, fanout_done


async def active_reader_of(system: System, *authors: Client) -> Client:
    """A reader following ``authors`` whose feed cache is live (read once, rebuilt)."""
    reader = await system.sign_up()
    for author in authors:
        await reader.follow(author.user_id)
    await reader.feed()
    await system.feed_app.feed.timeline.wait_rebuilds()
    return reader


async def post_all(system: System, author: Client, count: int, label: str) -> list[int]:
    ids = [(await author.post(f"{label} {i}")).post_id for i in range(count)]
    await fanout_done(system, ids[-1])
    return ids


async def test_paging_while_posts_arrive_has_no_duplicates_or_gaps(system: System) -> None:
    authors = [await system.sign_up() for _ in range(3)]
    reader = await active_reader_of(system, *authors)
    before: list[int] = []
    for round_ in range(10):
        for author in authors:
            before += await post_all(system, author, 1, f"old {round_}")
    seen: list[int] = []
    token = ""
    arrived: list[int] = []
    while True:
        page = await reader.feed(7, token)
        seen += [p.post_id for p in page.posts]
        token = page.next_page_token
        if not token:
            break
        arrived += await post_all(system, authors[len(arrived) % 3], 2, "new")
    assert seen == sorted(before, reverse=True)
    first = await reader.feed(len(arrived))
    assert [p.post_id for p in first.posts] == sorted(arrived, reverse=True)


async def test_feed_pages_past_the_capped_cache(start_system: StartSystem) -> None:
    system = await start_system(feed_cache_size=10)
    author, other = await system.sign_up(), await system.sign_up()
    reader = await active_reader_of(system, author, other)
    posted = await post_all(system, author, 18, "a") + await post_all(system, other, 17, "b")
    assert await system.feed_app.redis.zcard(feed_key(reader.user_id)) == 10
    assert await reader.feed_ids(page_size=4) == sorted(posted, reverse=True)


async def test_deleted_posts_never_appear_and_pages_stay_full(system: System) -> None:
    author = await system.sign_up("writer")
    reader = await active_reader_of(system, author)
    posted = await post_all(system, author, 8, "p")
    for post_id in posted[5:7]:
        await system.stub.DeletePost(pb.DeletePostRequest(post_id=post_id), metadata=author.md)
    page = await reader.feed(5)
    assert [p.post_id for p in page.posts] == [posted[7], *posted[4:0:-1]]
    assert all(p.author.username == "writer" for p in page.posts)
    rest = await reader.feed(5, page.next_page_token)
    assert [p.post_id for p in rest.posts] == [posted[0]]
    assert rest.next_page_token == ""


async def test_default_and_bounded_page_sizes(system: System) -> None:
    author = await system.sign_up()
    reader = await active_reader_of(system, author)
    await post_all(system, author, 25, "p")
    assert len((await reader.feed()).posts) == 20
    assert len((await reader.feed(100)).posts) == 25
    for size in (-1, 101):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reader.feed(size)
        details = await error_details(caught.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAGE_SIZE_OUT_OF_RANGE",
        )


async def test_page_tokens_are_checked(system: System) -> None:
    author = await system.sign_up()
    reader = await active_reader_of(system, author)
    other = await active_reader_of(system, author)
    await post_all(system, author, 4, "p")
    token = (await reader.feed(2)).next_page_token
    assert token
    posts_token = (
        await system.stub.ListUserPosts(
            pb.ListUserPostsRequest(user_id=author.user_id, page_size=1), metadata=reader.md
        )
    ).next_page_token
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad, who in [
        ("garbage!", reader),
        (flipped, reader),
        (token, other),
        (posts_token, reader),
        ("x" * 500, reader),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await who.feed(2, bad)
        details = await error_details(caught.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAGE_TOKEN_INVALID",
        )
        assert details.field_violations[0][0] == "page_token"
    assert len((await reader.feed(2, token)).posts) == 2
