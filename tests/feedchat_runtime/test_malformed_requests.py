"""A request body protobuf cannot parse gets INVALID_ARGUMENT MALFORMED_REQUEST from every
method of every service, unary and stream frames alike, and logs no traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from feedchat.account.v1 import account_pb2
from feedchat.chat.v1 import chat_pb2
from feedchat.feed.v1 import feed_pb2
from feedchat.notify.v1 import notify_pb2
from feedchat.presence.v1 import presence_pb2
from feedchat.router.v1 import router_pb2
from feedchat_runtime.decoding import REASON
from tests.feedchat_client.system import DEV_AUTHORITY, System
from tests.rpc_errors import failure

USER = 7
SERVICE_ONLY = {
    "/feedchat.chat.v1.ChatPeerService/Deliver",
    "/feedchat.notify.v1.NotifyService/StreamNotifications",
    "/feedchat.feed.v1.FeedService/DeleteUserContent",
}
SERVICES = {
    "account": [account_pb2.DESCRIPTOR.services_by_name["AccountService"]],
    "feed": [feed_pb2.DESCRIPTOR.services_by_name["FeedService"]],
    "router": [router_pb2.DESCRIPTOR.services_by_name["RouterService"]],
    "presence": [presence_pb2.DESCRIPTOR.services_by_name["PresenceService"]],
    "notify": [notify_pb2.DESCRIPTOR.services_by_name["NotifyService"]],
    "chat": [
        chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
        chat_pb2.DESCRIPTOR.services_by_name["ChatPeerService"],
    ],
}
# A frame each bidirectional stream accepts, to break the stream after a good start.
GOOD_FIRST_FRAME = {
    "/feedchat.chat.v1.ChatService/Connect": chat_pb2.ConnectRequest(
        hello=chat_pb2.Hello(device_id="d1")
    ),
    "/feedchat.feed.v1.FeedService/StreamFeed": feed_pb2.StreamFeedRequest(
        subscribe=feed_pb2.StreamFeedRequest.Subscribe()
    ),
    "/feedchat.presence.v1.PresenceService/Connect": presence_pb2.ConnectRequest(
        heartbeat=presence_pb2.Heartbeat()
    ),
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _invalid_utf8(descriptor: Descriptor, depth: int = 0) -> bytes | None:
    """A body whose first reachable string field (maybe nested) holds invalid UTF-8."""
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            inner = b"ok\xc3\x28"
        elif f.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            assert f.message_type is not None
            found = _invalid_utf8(f.message_type, depth + 1)
            if found is None:
                continue
            inner = found
        else:
            continue
        return _varint(f.number << 3 | 2) + _varint(len(inner)) + inner
    return None


def _bad_bodies(method: MethodDescriptor) -> dict[str, bytes]:
    bodies = {"truncated": b"\x0a\x05ab", "garbage": b"\xff" * 11}
    utf8 = _invalid_utf8(method.input_type)
    if utf8 is not None:
        bodies["invalid utf-8"] = utf8
    request_class = GetMessageClass(method.input_type)
    for body in bodies.values():  # each really is undecodable
        with pytest.raises(pb_message.DecodeError):
            request_class.FromString(body)
    return bodies


def _methods() -> list[tuple[str, MethodDescriptor]]:
    return [
        (service, method)
        for service, descriptors in SERVICES.items()
        for descriptor in descriptors
        for method in descriptor.methods
    ]


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _metadata(path: str) -> tuple[tuple[str, str], ...]:
    issued = (
        DEV_AUTHORITY.issue_service("test")
        if path in SERVICE_ONLY
        else DEV_AUTHORITY.issue_access(USER)
    )
    return (("authorization", f"Bearer {issued.token}"),)


async def _expect_malformed(call: Any) -> None:
    details = await failure(call)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, REASON)


async def _frames(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def _call(channel: grpc.aio.Channel, method: MethodDescriptor, *frames: bytes) -> Any:
    """The call of ``method`` with raw request bytes (one message, or client frames)."""
    path = _path(method)
    metadata = _metadata(path)
    if not method.client_streaming and not method.server_streaming:
        return channel.unary_unary(path)(frames[0], metadata=metadata, timeout=5)
    if not method.client_streaming:
        return channel.unary_stream(path)(frames[0], metadata=metadata, timeout=5)
    return channel.stream_stream(path)(_frames(*frames), metadata=metadata, timeout=5)


async def test_every_method_answers_an_undecodable_body_with_invalid_argument(
    whole_system: System, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for service, method in _methods():
        async with grpc.aio.insecure_channel(whole_system.address(service)) as channel:
            for body in _bad_bodies(method).values():
                await _expect_malformed(_call(channel, method, body))
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_bad_frame_after_a_good_start_ends_each_stream_with_invalid_argument(
    whole_system: System, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    streams = [(s, m) for s, m in _methods() if _path(m) in GOOD_FIRST_FRAME]
    assert len(streams) == len(GOOD_FIRST_FRAME)
    for service, method in streams:
        good = GOOD_FIRST_FRAME[_path(method)].SerializeToString()
        async with grpc.aio.insecure_channel(whole_system.address(service)) as channel:
            for body in _bad_bodies(method).values():
                await _expect_malformed(_call(channel, method, good, body))
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
