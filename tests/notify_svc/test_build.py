"""A build that fails half-way (the port cannot be bound) leaves nothing running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from notify_svc.app import build
from notify_svc.config import NotifyConfig


async def test_failed_build_stops_the_event_reader(
    notify_config: Callable[..., NotifyConfig],
) -> None:
    def readers() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "notify-events" and not t.done()]

    before = len(readers())
    with pytest.raises(RuntimeError):
        await build(notify_config(host="203.0.113.1", port=1))  # not an address of ours
    assert len(readers()) == before
