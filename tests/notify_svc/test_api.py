"""The user-facing RPCs: registration policy, paging, read marks, mutes, the gateway stream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
import redis.asyncio as aioredis

from feedchat.notify.v1 import notify_pb2 as pb
from feedchat_client.errors import error_details
from notify_svc.app import NotifyApp
from tests.notify_svc.conftest import (
    StubFor,
    enqueue,
    list_notifications,
    queue_drained,
    register_webhook,
    service_metadata,
    user_metadata,
)
from tests.notify_svc.receiver import Receiver
from tests.waiting import wait_until

Start = Callable[..., Awaitable[NotifyApp]]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/hook",  # right host, port not allowed
        "http://evil.example.com/hook",
        "http://user:pw@127.0.0.1:{port}/hook",
        "ftp://127.0.0.1:{port}/hook",
        "http://127.0.0.1:{port}/hook#frag",
        "not a url",
        "",
    ],
)
async def test_url_outside_allow_list_is_refused_at_registration(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, url: str
) -> None:
    stub = channel_to(await start_notify(worker=False))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register_webhook(stub, 42, url.format(port=receiver.port))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details.field_violations] == ["webhook_url"]
    reply = await stub.ListDevices(pb.ListDevicesRequest(), metadata=user_metadata(42))
    assert list(reply.devices) == []


async def test_https_only_unless_operator_allows_http(
    start_notify: Start, channel_to: StubFor, receiver: Receiver
) -> None:
    stub = channel_to(await start_notify(worker=False, webhook_allow_http=False))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register_webhook(stub, 42, receiver.url)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "WEBHOOK_URL_NOT_ALLOWED",
    )


async def test_devices_register_replace_list_and_unregister(
    start_notify: Start, channel_to: StubFor, receiver: Receiver
) -> None:
    stub = channel_to(await start_notify(worker=False, max_devices=2))
    await register_webhook(stub, 42, receiver.url, device_id="a")
    await register_webhook(stub, 42, receiver.url + "?v=2", device_id="a")  # replaces
    await register_webhook(stub, 42, receiver.url, device_id="b")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register_webhook(stub, 42, receiver.url, device_id="c")
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_DEVICES",
    )
    reply = await stub.ListDevices(pb.ListDevicesRequest(), metadata=user_metadata(42))
    assert [(d.device_id, d.webhook_url) for d in reply.devices] == [
        ("a", receiver.url + "?v=2"),
        ("b", receiver.url),
    ]
    other = await stub.ListDevices(pb.ListDevicesRequest(), metadata=user_metadata(43))
    assert list(other.devices) == []

    meta = user_metadata(42)
    gone = await stub.UnregisterDevice(pb.UnregisterDeviceRequest(device_id="a"), metadata=meta)
    again = await stub.UnregisterDevice(pb.UnregisterDeviceRequest(device_id="a"), metadata=meta)
    assert (gone.removed, again.removed) == (True, False)

    for bad in (
        pb.RegisterDeviceRequest(
            device_id="", kind=pb.DEVICE_KIND_WEBHOOK, webhook_url=receiver.url
        ),
        pb.RegisterDeviceRequest(
            device_id="x" * 65, kind=pb.DEVICE_KIND_WEBHOOK, webhook_url=receiver.url
        ),
        pb.RegisterDeviceRequest(device_id="ok", webhook_url=receiver.url),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RegisterDevice(bad, metadata=meta)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_calls_without_a_user_token_are_refused(
    start_notify: Start, channel_to: StubFor
) -> None:
    stub = channel_to(await start_notify(worker=False))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListNotifications(pb.ListNotificationsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListNotifications(pb.ListNotificationsRequest(), metadata=service_metadata())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_notification_pages_have_no_gaps_or_repeats_and_tokens_are_checked(
    start_notify: Start, channel_to: StubFor, redis: aioredis.Redis
) -> None:
    stub = channel_to(await start_notify(collapse_window=0.0))
    ids = [10**18 + i for i in range(7)]  # beyond 2^53: order must stay exact
    for message_id in ids[:5]:
        await enqueue(redis, user_id=42, message_id=message_id)
    await wait_until(lambda: queue_drained(redis))

    meta = user_metadata(42)
    first = await stub.ListNotifications(pb.ListNotificationsRequest(page_size=2), metadata=meta)
    for message_id in ids[5:]:  # newer notifications arrive between pages
        await enqueue(redis, user_id=42, message_id=message_id)
    await wait_until(lambda: queue_drained(redis))
    seen = [n.notification_id for n in first.notifications]
    token = first.next_page_token
    while token:
        page = await stub.ListNotifications(
            pb.ListNotificationsRequest(page_size=2, page_token=token), metadata=meta
        )
        seen += [n.notification_id for n in page.notifications]
        token = page.next_page_token
    assert seen == sorted(ids[:5], reverse=True)

    for bad_token in ("garbage", first.next_page_token + "x"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListNotifications(
                pb.ListNotificationsRequest(page_token=bad_token), metadata=meta
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # another user's token
        await stub.ListNotifications(
            pb.ListNotificationsRequest(page_token=first.next_page_token),
            metadata=user_metadata(43),
        )
    assert (await error_details(caught.value)).reason == "PAGE_TOKEN_INVALID"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListNotifications(pb.ListNotificationsRequest(page_size=101), metadata=meta)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_mark_read_counts_only_unread_notifications_of_the_caller(
    start_notify: Start, channel_to: StubFor, redis: aioredis.Redis
) -> None:
    stub = channel_to(await start_notify())
    await enqueue(redis, user_id=42, message_id=501, channel_id=1)
    await enqueue(redis, user_id=42, message_id=502, channel_id=2)
    await wait_until(lambda: queue_drained(redis))

    other = await stub.MarkRead(
        pb.MarkReadRequest(notification_ids=[501]), metadata=user_metadata(43)
    )
    assert other.marked_count == 0
    meta = user_metadata(42)
    reply = await stub.MarkRead(pb.MarkReadRequest(notification_ids=[501, 999]), metadata=meta)
    again = await stub.MarkRead(pb.MarkReadRequest(notification_ids=[501]), metadata=meta)
    assert (reply.marked_count, again.marked_count) == (1, 0)
    assert {n.notification_id: n.read for n in await list_notifications(stub, 42)} == {
        501: True,
        502: False,
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.MarkRead(pb.MarkReadRequest(), metadata=meta)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_mutes_are_listed_bounded_and_validated(
    start_notify: Start, channel_to: StubFor
) -> None:
    stub = channel_to(await start_notify(worker=False, max_muted_channels=2))
    meta = user_metadata(42)
    for channel in (30, 10, 10):
        await stub.MuteChannel(pb.MuteChannelRequest(channel_id=channel), metadata=meta)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.MuteChannel(pb.MuteChannelRequest(channel_id=20), metadata=meta)
    assert (await error_details(caught.value)).reason == "TOO_MANY_MUTED_CHANNELS"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.MuteChannel(pb.MuteChannelRequest(channel_id=0), metadata=meta)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await stub.UnmuteChannel(pb.UnmuteChannelRequest(channel_id=30), metadata=meta)
    reply = await stub.ListMutedChannels(pb.ListMutedChannelsRequest(), metadata=meta)
    assert list(reply.channel_ids) == [10]


async def test_gateway_stream_sees_created_and_updated_events_and_ends_on_shutdown(
    start_notify: Start, channel_to: StubFor, redis: aioredis.Redis
) -> None:
    worker = await start_notify()
    gateway_side = await start_notify(worker=False)  # events cross instances via Redis
    stub = channel_to(gateway_side)
    call = stub.StreamNotifications(
        pb.StreamNotificationsRequest(user_ids=[42]), metadata=service_metadata()
    )
    await call.initial_metadata()  # subscribed from here on

    await enqueue(redis, user_id=43, message_id=600, channel_id=7)  # filtered out
    await enqueue(redis, user_id=42, message_id=601, channel_id=7, preview="one")
    await wait_until(lambda: queue_drained(redis))
    await enqueue(redis, user_id=42, message_id=602, channel_id=7, preview="two")

    created = await asyncio.wait_for(call.read(), 10)
    updated = await asyncio.wait_for(call.read(), 10)
    assert (created.event, created.user_id, created.notification.notification_id) == (
        pb.NOTIFICATION_EVENT_CREATED,
        42,
        601,
    )
    assert (updated.event, updated.notification.count, updated.notification.preview) == (
        pb.NOTIFICATION_EVENT_UPDATED,
        2,
        "two",
    )
    assert worker.worker is not None

    await gateway_side.stop()
    assert await asyncio.wait_for(call.read(), 10) == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_gateway_stream_refuses_user_tokens(start_notify: Start, channel_to: StubFor) -> None:
    stub = channel_to(await start_notify(worker=False))
    call = stub.StreamNotifications(pb.StreamNotificationsRequest(), metadata=user_metadata(42))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
