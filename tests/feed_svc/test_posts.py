"""Posts: create, read, delete, list, and the bounds on their text."""

from __future__ import annotations

import grpc
import pytest

from feed_svc.config import MAX_POST_CHARS
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from tests.feed_svc.conftest import System


async def test_created_post_reads_back_with_its_author(system: System) -> None:
    alice = await system.sign_up("alice")
    post = await alice.post("hello, world")
    assert post.post_id > 2**53  # a Snowflake id, beyond float precision
    assert (post.author.user_id, post.author.username, post.author.display_name) == (
        alice.user_id,
        "alice",
        "Alice",
    )
    got = await system.stub.GetPost(pb.GetPostRequest(post_id=post.post_id), metadata=alice.md)
    assert got.post == post
    assert post.created_at.ToMilliseconds() > 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "POST_EMPTY"),
        ("  \n\t ", "POST_EMPTY"),
        ("x" * (MAX_POST_CHARS + 1), "POST_TOO_LONG"),
        ("bell\x07", "POST_INVALID_CHARACTERS"),
    ],
)
async def test_bad_post_text_is_invalid_argument(system: System, text: str, reason: str) -> None:
    alice = await system.sign_up()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.post(text)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert details.field_violations[0][0] == "text"


async def test_longest_allowed_post_is_accepted(system: System) -> None:
    alice = await system.sign_up()
    post = await alice.post("é" * MAX_POST_CHARS)
    assert len(post.text) == MAX_POST_CHARS


async def test_only_the_author_may_delete_and_then_the_post_is_gone(system: System) -> None:
    alice, bob = await system.sign_up(), await system.sign_up()
    post = await alice.post("mine")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.DeletePost(pb.DeletePostRequest(post_id=post.post_id), metadata=bob.md)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_POST_AUTHOR")
    await system.stub.DeletePost(pb.DeletePostRequest(post_id=post.post_id), metadata=alice.md)
    for call in (
        system.stub.GetPost(pb.GetPostRequest(post_id=post.post_id), metadata=alice.md),
        system.stub.DeletePost(pb.DeletePostRequest(post_id=post.post_id), metadata=alice.md),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        details = await error_details(caught.value)
        assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "POST_NOT_FOUND")


async def test_user_posts_page_newest_first(system: System) -> None:
    alice = await system.sign_up()
    posted = [(await alice.post(f"p{i}")).post_id for i in range(7)]
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        reply = await system.stub.ListUserPosts(
            pb.ListUserPostsRequest(user_id=alice.user_id, page_size=3, page_token=token),
            metadata=alice.md,
        )
        seen += [p.post_id for p in reply.posts]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert seen == posted[::-1]
    assert pages == 3


async def test_listing_posts_of_an_unknown_user_is_not_found(system: System) -> None:
    alice = await system.sign_up()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.ListUserPosts(pb.ListUserPostsRequest(user_id=12345), metadata=alice.md)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


async def test_calls_without_a_token_are_unauthenticated(system: System) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.CreatePost(pb.CreatePostRequest(text="anonymous"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
