"""A validly signed token whose subject is not a user id is UNAUTHENTICATED on every
service, for user calls, streams and refreshes alike -- never INTERNAL."""

from __future__ import annotations

import time
from typing import Any

import grpc
import jwt

from feedchat.account.v1 import account_pb2
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat.feed.v1 import feed_pb2
from feedchat.presence.v1 import presence_pb2
from feedchat.router.v1 import router_pb2
from feedchat_runtime.auth import ALGORITHM, DEV_AUTH_SECRET, ISSUER
from tests.feedchat_client.system import System
from tests.rpc_errors import failure

SUBJECTS = ["0", "-3", str(1 << 63), "1e3", "12 "]

# (service, method path, request) for a user call of each service
USER_CALLS = [
    (
        "account",
        "/feedchat.account.v1.AccountService/UpdateProfile",
        account_pb2.UpdateProfileRequest(),
    ),
    ("feed", "/feedchat.feed.v1.FeedService/GetFeed", feed_pb2.GetFeedRequest()),
    ("feed", "/feedchat.feed.v1.FeedService/CreatePost", feed_pb2.CreatePostRequest(text="x")),
    (
        "router",
        "/feedchat.router.v1.RouterService/ListChatServers",
        router_pb2.ListChatServersRequest(),
    ),
    (
        "presence",
        "/feedchat.presence.v1.PresenceService/GetPresence",
        presence_pb2.GetPresenceRequest(user_ids=[1]),
    ),
    ("chat", "/feedchat.chat.v1.ChatService/ListChannels", chat_pb2.ListChannelsRequest()),
]


def _token(subject: str, typ: str = "access") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "typ": typ, "iat": now, "exp": now + 600, "jti": "j"}
    return jwt.encode(claims, DEV_AUTH_SECRET, algorithm=ALGORITHM)


async def _refused(call: Any) -> tuple[grpc.StatusCode, str]:
    details = await failure(call)
    return details.code, details.reason


async def test_out_of_range_subjects_are_unauthenticated_everywhere(whole_system: System) -> None:
    unauthenticated = (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    for subject in SUBJECTS:
        metadata = (("authorization", f"Bearer {_token(subject)}"),)
        for service, path, request in USER_CALLS:
            address = whole_system.address(service)
            async with grpc.aio.insecure_channel(address) as channel:
                call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
                assert await _refused(call(request, metadata=metadata)) == unauthenticated, path
        async with grpc.aio.insecure_channel(whole_system.address("chat")) as channel:
            hello = chat_pb2.ConnectRequest(hello=chat_pb2.Hello(device_id="d"))
            stream = chat_pb2_grpc.ChatServiceStub(channel).Connect(
                iter([hello]), metadata=metadata
            )
            assert await _refused(stream) == unauthenticated
        async with grpc.aio.insecure_channel(whole_system.address("account")) as channel:
            refresh = channel.unary_unary(
                "/feedchat.account.v1.AccountService/RefreshToken",
                request_serializer=lambda m: m.SerializeToString(),
            )
            request = account_pb2.RefreshTokenRequest(refresh_token=_token(subject, "refresh"))
            assert await _refused(refresh(request)) == unauthenticated


async def test_a_token_for_an_account_that_does_not_exist_acts_until_it_expires(
    whole_system: System,
) -> None:
    """As documented (README, "A token for an account that no longer exists")."""
    ghost = 4242  # never signed up
    metadata = (("authorization", f"Bearer {_token(str(ghost))}"),)
    serialize = {"request_serializer": lambda m: m.SerializeToString()}
    async with grpc.aio.insecure_channel(whole_system.address("feed")) as channel:
        create = channel.unary_unary(
            "/feedchat.feed.v1.FeedService/CreatePost",
            **serialize,
            response_deserializer=feed_pb2.CreatePostResponse.FromString,
        )
        reply = await create(feed_pb2.CreatePostRequest(text="still me"), metadata=metadata)
        assert reply.post.author.user_id == ghost
    async with grpc.aio.insecure_channel(whole_system.address("account")) as channel:
        update = channel.unary_unary(
            "/feedchat.account.v1.AccountService/UpdateProfile", **serialize
        )
        assert await _refused(update(account_pb2.UpdateProfileRequest(), metadata=metadata)) == (
            grpc.StatusCode.NOT_FOUND,
            "USER_NOT_FOUND",
        )
        refresh = channel.unary_unary(
            "/feedchat.account.v1.AccountService/RefreshToken", **serialize
        )
        request = account_pb2.RefreshTokenRequest(refresh_token=_token(str(ghost), "refresh"))
        assert await _refused(refresh(request)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "REFRESH_TOKEN_REVOKED",
        )
