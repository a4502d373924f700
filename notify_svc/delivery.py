"""One job from queue to devices: apply (collapse, mute, dedup), publish, push.

The at-least-once / de-duplication boundary, in order:

1. ``apply`` is atomic and idempotent per (user, message) (see :mod:`notify_svc.collapse`):
   however often a job runs, the user's list changes once.
2. Only the job that *opened* a notification pushes it. For each device, the push is
   skipped when a delivered marker ``(notification, device)`` exists; the marker is set
   right after the receiver answers 2xx. So a job retried after a crash, a lost
   acknowledgement, or another device's failure never re-sends to a device that already
   confirmed.
3. The one window left open is a crash between the receiver's 2xx and the marker write
   (a single Redis round trip). Then the push is sent again with the same
   ``X-Feedchat-Delivery`` id, which receivers use to drop it. Setting the marker *before*
   the POST would close that window but lose the push whenever the POST then fails, so
   at-least-once wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from feedchat_runtime.notify_queue import Job
from notify_svc.collapse import COLLAPSED, CREATED, Collapser
from notify_svc.models import Device, DeviceKind, Event, EventKind, Notification
from notify_svc.store import NotifyStore
from notify_svc.webhook import WebhookSender

logger = logging.getLogger(__name__)


def event_json(event: Event) -> str:
    return json.dumps(
        {
            "event": event.kind.value,
            "user_id": str(event.user_id),
            "notification": event.notification.to_json(),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def webhook_payload(user_id: int, device: Device, note: Notification) -> dict[str, object]:
    return {
        "type": "notification",
        "delivery_id": f"{note.notification_id}.{device.device_id}",
        "user_id": str(user_id),
        "device_id": device.device_id,
        "notification": note.to_json(),
    }


class Dispatcher:
    """Runs one job; returns the failures that deserve a retry (empty: done)."""

    def __init__(
        self,
        store: NotifyStore,
        collapser: Collapser,
        sender: WebhookSender,
        marker_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._collapser = collapser
        self._sender = sender
        self._ttl_ms = max(1, int(marker_ttl * 1000))
        self._clock = clock

    async def handle(self, job: Job) -> list[str]:
        result = await self._collapser.apply(job)
        if result.outcome not in (CREATED, COLLAPSED):
            return []  # muted: nothing at all
        if result.outcome != CREATED:
            if result.fresh:
                note = await self._store.notification(job.user_id, result.nid)
                await self._publish(job.user_id, note, EventKind.UPDATED)
            return []  # collapsed into a notification that was (or is being) pushed
        note, devices, done = await self._store.push_state(job.user_id, result.nid)
        if result.fresh:
            await self._publish(job.user_id, note, EventKind.CREATED)
        if note is None or note.read:
            return []  # trimmed away, or the user has seen it already
        todo = [d for d in devices if d.device_id not in done]
        failures = await asyncio.gather(*(self._push_one(job.user_id, d, note) for d in todo))
        return [f for f in failures if f]

    async def _publish(self, user_id: int, note: Notification | None, kind: EventKind) -> None:
        if note is None:
            return
        try:
            await self._store.publish(event_json(Event(kind, user_id, note)))
        except Exception:  # the live tap is best effort; the push must not wait on it
            logger.warning("publishing notification event failed", exc_info=True)

    async def _push_one(self, user_id: int, device: Device, note: Notification) -> str:
        if device.kind is not DeviceKind.WEBHOOK:
            return ""
        payload = webhook_payload(user_id, device, note)
        result = await self._sender.deliver(
            device.webhook_url, payload, str(payload["delivery_id"])
        )
        if result.ok:
            await self._store.mark_pushed(
                user_id,
                note.notification_id,
                device.device_id,
                int(self._clock() * 1000),
                self._ttl_ms,
            )
            return ""
        if result.permanent:
            logger.warning(
                "not pushing to device %s of user %s: %s", device.device_id, user_id, result.error
            )
            return ""
        return f"{device.device_id}: {result.error}"
