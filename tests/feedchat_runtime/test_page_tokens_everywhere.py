"""Every listing speaks one paging dialect: a forged, garbage or foreign page token is
INVALID_ARGUMENT PAGE_TOKEN_INVALID, an oversized page PAGE_SIZE_OUT_OF_RANGE."""

from __future__ import annotations

from typing import Any

import grpc

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat.feed.v1 import feed_pb2
from feedchat.notify.v1 import notify_pb2
from feedchat_runtime.pages import PageTokens, derive_key, page_tokens
from tests.chat_svc.chatkit import auth
from tests.feedchat_client.system import System
from tests.rpc_errors import failure

CALLER, OTHER = 21, 22


async def _listings(system: System) -> list[tuple[str, str, Any, str, int]]:
    """(service, method path, request without a token, token listing, token scope)."""
    async with grpc.aio.insecure_channel(system.address("chat")) as channel:
        group = (
            await chat_pb2_grpc.ChatServiceStub(channel).CreateGroup(
                chat_pb2.CreateGroupRequest(name="g", member_ids=[OTHER]),
                metadata=auth(CALLER),
            )
        ).channel.channel_id
    feed, chat = "/feedchat.feed.v1.FeedService", "/feedchat.chat.v1.ChatService"
    return [
        ("feed", f"{feed}/GetFeed", feed_pb2.GetFeedRequest(), "feed.GetFeed", 0),
        (
            "feed",
            f"{feed}/ListUserPosts",
            feed_pb2.ListUserPostsRequest(user_id=OTHER),
            "feed.ListUserPosts",
            OTHER,
        ),
        (
            "feed",
            f"{feed}/ListFollowers",
            feed_pb2.ListFollowersRequest(),
            "feed.ListFollowers",
            CALLER,
        ),
        (
            "feed",
            f"{feed}/ListFollowing",
            feed_pb2.ListFollowingRequest(),
            "feed.ListFollowing",
            CALLER,
        ),
        ("chat", f"{chat}/ListChannels", chat_pb2.ListChannelsRequest(), "chat.ListChannels", 0),
        (
            "chat",
            f"{chat}/GetHistory",
            chat_pb2.GetHistoryRequest(channel_id=group),
            "chat.GetHistory",
            group,
        ),
        (
            "notify",
            "/feedchat.notify.v1.NotifyService/ListNotifications",
            notify_pb2.ListNotificationsRequest(),
            "notify.ListNotifications",
            0,
        ),
    ]


async def test_forged_garbage_and_foreign_tokens_get_one_reason_on_every_listing(
    whole_system: System,
) -> None:
    ours = page_tokens(whole_system.hosts["feed"].config)
    forger = PageTokens(derive_key("", "not the deployment's key"))
    listings = await _listings(whole_system)
    for service, path, request, listing, scope in listings:
        other_listing = next(name for _, _, _, name, _ in listings if name != listing)
        bad = {
            "garbage": "bm9wZQ",
            "forged": forger.issue(listing, CALLER, 5, scope=scope),
            "another caller's": ours.issue(listing, OTHER, 5, scope=scope),
            "another listing's": ours.issue(other_listing, CALLER, 5, scope=scope),
            "another scope's": ours.issue(listing, CALLER, 5, scope=scope + 1),
        }
        async with grpc.aio.insecure_channel(whole_system.address(service)) as channel:
            call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
            for what, token in bad.items():
                request.page_token = token
                details = await failure(call(request, metadata=auth(CALLER)))
                assert (details.code, details.reason) == (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "PAGE_TOKEN_INVALID",
                ), (path, what)
            request.page_token = ours.issue(listing, CALLER, 5, scope=scope)
            await call(request, metadata=auth(CALLER))  # a token of its own is accepted
            request.page_token, request.page_size = "", 100_000
            details = await failure(call(request, metadata=auth(CALLER)))
            assert (details.code, details.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "PAGE_SIZE_OUT_OF_RANGE",
            ), path
