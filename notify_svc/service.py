"""The user-facing rules of notify_svc: devices, the notification list, quiet settings.

No grpc here: the servicer converts protobuf to these calls and back; errors are
``feedchat_runtime.errors`` classes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from feedchat_runtime.errors import InvalidArgument, ResourceExhausted
from feedchat_runtime.notify_queue import MAX_UINT64
from feedchat_runtime.pages import page_size, page_tokens
from notify_svc.allowlist import AllowList
from notify_svc.config import NotifyConfig
from notify_svc.models import Device, DeviceKind, Notification
from notify_svc.store import NotifyStore

DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_MARK_READ = 100
MAX_STREAM_USERS = 1000
LIST_NOTIFICATIONS = "notify.ListNotifications"  # page token listing


def _check_device_id(device_id: str) -> None:
    if not DEVICE_ID.fullmatch(device_id):
        raise InvalidArgument.field(
            "device_id", "must be 1 to 64 characters from letters, digits, '.', '_', ':', '-'"
        )


def _check_channel(channel_id: int) -> None:
    if not 0 < channel_id <= MAX_UINT64:
        raise InvalidArgument.field("channel_id", "must be a non-zero channel id")


class NotifyService:
    """Per-user operations; ``user_id`` always comes from the caller's token."""

    def __init__(
        self,
        store: NotifyStore,
        allow: AllowList,
        config: NotifyConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._allow = allow
        self._config = config
        self._clock = clock
        self._tokens = page_tokens(config)

    async def register_device(
        self, user_id: int, device_id: str, kind: DeviceKind | None, webhook_url: str
    ) -> Device:
        _check_device_id(device_id)
        if kind is not DeviceKind.WEBHOOK:
            raise InvalidArgument.field("kind", "must be DEVICE_KIND_WEBHOOK")
        problem = self._allow.check(webhook_url)
        if problem is not None:
            raise InvalidArgument.field("webhook_url", problem, reason="WEBHOOK_URL_NOT_ALLOWED")
        device = Device(device_id, kind, webhook_url, int(self._clock() * 1000))
        if not await self._store.put_device(user_id, device, self._config.max_devices):
            raise ResourceExhausted(
                f"at most {self._config.max_devices} devices per user; unregister one first",
                reason="TOO_MANY_DEVICES",
            )
        return device

    async def unregister_device(self, user_id: int, device_id: str) -> bool:
        _check_device_id(device_id)
        return await self._store.delete_device(user_id, device_id)

    async def list_devices(self, user_id: int) -> list[Device]:
        return await self._store.devices(user_id)

    async def list_notifications(
        self, user_id: int, size: int, page_token: str
    ) -> tuple[list[Notification], str]:
        count = page_size(size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = self._tokens.check(page_token, LIST_NOTIFICATIONS, user_id)
        found, after = await self._store.page(user_id, before, count)
        next_token = "" if after is None else self._tokens.issue(LIST_NOTIFICATIONS, user_id, after)
        return found, next_token

    async def mark_read(self, user_id: int, notification_ids: Sequence[int]) -> int:
        if not 0 < len(notification_ids) <= MAX_MARK_READ:
            raise InvalidArgument.field("notification_ids", f"give 1 to {MAX_MARK_READ} ids")
        if any(n <= 0 for n in notification_ids):
            raise InvalidArgument.field("notification_ids", "ids must be non-zero")
        return await self._store.mark_read(user_id, sorted(set(notification_ids)))

    async def mute(self, user_id: int, channel_id: int) -> None:
        _check_channel(channel_id)
        if not await self._store.mute(user_id, channel_id, self._config.max_muted_channels):
            raise ResourceExhausted(
                f"at most {self._config.max_muted_channels} muted channels per user",
                reason="TOO_MANY_MUTED_CHANNELS",
            )

    async def unmute(self, user_id: int, channel_id: int) -> None:
        _check_channel(channel_id)
        await self._store.unmute(user_id, channel_id)

    async def muted(self, user_id: int) -> list[int]:
        return await self._store.muted(user_id)


def check_stream_filter(user_ids: Sequence[int]) -> frozenset[int]:
    if len(user_ids) > MAX_STREAM_USERS:
        raise InvalidArgument.field("user_ids", f"at most {MAX_STREAM_USERS} user ids")
    return frozenset(user_ids)
