"""Feed and presence wrappers against real servers, found through the registry."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from feedchat_client import Backoff, RpcError
from tests.feedchat_client.helpers import user
from tests.feedchat_client.system import System
from tests.waiting import wait_until


async def test_feed_iterator_pages_through_followed_posts_newest_first(system: System) -> None:
    await system.start(chat_servers=0)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    posted = [await alice.feed.post(f"post {i}") for i in range(5)]
    assert await bob.feed.follow(alice.session.user_id)
    assert not await bob.feed.follow(alice.session.user_id)  # idempotent
    seen = [p async for p in bob.feed.iterate(page_size=2)]
    assert [p.text for p in seen] == [f"post {i}" for i in (4, 3, 2, 1, 0)]
    assert [p.post_id for p in seen] == [p.post_id for p in reversed(posted)]
    assert {p.author.username for p in seen} == {alice.session.tokens.username}  # type: ignore[union-attr]
    first = await bob.feed.page(page_size=2)
    assert first.next_page_token and len(first.posts) == 2
    with pytest.raises(RpcError) as bad:
        await bob.feed.page(page_token="not-a-token")
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.reason == "PAGE_TOKEN_INVALID"
    assert await bob.feed.unfollow(alice.session.user_id)
    assert [p async for p in bob.feed.iterate()] == []


async def test_post_retried_with_its_request_id_after_a_restart_is_stored_once(
    system: System,
) -> None:
    await system.start(chat_servers=0)
    alice = await user(system, "alice")
    first = await alice.feed.post("only once", request_id="client-retry-1")
    await system.restart_feed()
    again = await alice.feed.post("only once", request_id="client-retry-1")
    assert (again.post_id, again.text) == (first.post_id, "only once")
    assert [p.post_id for p in (await alice.feed.user_posts()).posts] == [first.post_id]
    with pytest.raises(RpcError) as reused:
        await alice.feed.post("other words", request_id="client-retry-1")
    assert (reused.value.code, reused.value.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )


async def test_live_feed_yields_new_posts_once(system: System) -> None:
    await system.start(chat_servers=0)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    await bob.feed.follow(alice.session.user_id)
    subscribed = asyncio.Event()

    def on_state(state: str, detail: str) -> None:
        if state == "live":
            subscribed.set()

    live = bob.feed.live(backoff=Backoff(base=0.05), on_state=on_state)
    first = asyncio.ensure_future(live.__anext__())
    await asyncio.wait_for(subscribed.wait(), 10)
    await alice.feed.post("live one")
    await alice.feed.post("live two")
    got = [await asyncio.wait_for(first, 10), await asyncio.wait_for(live.__anext__(), 10)]
    assert [p.text for p in got] == ["live one", "live two"]
    await live.aclose()


async def test_live_feed_reports_a_deleted_post(system: System) -> None:
    await system.start(chat_servers=0)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    await bob.feed.follow(alice.session.user_id)
    subscribed = asyncio.Event()
    removed: list[int] = []

    def on_state(state: str, detail: str) -> None:
        if state == "live":
            subscribed.set()

    live = bob.feed.live(on_state=on_state, on_removed=removed.append)
    first = asyncio.ensure_future(live.__anext__())
    await asyncio.wait_for(subscribed.wait(), 10)
    post = await alice.feed.post("regretted")
    assert (await asyncio.wait_for(first, 10)).post_id == post.post_id
    following = asyncio.ensure_future(live.__anext__())  # the generator reads on meanwhile
    await alice.feed.delete_post(post.post_id)
    await wait_until(lambda: removed == [post.post_id], what="the removal")
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    await live.aclose()


async def test_live_feed_survives_feed_server_restart_without_loss_or_repeats(
    system: System,
) -> None:
    await system.start(chat_servers=0)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    await bob.feed.follow(alice.session.user_id)
    states: list[tuple[str, str]] = []
    subscribed = asyncio.Event()

    def on_state(state: str, detail: str) -> None:
        states.append((state, detail))
        if state == "live":
            subscribed.set()

    live = bob.feed.live(backoff=Backoff(base=0.05, cap=0.5), on_state=on_state)
    pending = asyncio.ensure_future(live.__anext__())
    await asyncio.wait_for(subscribed.wait(), 10)
    await alice.feed.post("before restart")
    assert (await asyncio.wait_for(pending, 10)).text == "before restart"
    pending = asyncio.ensure_future(live.__anext__())
    old_address = system.address("feed")
    await system.restart_feed()
    await alice.feed.post("while away")  # lands before the stream is back: replayed
    assert (await asyncio.wait_for(pending, 15)).text == "while away"
    await alice.feed.post("after restart")
    assert (await asyncio.wait_for(live.__anext__(), 10)).text == "after restart"
    nothing_more = asyncio.ensure_future(live.__anext__())
    done, _ = await asyncio.wait({nothing_more}, timeout=0.3)
    assert not done  # no repeat of an earlier post
    nothing_more.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await nothing_more
    connects = [detail for state, detail in states if state == "connecting"]
    assert connects[0] == old_address and connects[-1] == system.address("feed")
    assert "reconnecting" in [state for state, _ in states]
    await live.aclose()


async def test_presence_lookup_sees_connected_user_online(system: System) -> None:
    await system.start(chat_servers=0, presence=True)
    # Fixed addresses this time (StaticDiscovery) instead of the registry.
    alice, bob = await user(system, "alice", etcd=False), await user(system, "bob", etcd=False)
    before = await bob.presence.get([alice.session.user_id])
    assert [p.status for p in before] == ["offline"]
    session = await alice.presence.connect()
    try:
        after = await bob.presence.get([alice.session.user_id, bob.session.user_id])
        assert [p.status for p in after] == ["online", "offline"]
        assert after[0].user_id == alice.session.user_id and after[0].last_seen is not None
    finally:
        await session.close()
    # close() said goodbye and waited for it: offline now, not after the 30 s timeout.
    [gone] = await bob.presence.get([alice.session.user_id])
    assert gone.status == "offline"


async def test_presence_close_with_unread_changes_takes_the_device_offline_at_once(
    system: System,
) -> None:
    await system.start(chat_servers=0, presence=True)
    alice, bob = await user(system, "alice", etcd=False), await user(system, "bob", etcd=False)
    watcher = await alice.presence.connect(watch=[bob.session.user_id])
    for _ in range(5):  # changes of bob that alice's session never reads
        await (await bob.presence.connect()).close()
    await watcher.close()
    # The goodbye reached the server before close() returned: no 30 s offline timeout.
    [gone] = await bob.presence.get([alice.session.user_id])
    assert gone.status == "offline"


async def test_presence_session_watches_the_accounts_followed_in_feed_by_default(
    system: System,
) -> None:
    await system.start(chat_servers=0, presence=True)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    assert await bob.feed.follow(alice.session.user_id)
    session = await bob.presence.connect()  # no watch list of its own
    try:
        first = await asyncio.wait_for(anext(session.events()), 10)
        assert (first.user_id, first.status) == (alice.session.user_id, "offline")
    finally:
        await session.close()


async def test_presence_connect_refusal_surfaces_as_rpc_error_with_reason(
    system: System,
) -> None:
    await system.start(chat_servers=0, presence=True)
    alice = await user(system, "alice", etcd=False)
    sessions = [await alice.presence.connect() for _ in range(16)]  # the default limit
    try:
        with pytest.raises(RpcError) as refused:
            await alice.presence.connect()
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.reason == "TOO_MANY_DEVICES"
    finally:
        for session in sessions:
            await session.close()
