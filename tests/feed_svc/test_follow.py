"""The follow graph: bounds, idempotence, lists, and what it does to the feed."""

from __future__ import annotations

import grpc
import pytest

from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_runtime.replies import text
from tests.feed_svc.conftest import StartSystem, System, fanout_done, service_metadata
from tests.waiting import eventually


async def test_following_an_unknown_user_is_not_found(system: System) -> None:
    alice = await system.sign_up()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.follow(987654321)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


async def test_following_yourself_is_invalid(system: System) -> None:
    alice = await system.sign_up()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.follow(alice.user_id)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CANNOT_FOLLOW_SELF",
    )
    assert details.field_violations == [("user_id", "a user cannot follow themselves")]


async def test_repeated_follow_and_unfollow_are_idempotent(system: System) -> None:
    alice, bob = await system.sign_up(), await system.sign_up()
    assert await alice.follow(bob.user_id) is True
    assert await alice.follow(bob.user_id) is False
    followers = await system.stub.ListFollowers(
        pb.ListFollowersRequest(user_id=bob.user_id), metadata=alice.md
    )
    assert (list(followers.user_ids), followers.total_count) == ([alice.user_id], 1)
    assert await alice.unfollow(bob.user_id) is True
    assert await alice.unfollow(bob.user_id) is False
    following = await system.stub.ListFollowing(pb.ListFollowingRequest(), metadata=alice.md)
    assert (list(following.user_ids), following.total_count) == ([], 0)


async def test_follower_lists_page_by_ascending_id(system: System) -> None:
    star = await system.sign_up()
    fans = [system.reader(1000 + i) for i in range(7)]
    for fan in fans:
        await fan.follow(star.user_id)
    seen: list[int] = []
    token = ""
    while True:
        page = await system.stub.ListFollowers(
            pb.ListFollowersRequest(user_id=star.user_id, page_size=3, page_token=token),
            metadata=star.md,
        )
        assert page.total_count == 7
        seen += page.user_ids
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(f.user_id for f in fans)


async def test_following_limit_is_enforced(start_system: StartSystem) -> None:
    system = await start_system(max_following=2)
    alice = await system.sign_up()
    others = [await system.sign_up() for _ in range(3)]
    await alice.follow(others[0].user_id)
    await alice.follow(others[1].user_id)
    assert await alice.follow(others[1].user_id) is False  # already followed: still fine
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.follow(others[2].user_id)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_FOLLOWING",
    )


async def test_follow_merges_recent_posts_and_unfollow_removes_them(system: System) -> None:
    reader, bob, carol = [await system.sign_up() for _ in range(3)]
    await reader.follow(carol.user_id)
    assert await reader.feed_ids() == []  # first read: reader is active from now on
    await system.feed_app.feed.timeline.wait_rebuilds()
    carol_post = await carol.post("carol's")
    await fanout_done(system, carol_post.post_id)
    bob_posts = [(await bob.post(f"bob {i}")).post_id for i in range(3)]
    await reader.follow(bob.user_id)
    # Bob's earlier posts are merged into the cached feed by the follow itself.
    cached = await system.feed_app.redis.zrange(f"feed:{{u{reader.user_id}}}:tl", 0, -1)
    assert {int(text(m).split(":")[0]) for m in cached} == {carol_post.post_id, *bob_posts}
    assert await reader.feed_ids() == [*bob_posts[::-1], carol_post.post_id]
    await reader.unfollow(bob.user_id)
    cached = await system.feed_app.redis.zrange(f"feed:{{u{reader.user_id}}}:tl", 0, -1)
    assert [int(text(m).split(":")[0]) for m in cached] == [carol_post.post_id]
    assert await reader.feed_ids() == [carol_post.post_id]

    async def refollowed() -> bool:
        return await reader.feed_ids() == [*bob_posts[::-1], carol_post.post_id]

    await reader.follow(bob.user_id)
    await eventually(refollowed, what="bob's posts back after a new follow")


async def test_services_may_list_a_named_users_graph(system: System) -> None:
    alice, bob = await system.sign_up(), await system.sign_up()
    await alice.follow(bob.user_id)
    following = await system.stub.ListFollowing(
        pb.ListFollowingRequest(user_id=alice.user_id), metadata=service_metadata("presence")
    )
    assert list(following.user_ids) == [bob.user_id]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.ListFollowers(
            pb.ListFollowersRequest(), metadata=service_metadata("presence")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.GetFeed(pb.GetFeedRequest(), metadata=service_metadata("presence"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
