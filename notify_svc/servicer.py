"""gRPC face of notify_svc: protobuf <-> plain data, caller from the guard, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from feedchat.notify.v1 import notify_pb2 as pb
from feedchat.notify.v1 import notify_pb2_grpc
from feedchat_runtime.auth import require_service, require_user
from feedchat_runtime.clock import timestamp
from feedchat_runtime.errors import ResourceExhausted
from feedchat_runtime.notify_queue import NotificationKind
from notify_svc.events import EventHub, Overflowed
from notify_svc.models import Device, DeviceKind, EventKind, Notification
from notify_svc.service import NotifyService, check_stream_filter

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotifyService"].full_name
STREAM_METHOD = f"/{SERVICE_NAME}/StreamNotifications"

_DEVICE_KINDS = {pb.DEVICE_KIND_WEBHOOK: DeviceKind.WEBHOOK}
_DEVICE_KINDS_PB = {v: k for k, v in _DEVICE_KINDS.items()}
_NOTE_KINDS_PB = {
    NotificationKind.CHAT_MESSAGE: pb.NOTIFICATION_KIND_CHAT_MESSAGE,
    NotificationKind.FEED_POST: pb.NOTIFICATION_KIND_FEED_POST,
}
_EVENTS_PB = {
    EventKind.CREATED: pb.NOTIFICATION_EVENT_CREATED,
    EventKind.UPDATED: pb.NOTIFICATION_EVENT_UPDATED,
}


def device_pb(device: Device) -> pb.Device:
    return pb.Device(
        device_id=device.device_id,
        kind=_DEVICE_KINDS_PB[device.kind],
        webhook_url=device.webhook_url,
        registered_at=timestamp(device.registered_ms),
    )


def notification_pb(note: Notification) -> pb.Notification:
    return pb.Notification(
        notification_id=note.notification_id,
        kind=_NOTE_KINDS_PB[note.kind],
        channel_id=note.channel_id,
        sender_id=note.sender_id,
        last_message_id=note.last_message_id,
        count=note.count,
        preview=note.preview,
        created_at=timestamp(note.created_ms),
        updated_at=timestamp(note.updated_ms),
        read=note.read,
    )


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    def __init__(self, service: NotifyService, hub: EventHub, draining: asyncio.Event) -> None:
        self._service = service
        self._hub = hub
        self._draining = draining

    async def RegisterDevice(
        self, request: pb.RegisterDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterDeviceResponse:
        device = await self._service.register_device(
            require_user(),
            request.device_id,
            _DEVICE_KINDS.get(request.kind),
            request.webhook_url,
        )
        return pb.RegisterDeviceResponse(device=device_pb(device))

    async def UnregisterDevice(
        self, request: pb.UnregisterDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnregisterDeviceResponse:
        removed = await self._service.unregister_device(require_user(), request.device_id)
        return pb.UnregisterDeviceResponse(removed=removed)

    async def ListDevices(
        self, request: pb.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDevicesResponse:
        devices = await self._service.list_devices(require_user())
        return pb.ListDevicesResponse(devices=[device_pb(d) for d in devices])

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNotificationsResponse:
        found, token = await self._service.list_notifications(
            require_user(), request.page_size, request.page_token
        )
        return pb.ListNotificationsResponse(
            notifications=[notification_pb(n) for n in found], next_page_token=token
        )

    async def MarkRead(
        self, request: pb.MarkReadRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkReadResponse:
        marked = await self._service.mark_read(require_user(), list(request.notification_ids))
        return pb.MarkReadResponse(marked_count=marked)

    async def MuteChannel(
        self, request: pb.MuteChannelRequest, context: grpc.aio.ServicerContext
    ) -> pb.MuteChannelResponse:
        await self._service.mute(require_user(), request.channel_id)
        return pb.MuteChannelResponse()

    async def UnmuteChannel(
        self, request: pb.UnmuteChannelRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnmuteChannelResponse:
        await self._service.unmute(require_user(), request.channel_id)
        return pb.UnmuteChannelResponse()

    async def ListMutedChannels(
        self, request: pb.ListMutedChannelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMutedChannelsResponse:
        return pb.ListMutedChannelsResponse(channel_ids=await self._service.muted(require_user()))

    async def StreamNotifications(
        self, request: pb.StreamNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamNotificationsResponse]:
        require_service()
        users = check_stream_filter(list(request.user_ids))
        sub = self._hub.subscribe(users)
        try:
            # Headers go out once the subscription exists: a client that awaited them
            # knows every later event reaches it.
            await context.send_initial_metadata(())
            while True:
                try:
                    event = await sub.next(self._draining)
                except Overflowed:
                    raise ResourceExhausted(
                        "the stream fell too far behind; reconnect", reason="STREAM_TOO_SLOW"
                    ) from None
                if event is None:
                    return  # server is draining: end with OK
                yield pb.StreamNotificationsResponse(
                    event=_EVENTS_PB[event.kind],
                    user_id=event.user_id,
                    notification=notification_pb(event.notification),
                )
        finally:
            self._hub.unsubscribe(sub)
