"""Fixtures for notify_svc tests: a loopback webhook receiver and in-process servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from feedchat.notify.v1 import notify_pb2 as pb
from feedchat.notify.v1 import notify_pb2_grpc
from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.notify_queue import QUEUE_KEY
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from notify_svc.app import NotifyApp, build
from notify_svc.config import NotifyConfig
from tests.conftest import run_on_both_topologies
from tests.notify_svc.receiver import Receiver


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_on_both_topologies(metafunc)


AUTHORITY = authority_from_config("", "", dev=True)
StubFor = Callable[[NotifyApp], notify_pb2_grpc.NotifyServiceStub]
"""The ``channel_to`` fixture: a NotifyService stub for a started app."""

# Small timings so retries, claims and windows play out in well under a second.
FAST: dict[str, Any] = {
    "webhook_allow_http": True,
    "webhook_timeout": 2.0,
    "read_block": 0.2,
    "claim_idle": 1.0,
    "claim_interval": 0.2,
    "retry_base": 0.05,
    "retry_max": 0.2,
    "max_attempts": 5,
}


def user_metadata(user_id: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_access(user_id).token}"),)


def service_metadata(name: str = "gateway") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_service(name).token}"),)


async def enqueue(
    redis: aioredis.Redis,
    user_id: int,
    message_id: int,
    channel_id: int = 500,
    sender_id: int = 9,
    preview: str = "hello",
    kind: str = "chat_message",
    created_ms: int = 1_760_000_000_000,
) -> str:
    """XADD one entry exactly as the queue contract says chat_svc writes it."""
    entry_id = await redis.xadd(
        QUEUE_KEY,
        {
            "kind": kind,
            "user_id": str(user_id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "sender_id": str(sender_id),
            "preview": preview,
            "created_ms": str(created_ms),
        },
    )
    return text(entry_id)


async def queue_drained(redis: RedisClient, group: str = "notify-workers") -> bool:
    """Every entry acknowledged and deleted."""
    if await redis.xlen(QUEUE_KEY):
        return False
    pending = await redis.xpending(QUEUE_KEY, group)
    return int(pending["pending"]) == 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


@pytest.fixture
def notify_config(make_config: Callable[..., Any], receiver: Receiver) -> Callable[..., Any]:
    """A NotifyConfig for this test: the receiver allowed, fast timings, overrides on top."""

    def config(**overrides: Any) -> NotifyConfig:
        values = dict(FAST, webhook_allow=f"127.0.0.1:{receiver.port}")
        values.update(overrides)
        result: NotifyConfig = make_config(NotifyConfig, **values)
        return result

    return config


@pytest.fixture
async def start_notify(
    notify_config: Callable[..., NotifyConfig],
) -> AsyncIterator[Callable[..., Awaitable[NotifyApp]]]:
    """Start in-process notify_svc servers (stopped at the end of the test)."""
    apps: list[NotifyApp] = []

    async def start(**overrides: Any) -> NotifyApp:
        overrides.setdefault("instance", f"notify-{len(apps)}")
        app = await build(notify_config(**overrides))
        apps.append(app)
        await app.start()
        return app

    yield start
    for app in reversed(apps):
        await app.stop()


@pytest.fixture
async def channel_to() -> AsyncIterator[StubFor]:
    channels: list[grpc.aio.Channel] = []

    def stub(app: NotifyApp) -> notify_pb2_grpc.NotifyServiceStub:
        channel = grpc.aio.insecure_channel(app.host.address)
        channels.append(channel)
        return notify_pb2_grpc.NotifyServiceStub(channel)

    yield stub
    for channel in channels:
        await channel.close()


async def register_webhook(
    stub: notify_pb2_grpc.NotifyServiceStub, user_id: int, url: str, device_id: str = "phone"
) -> pb.RegisterDeviceResponse:
    reply: pb.RegisterDeviceResponse = await stub.RegisterDevice(
        pb.RegisterDeviceRequest(device_id=device_id, kind=pb.DEVICE_KIND_WEBHOOK, webhook_url=url),
        metadata=user_metadata(user_id),
    )
    return reply


async def list_notifications(
    stub: notify_pb2_grpc.NotifyServiceStub, user_id: int, page_size: int = 100
) -> list[pb.Notification]:
    reply = await stub.ListNotifications(
        pb.ListNotificationsRequest(page_size=page_size), metadata=user_metadata(user_id)
    )
    return list(reply.notifications)
