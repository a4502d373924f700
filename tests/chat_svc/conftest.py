"""Fixtures: in-process chat servers on distinct instance names, and their clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from chat_svc.app import ChatApp, build
from chat_svc.config import ChatConfig
from tests.chat_svc.chatkit import Device

StartCluster = Callable[..., Awaitable[list[ChatApp]]]


@pytest.fixture
async def chat_cluster(make_config: Callable[..., Any], redis: Any) -> AsyncIterator[StartCluster]:
    """``await chat_cluster(n, **config)`` starts n more chat servers (chat-0, chat-1, ...)
    and waits until every one's ring holds all of them. Redis starts empty."""
    apps: list[ChatApp] = []

    async def start(count: int = 3, **overrides: Any) -> list[ChatApp]:
        for _ in range(count):
            config = make_config(ChatConfig, instance=f"chat-{len(apps)}", **overrides)
            app = await build(config)
            await app.start()
            apps.append(app)
        names = {a.config.instance for a in apps if not a.host.draining.is_set()}
        for app in apps:
            if not app.host.draining.is_set():
                await app.ring.wait_for(lambda r: set(r.members) == names, 10)
        return list(apps)

    yield start
    for app in reversed(apps):
        await app.stop()


@pytest.fixture
async def devices() -> AsyncIterator[Callable[..., Awaitable[Device]]]:
    """``await devices(user_id, address, ...)`` opens a device; all are closed afterwards."""
    opened: list[Device] = []

    async def open_device(user_id: int, address: str, **kwargs: Any) -> Device:
        synced = kwargs.pop("synced", True)
        device = Device(user_id, address, **kwargs)
        opened.append(device)
        return await device.open(synced=synced)

    yield open_device
    for device in opened:
        await device.close()
