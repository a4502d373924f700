"""Posting is rate limited per user, atomically in Redis, with an exact RetryInfo."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from feedchat_client.errors import error_details
from tests.feed_svc.conftest import StartSystem


async def test_over_the_limit_is_resource_exhausted_with_exact_retry(
    start_system: StartSystem,
) -> None:
    system = await start_system(post_rate=0.1, post_burst=2)  # one post every 10 s
    alice = await system.sign_up()
    started = time.monotonic()
    await alice.post("one")
    await alice.post("two")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.post("three")
    elapsed = time.monotonic() - started
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert details.retry_after is not None
    # A token comes back 10 s after the bucket was full, minus the time already spent.
    assert 10.0 - elapsed - 0.05 <= details.retry_after <= 10.0


async def test_posting_succeeds_again_after_the_retry_delay(start_system: StartSystem) -> None:
    system = await start_system(post_rate=4.0, post_burst=1)
    alice, bob = await system.sign_up(), await system.sign_up()
    await alice.post("first")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.post("too soon")
    delay = (await error_details(caught.value)).retry_after
    assert delay is not None and 0 < delay <= 0.25  # 250 ms a token, minus time spent
    await bob.post("another user has their own bucket")
    await asyncio.sleep(delay)  # waiting is the behaviour under test
    await alice.post("on time")


async def test_concurrent_posts_never_exceed_the_burst(start_system: StartSystem) -> None:
    system = await start_system(post_rate=0.01, post_burst=5)
    alice = await system.sign_up()
    results = await asyncio.gather(
        *(alice.post(f"p{i}") for i in range(20)), return_exceptions=True
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 5
    assert len(refused) == 15
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
