"""Session: sign-up, login, and access tokens refreshed before (or at) expiry."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat_client import FileTokenStore, NotLoggedIn, RpcError
from tests.feedchat_client.helpers import user
from tests.feedchat_client.system import System
from tests.waiting import eventually


class Clock:
    """A wall clock the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


async def test_token_near_expiry_is_refreshed_once_before_calls(system: System) -> None:
    await system.start(chat_servers=0)
    clock = Clock()
    alice = await user(system, "alice", clock=clock, refresh_margin=60.0)
    before = alice.session.tokens
    assert before is not None
    await alice.feed.page()
    assert alice.session.refreshes == 0
    clock.offset = before.access_expires_at - clock() - 10  # 10 s left: inside the margin
    pages = await asyncio.gather(*(alice.feed.page() for _ in range(5)))
    assert all(p.posts == [] for p in pages)
    assert alice.session.refreshes == 1  # five concurrent calls, one refresh
    after = alice.session.tokens
    assert after is not None and after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    # The old refresh token is spent: account_svc refuses it.
    stale = system.client()
    stale.session.store.save(before)
    stale.session._tokens = before
    with pytest.raises(RpcError) as refused:
        await stale.session.refresh()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_token_rejected_by_server_is_refreshed_and_call_retried(
    system: System,
) -> None:
    await system.start(chat_servers=0, account={"access_token_ttl": 1.0})
    alice = await user(system, "alice", clock=lambda: 0.0)  # never thinks it is stale
    tokens = alice.session.tokens
    assert tokens is not None
    channel = grpc.aio.insecure_channel(system.address("feed"))
    stub = feed_pb2_grpc.FeedServiceStub(channel)
    metadata = (("authorization", f"Bearer {tokens.access_token}"),)

    async def expired() -> bool:
        try:
            await stub.GetFeed(feed_pb2.GetFeedRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return bool(exc.code() == grpc.StatusCode.UNAUTHENTICATED)
        return False

    try:
        await eventually(expired, timeout=5, what="the access token to expire")
    finally:
        await channel.close()
    page = await alice.feed.page()
    assert page.posts == []
    assert alice.session.refreshes == 1


async def test_file_token_store_shared_by_two_sessions_spends_refresh_token_once(
    system: System,
    tmp_path: object,
) -> None:
    await system.start(chat_servers=0)
    path = f"{tmp_path}/session.json"
    clock = Clock()
    first = system.client(tokens=FileTokenStore(path), clock=clock)
    await first.session.sign_up("filed", "password-123")
    second = system.client(tokens=FileTokenStore(path), clock=clock)
    assert second.session.user_id == first.session.user_id  # logged in from the file
    tokens = first.session.tokens
    assert tokens is not None
    clock.offset = tokens.access_expires_at - clock() - 1
    await first.feed.page()
    await second.feed.page()  # re-reads the file: takes the new pair, no second refresh
    assert (first.session.refreshes, second.session.refreshes) == (1, 0)
    first.session.log_out()
    with pytest.raises(NotLoggedIn):
        await system.client(tokens=FileTokenStore(path)).feed.page()
