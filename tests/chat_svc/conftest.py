"""Fixtures: in-process chat servers on distinct instance names, and their clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chat_svc.app import ChatApp, build
from chat_svc.config import ChatConfig
from tests.chat_svc.chatkit import Device, OpenDevice, StartCluster
from tests.conftest import run_on_both_topologies

# The modules whose behaviour rests on the Redis store (the two-step send, fanout claims,
# inboxes, history, read state, member sets) also run on the Redis Cluster; routing,
# churn, health and process kills do not depend on its topology.
ON_BOTH_TOPOLOGIES = {
    "test_chat_delivery",
    "test_chat_events",
    "test_chat_fanout_claims",
    "test_chat_group_commit",
    "test_chat_groups",
    "test_chat_read_state",
    "test_chat_record",
    "test_chat_send_atomic",
    "test_chat_sync",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rsplit(".", 1)[-1] in ON_BOTH_TOPOLOGIES:
        run_on_both_topologies(metafunc)


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
async def devices() -> AsyncIterator[OpenDevice]:
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
