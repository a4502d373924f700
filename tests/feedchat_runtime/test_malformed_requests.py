"""Bad requests on every method of every service, built from the protos alone.

A body protobuf cannot parse gets INVALID_ARGUMENT MALFORMED_REQUEST, unary and stream
frames alike, and logs no traceback. Hostile values that do parse (huge and odd strings,
integer limits, ids beyond 2^63-1, unknown enum numbers, long repeated fields, nested
messages made the same way) get a precise status: never UNKNOWN or INTERNAL, never a hang.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from feedchat.account.v1 import account_pb2, account_pb2_grpc
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat.notify.v1 import notify_pb2
from feedchat.presence.v1 import presence_pb2
from feedchat.router.v1 import router_pb2
from feedchat_runtime.decoding import REASON
from tests.feedchat_client.helpers import user
from tests.feedchat_client.system import DEV_AUTHORITY, System
from tests.rpc_errors import failure

USER = 7
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SERVICE_ONLY = {
    "/feedchat.chat.v1.ChatPeerService/Deliver",
    "/feedchat.chat.v1.ChatPeerService/DeliverStream",
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
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
HOLDING = {"PollInbox"}
"""Unary methods that may hold a valid call open (a long poll): a deadline is no failure."""
T = FieldDescriptor
STRINGS = ["", " ", "\x00", "x" * 100_000, "\U0001f642" * 5_000, "\u202e\u0301", "-1", "9" * 40]
BY_TYPE: dict[int, list[Any]] = {
    T.TYPE_STRING: STRINGS,
    T.TYPE_BYTES: [b"", b"\xff" * 100_000],
    T.TYPE_BOOL: [True],
    T.TYPE_INT32: [-1, -(2**31), 2**31 - 1],
    T.TYPE_SINT32: [-1, -(2**31), 2**31 - 1],
    T.TYPE_SFIXED32: [-1, -(2**31), 2**31 - 1],
    T.TYPE_INT64: [-1, -(2**63), 2**63 - 1],
    T.TYPE_SINT64: [-1, -(2**63), 2**63 - 1],
    T.TYPE_SFIXED64: [-1, -(2**63), 2**63 - 1],
    T.TYPE_UINT32: [2**32 - 1],
    T.TYPE_FIXED32: [2**32 - 1],
    T.TYPE_UINT64: [2**63, 2**64 - 1],
    T.TYPE_FIXED64: [2**63, 2**64 - 1],
    T.TYPE_DOUBLE: [-1.0, math.nan, math.inf, -math.inf, 1e300],
    T.TYPE_FLOAT: [-1.0, math.nan, math.inf, -math.inf],
}


def extremes(member: FieldDescriptor) -> list[Any]:
    if member.enum_type is not None:
        return [99, -5] + [v.number for v in member.enum_type.values]
    return BY_TYPE[member.type]


def put(message: Message, member: FieldDescriptor, value: Any, copies: int) -> None:
    """Set ``member`` to ``value`` (``copies`` times over for a repeated field)."""
    target = getattr(message, member.name)
    if member.is_repeated:
        target.extend([value] * copies)
    elif member.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, member.name, value)


def nested(member: FieldDescriptor) -> Descriptor | None:
    """The message type of a message field (not a map's entry type), else None."""
    kind = member.message_type
    return kind if kind is not None and not kind.GetOptions().map_entry else None


def filled(descriptor: Descriptor, depth: int) -> Message:
    """A message with every field at its last extreme (nested ``depth`` levels down)."""
    message = GetMessageClass(descriptor)()
    for member in descriptor.fields:
        if kind := nested(member):
            if depth > 0:
                put(message, member, filled(kind, depth - 1), 50)
        elif member.message_type is None:
            put(message, member, extremes(member)[-1], 10_000)
    return message


def variants(descriptor: Descriptor, depth: int = 2) -> Iterator[Message]:
    """The empty message, each field alone at each extreme, then every field at once."""
    cls = GetMessageClass(descriptor)
    yield cls()
    for member in descriptor.fields:
        if kind := nested(member):
            for inner in variants(kind, depth - 1) if depth > 0 else ():
                message = cls()
                put(message, member, inner, 200)
                yield message
        elif member.message_type is None:
            for value in extremes(member):
                message = cls()
                put(message, member, value, 5_000)
                yield message
    yield filled(descriptor, depth)


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


async def _status_of(
    channel: grpc.aio.Channel, method: MethodDescriptor, body: bytes, token: str
) -> grpc.StatusCode:
    """The status of one call whose request (or first stream frame) is ``body``; a stream
    or a long poll still open at its deadline counts as OK."""
    path = _path(method)
    raw: dict[str, Any] = {"request_serializer": bytes, "response_deserializer": bytes}
    metadata = _metadata(path) if path in SERVICE_ONLY else (("authorization", f"Bearer {token}"),)
    holds = method.server_streaming or method.client_streaming or method.name in HOLDING
    try:
        if method.client_streaming:
            async for _ in channel.stream_stream(path, **raw)(
                iter([body]), metadata=metadata, timeout=3
            ):
                pass
        elif method.server_streaming:
            async for _ in channel.unary_stream(path, **raw)(body, metadata=metadata, timeout=3):
                pass
        else:
            await channel.unary_unary(path, **raw)(
                body, metadata=metadata, timeout=3 if holds else 10
            )
    except grpc.aio.AioRpcError as error:
        if holds and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK
        return error.code()
    return grpc.StatusCode.OK


async def test_no_hostile_request_gets_unknown_internal_or_a_hang(whole_system: System) -> None:
    client = await user(whole_system, "hostile")
    assert client.session.tokens is not None
    token = client.session.tokens.access_token
    big = [("grpc.max_send_message_length", 64 << 20)]
    bad: list[str] = []
    for service, method in _methods():
        async with grpc.aio.insecure_channel(whole_system.address(service), options=big) as channel:
            for message in variants(method.input_type):
                body = message.SerializeToString()
                code = await _status_of(channel, method, body, token)
                if code in BAD_CODES:
                    bad.append(f"{method.full_name} {code.name} {message!s:.120}")
    assert not bad, "\n".join(bad[:80])


async def test_ids_and_durations_out_of_range_are_refused_by_field(whole_system: System) -> None:
    token = (("authorization", f"Bearer {DEV_AUTHORITY.issue_access(USER).token}"),)
    async with grpc.aio.insecure_channel(whole_system.address("feed")) as channel:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        details = await failure(
            stub.GetPost(feed_pb2.GetPostRequest(post_id=2**63), metadata=token)
        )
        assert (details.code, details.reason) == (INVALID, "ID_OUT_OF_RANGE")
        assert [name for name, _ in details.field_violations] == ["post_id"]
    async with grpc.aio.insecure_channel(whole_system.address("chat")) as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        hello = chat_pb2.ConnectRequest(hello=chat_pb2.Hello(device_id="d1"))
        edit = chat_pb2.ConnectRequest(
            edit=chat_pb2.EditMessage(
                client_msg_id="e1", channel_id=2**64 - 1, message_id=2**64 - 1, text="hi"
            )
        )
        details = await failure(chat.Connect(iter([hello, edit]), metadata=token))
        assert (details.code, details.reason) == (INVALID, "ID_OUT_OF_RANGE")
        assert [name for name, _ in details.field_violations] == ["edit.message_id"]
        poll = chat_pb2.PollInboxRequest(device_id="d1", wait=Duration(seconds=2**62))
        details = await failure(chat.PollInbox(poll, metadata=token))
        assert (details.code, details.reason) == (INVALID, "DURATION_OUT_OF_RANGE")


async def test_a_username_no_account_can_have_fails_login_like_a_wrong_password(
    whole_system: System,
) -> None:
    async with grpc.aio.insecure_channel(whole_system.address("account")) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        for name in ("a\x00b", "ab", "x" * 33, "al ice"):
            login = account_pb2.LoginRequest(username=name, password="password-123")
            details = await failure(stub.Login(login))
            assert (details.code, details.reason) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "BAD_CREDENTIALS",
            ), name
