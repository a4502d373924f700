"""CreatePost with a client request id: a retry returns the first call's post, never a
second one, also after the server restarted; reusing the id for other text is refused."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from tests.feed_svc.conftest import Client, StartSystem, System


async def create(client: Client, text: str, request_id: str) -> pb.Post:
    reply: pb.CreatePostResponse = await client.stub.CreatePost(
        pb.CreatePostRequest(text=text, request_id=request_id), metadata=client.md
    )
    return reply.post


async def post_ids(system: System, client: Client) -> list[int]:
    page = await system.stub.ListUserPosts(
        pb.ListUserPostsRequest(page_size=100), metadata=client.md
    )
    return [p.post_id for p in page.posts]


async def test_retry_after_a_server_restart_returns_the_one_post(
    start_system: StartSystem,
) -> None:
    first = await start_system()
    alice = await first.sign_up()
    original = await create(alice, "posted once", "req-7f3a")
    await first.feed_app.host.stop()  # the reply may never have reached the client
    second = await start_system()
    alice_again = Client(alice.user_id, second.stub)
    for _ in range(3):
        retried = await create(alice_again, "posted once", "req-7f3a")
        assert (retried.post_id, retried.text) == (original.post_id, "posted once")
        assert retried.author.user_id == alice.user_id
    assert await post_ids(second, alice_again) == [original.post_id]
    other = await create(alice_again, "posted once", "req-8b1c")  # a new id: a new post
    assert await post_ids(second, alice_again) == [other.post_id, original.post_id]


async def test_concurrent_retries_store_one_post(system: System) -> None:
    alice = await system.sign_up()
    for attempt in range(5):
        replies = await asyncio.gather(
            *(create(alice, f"raced {attempt}", f"race-{attempt}") for _ in range(8))
        )
        assert len({p.post_id for p in replies}) == 1
    assert len(await post_ids(system, alice)) == 5


async def test_request_ids_belong_to_their_user(system: System) -> None:
    alice, bob = await system.sign_up(), await system.sign_up()
    longest = "~" * 64
    mine = await create(alice, "same words", longest)
    theirs = await create(bob, "same words", longest)
    assert mine.post_id != theirs.post_id
    assert await post_ids(system, bob) == [theirs.post_id]


async def test_same_request_id_with_other_text_is_already_exists(system: System) -> None:
    alice = await system.sign_up()
    original = await create(alice, "first text", "req-1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(alice, "second text", "req-1")
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert details.metadata["post_id"] == str(original.post_id)
    assert await post_ids(system, alice) == [original.post_id]


@pytest.mark.parametrize("request_id", ["x" * 65, "has space", "caf\u00e9", "tab\there"])
async def test_malformed_request_id_is_invalid_argument(system: System, request_id: str) -> None:
    alice = await system.sign_up()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(alice, "text", request_id)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_INVALID",
    )
    assert details.field_violations[0][0] == "request_id"
    assert await post_ids(system, alice) == []
