"""GetMessageStats: per-bucket counts that match the messages sent (by their Snowflake ids'
times), survive a chat server restart, members only, bounded ranges."""

from __future__ import annotations

import time
from collections import Counter

import grpc
import pytest

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.errors import error_details
from feedchat_runtime.snowflake import timestamp_ms
from tests.chat_svc.chatkit import StartCluster, auth, open_direct
from tests.chat_svc.pollkit import send

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
BUCKETS = {
    MINUTE: chat_pb2.STATS_BUCKET_MINUTE,
    HOUR: chat_pb2.STATS_BUCKET_HOUR,
    DAY: chat_pb2.STATS_BUCKET_DAY,
}


async def _stats(address: str, user: int, channel: int, size: int, **fields: int) -> dict[int, int]:
    async with grpc.aio.insecure_channel(address) as ch:
        reply = await chat_pb2_grpc.ChatServiceStub(ch).GetMessageStats(
            chat_pb2.GetMessageStatsRequest(channel_id=channel, bucket=BUCKETS[size], **fields),
            metadata=auth(user),
        )
    assert reply.total == sum(c.count for c in reply.counts)
    return {c.start_ms: c.count for c in reply.counts if c.count}


def _expected(message_ids: list[int], size: int) -> dict[int, int]:
    return dict(Counter(timestamp_ms(m) // size * size for m in message_ids))


async def test_counts_match_the_messages_bucket_by_bucket_across_a_restart(
    chat_cluster: StartCluster,
) -> None:
    (first,) = await chat_cluster(1, send_rate=1000.0, send_burst=1000)
    direct = await open_direct(first.address, 1, 2)
    other = await open_direct(first.address, 1, 3)
    sent = [(await send(first.address, 1, direct, f"m{i}")).message_id for i in range(12)]
    again = await send(first.address, 1, direct, "m0")  # a retry: counted once
    assert again.duplicate
    sent_other = [(await send(first.address, 3, other, f"o{i}")).message_id for i in range(4)]
    for size in (MINUTE, HOUR, DAY):
        assert await _stats(first.address, 2, direct, size) == _expected(sent, size)
    await first.stop()
    (_, second) = await chat_cluster(1, send_rate=1000.0, send_burst=1000)
    sent += [(await send(second.address, 2, direct, f"n{i}")).message_id for i in range(3)]
    for size in (MINUTE, HOUR, DAY):
        assert await _stats(second.address, 1, direct, size) == _expected(sent, size)
        # channel 0: every channel of the caller, summed
        assert await _stats(second.address, 1, 0, size) == _expected(sent + sent_other, size)
    now = time.time_ns() // 1_000_000
    one = await _stats(second.address, 2, direct, MINUTE, start_ms=now - 3 * MINUTE, end_ms=now)
    assert one == {k: v for k, v in _expected(sent, MINUTE).items() if k >= now - 3 * MINUTE}


async def _refused(channel: int, user: int, address: str, **fields: int) -> tuple[object, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stats(address, user, channel, MINUTE, **fields)
    details = await error_details(err.value)
    return details.code, details.reason


async def test_non_members_and_unbounded_ranges_are_refused(chat_cluster: StartCluster) -> None:
    (app,) = await chat_cluster(1)
    direct = await open_direct(app.address, 1, 2)
    assert await _refused(direct, 9, app.address) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_A_MEMBER",
    )
    now = time.time_ns() // 1_000_000
    assert await _refused(direct, 1, app.address, start_ms=now - 2 * DAY, end_ms=now) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_BUCKETS",
    )
    assert await _refused(
        direct, 1, app.address, start_ms=now - 400 * DAY, end_ms=now - 400 * DAY + HOUR
    ) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "BEFORE_RETENTION",
    )
    assert await _refused(direct, 1, app.address, start_ms=now, end_ms=now - MINUTE) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "BAD_RANGE",
    )
    async with grpc.aio.insecure_channel(app.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await chat_pb2_grpc.ChatServiceStub(ch).GetMessageStats(
                chat_pb2.GetMessageStatsRequest(channel_id=direct), metadata=auth(1)
            )
    assert (await error_details(err.value)).reason == "BAD_BUCKET"
