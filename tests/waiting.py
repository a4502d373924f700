"""Waiting for a condition in tests: poll with a deadline, never sleep and hope."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",  # noqa: ASYNC109
    interval: float = 0.02,
) -> Any:
    """Poll ``predicate`` (sync, or returning an awaitable) until it is truthy; return that
    value, or fail the test after ``timeout`` seconds naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


eventually = wait_until
"""The same wait, under the name the tests of async checks read best with."""
