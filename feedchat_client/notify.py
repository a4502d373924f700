"""Typed wrapper of NotifyService: the calling user's notifications."""

from __future__ import annotations

from typing import Any

import grpc

from feedchat.notify.v1 import notify_pb2, notify_pb2_grpc
from feedchat_client.models import Notification, NotificationPage
from feedchat_client.rpc import ServiceClient


class NotifyClient(ServiceClient):
    service = "notify"

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        return notify_pb2_grpc.NotifyServiceStub(channel)

    async def page(self, page_size: int = 20, page_token: str = "") -> NotificationPage:
        """One page of notifications, newest first (page_size 1 to 100)."""
        reply = await self._call(
            "ListNotifications",
            notify_pb2.ListNotificationsRequest(page_size=page_size, page_token=page_token),
        )
        return NotificationPage(
            [Notification.from_pb(n) for n in reply.notifications], reply.next_page_token
        )

    async def mark_read(self, notification_ids: list[int]) -> int:
        """Mark 1 to 100 notifications read; returns how many were unread before."""
        reply = await self._call(
            "MarkRead", notify_pb2.MarkReadRequest(notification_ids=notification_ids)
        )
        return int(reply.marked_count)
