"""A whole started system (every service, one chat server) for the edge tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from feedchat_local.embedded import EmbeddedServer
from tests.feedchat_client.system import System


@pytest.fixture
async def whole_system(
    make_config: Callable[..., Any], etcd: EmbeddedServer, etcd_prefix: str, redis: Any
) -> AsyncIterator[System]:
    """account, feed, router, presence, notify and one chat server, started."""
    started = await System(make_config, etcd.address, etcd_prefix).start(
        chat_servers=1, presence=True, notify=True
    )
    yield started
    await started.stop()
