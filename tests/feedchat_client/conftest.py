"""Fixture: a started in-process feedchat system (account, feed, router, 2 chat servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from feedchat_local.embedded import EmbeddedServer
from tests.feedchat_client.system import System


@pytest.fixture
async def system(
    make_config: Callable[..., Any], etcd: EmbeddedServer, etcd_prefix: str, redis: Any
) -> AsyncIterator[System]:
    """Not started: ``await system.start(chat_servers=2)`` in the test."""
    built = System(make_config, etcd.address, etcd_prefix)
    yield built
    await built.stop()
