"""The notify:queue contract: what a producer writes is what notify_svc reads back."""

from __future__ import annotations

from dataclasses import replace

from feedchat_runtime.notify_queue import (
    QUEUE_KEY,
    Job,
    Notice,
    NotificationKind,
    enqueue,
    parse_job,
)
from feedchat_runtime.redis_client import RedisClient
from tests.redis_reads import stream_entries


async def test_enqueued_entries_parse_back_as_one_job_per_recipient(redis: RedisClient) -> None:
    notice = Notice(
        kind=NotificationKind.FEED_POST,
        channel_id=7,
        message_id=2**63 + 5,
        sender_id=7,
        preview="é" * 200,
        created_ms=1_700_000_000_123,
    )
    pipe = redis.pipeline(transaction=False)
    enqueue(pipe, notice, [42, 43], cap=1000, extra={"traceparent": "00-x"})
    await pipe.execute()
    entries = await stream_entries(redis, QUEUE_KEY)
    cut = replace(notice, preview="é" * 140)  # previews are cut to 140 characters
    assert [parse_job(fields) for _, fields in entries] == [
        Job(**vars(cut), user_id=42),
        Job(**vars(cut), user_id=43),
    ]
    assert [fields[b"traceparent"] for _, fields in entries] == [b"00-x", b"00-x"]
