"""Deleting an account (account_svc DeleteAccount) on real account_svc and feed_svc: the
user's posts leave followers' feeds (cached, pulled and celebrity paths), the follow edges
go, the leftover access token cannot post, and a feed that was down gets the removal
later."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from feed_svc.app import build
from feedchat.account.v1 import account_pb2
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from tests.feed_svc.conftest import (
    Client,
    StartSystem,
    System,
    fanout_done,
    service_metadata,
)
from tests.waiting import eventually

PASSWORD = "correct horse battery"


async def _delete_account(system: System, user: Client) -> None:
    await system.accounts.DeleteAccount(
        account_pb2.DeleteAccountRequest(password=PASSWORD), metadata=user.md
    )


async def _followers(system: System, user_id: int) -> list[int]:
    reply = await system.stub.ListFollowers(
        pb.ListFollowersRequest(user_id=user_id), metadata=service_metadata()
    )
    return list(reply.user_ids)


async def test_deleted_authors_posts_leave_followers_feeds_and_older_posts_stay(
    system: System,
) -> None:
    leaving = await system.sign_up("leaving")
    staying = await system.sign_up("staying")
    reader = await system.sign_up("reader")
    await reader.follow(leaving.user_id)
    await reader.follow(staying.user_id)
    await leaving.follow(staying.user_id)
    await reader.feed()  # the reader is active: fanout writes into its cache
    kept = [await staying.post(f"kept {i}") for i in range(3)]
    gone = [await leaving.post(f"gone {i}") for i in range(3)]
    for post in kept + gone:
        await fanout_done(system, post.post_id)
    assert set(await reader.feed_ids()) == {p.post_id for p in kept + gone}

    await _delete_account(system, leaving)

    # Only the remaining author's posts, all of them (the cache stays complete).
    assert await reader.feed_ids() == [p.post_id for p in reversed(kept)]
    for post in gone:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.stub.GetPost(pb.GetPostRequest(post_id=post.post_id), metadata=reader.md)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _followers(system, leaving.user_id) == []
    assert await _followers(system, staying.user_id) == [reader.user_id]
    # The access token outlives the account, but the feed refuses its writes.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leaving.post("after deletion")
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCOUNT_DELETED")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leaving.follow(reader.user_id)
    assert (await error_details(caught.value)).reason == "ACCOUNT_DELETED"
    assert await reader.feed_ids() == [p.post_id for p in reversed(kept)]


async def test_deleted_celebrity_leaves_pulled_feeds(start_system: StartSystem) -> None:
    system = await start_system(celebrity_threshold=1)
    star = await system.sign_up("star")
    fans = [await system.sign_up(f"fan{i}") for i in range(3)]
    for fan in fans:
        await fan.follow(star.user_id)
    posts = [await star.post(f"star {i}") for i in range(2)]
    assert (await fanout_done(system, posts[-1].post_id)).state == (pb.FANOUT_STATE_PULLED_AT_READ)
    for fan in fans:
        assert set(await fan.feed_ids()) == {p.post_id for p in posts}
    await _delete_account(system, star)
    for fan in fans:
        assert await fan.feed_ids() == []


async def test_posts_are_removed_once_a_down_feed_is_back(start_system: StartSystem) -> None:
    system = await start_system(account={"content_retry_interval": 0.2})
    author = await system.sign_up("author")
    reader = await system.sign_up("follower")
    await reader.follow(author.user_id)
    await reader.feed()
    post = await author.post("posted before the feed went down")
    await fanout_done(system, post.post_id)
    await system.feed_app.host.stop()

    await _delete_account(system, author)  # succeeds; the feed's part is owed

    app = await build(system.config)
    await app.host.start()
    try:
        back = System(app, system.account_host, system.config)

        async def removed() -> bool:
            return await back.reader(reader.user_id).feed_ids() == []

        await eventually(removed, 15.0, "the owed removal to reach the restarted feed")
        assert await _followers(back, author.user_id) == []
        await back.close()
    finally:
        await app.host.stop()


async def test_delete_user_content_is_service_only_and_needs_a_user_id(
    system: System,
) -> None:
    user = await system.sign_up()
    await user.post("still here")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.DeleteUserContent(
            pb.DeleteUserContentRequest(user_id=user.user_id), metadata=user.md
        )
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SERVICE_ONLY")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.DeleteUserContent(
            pb.DeleteUserContentRequest(user_id=0), metadata=service_metadata()
        )
    details = await error_details(caught.value)
    assert (details.code, details.field_violations[0][0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "user_id",
    )
    await user.post("the refused calls removed nothing")


async def test_deleted_account_stays_removed_after_redis_is_wiped(
    system: System, redis: aioredis.Redis
) -> None:
    leaving = await system.sign_up("leaving")
    reader = await system.sign_up("reader")
    await reader.follow(leaving.user_id)
    await leaving.follow(reader.user_id)
    await reader.feed()
    post = await leaving.post("gone for good")
    await fanout_done(system, post.post_id)
    await _delete_account(system, leaving)

    await redis.flushall()  # the caches and the removed mark's copy in Redis are gone

    assert await reader.feed_ids() == []  # rebuilt from the record, which lost the post
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.GetPost(pb.GetPostRequest(post_id=post.post_id), metadata=reader.md)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _followers(system, leaving.user_id) == []
    assert await _followers(system, reader.user_id) == []
    # The still-valid access token is refused by the record itself.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leaving.post("after the wipe")
    assert (await error_details(caught.value)).reason == "ACCOUNT_DELETED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leaving.follow(reader.user_id)
    assert (await error_details(caught.value)).reason == "ACCOUNT_DELETED"
    assert await reader.feed_ids() == []
    assert await _followers(system, reader.user_id) == []
