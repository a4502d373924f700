"""The user-facing rules of notify_svc: devices, the notification list, quiet settings.

No grpc here: the servicer converts protobuf to these calls and back; errors are
``feedchat_runtime.errors`` classes.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Sequence

from feedchat_runtime.errors import InvalidArgument, ResourceExhausted
from notify_svc.allowlist import AllowList
from notify_svc.config import NotifyConfig
from notify_svc.models import MAX_UINT64, Device, DeviceKind, Notification
from notify_svc.store import NotifyStore, pad

DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_MARK_READ = 100
MAX_STREAM_USERS = 1000
_TOKEN_VERSION = "n1"


def encode_page_token(user_id: int, last_nid: int) -> str:
    raw = f"{_TOKEN_VERSION}:{user_id}:{pad(last_nid)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(user_id: int, token: str) -> int:
    """The notification id a page token continues after; INVALID_ARGUMENT if not ours."""
    bad = InvalidArgument.field("page_token", "is not a token this service issued to you",
                                reason="INVALID_PAGE_TOKEN")
    if len(token) > 100:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    version, _, rest = raw.partition(":")
    owner, _, nid = rest.partition(":")
    if version != _TOKEN_VERSION or owner != str(user_id) or len(nid) != 20 or not nid.isdigit():
        raise bad
    return int(nid)


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

    async def register_device(
        self, user_id: int, device_id: str, kind: DeviceKind | None, webhook_url: str
    ) -> Device:
        _check_device_id(device_id)
        if kind is not DeviceKind.WEBHOOK:
            raise InvalidArgument.field("kind", "must be DEVICE_KIND_WEBHOOK")
        problem = self._allow.check(webhook_url)
        if problem is not None:
            raise InvalidArgument.field(
                "webhook_url", problem, reason="WEBHOOK_URL_NOT_ALLOWED"
            )
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
        self, user_id: int, page_size: int, page_token: str
    ) -> tuple[list[Notification], str]:
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument.field("page_size", f"must be 0 to {MAX_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        before = decode_page_token(user_id, page_token) if page_token else None
        found, after = await self._store.page(user_id, before, size)
        return found, (encode_page_token(user_id, after) if after is not None else "")

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
