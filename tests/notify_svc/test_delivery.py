"""Queue to webhook: signed pushes, retries, dead letters, muting, collapsing, dedup."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from feedchat.notify.v1 import notify_pb2 as pb
from notify_svc.app import NotifyApp
from notify_svc.store import ATTEMPTS_KEY, DEAD_KEY
from notify_svc.webhook import verify
from tests.metrics import value
from tests.notify_svc.conftest import (
    StubFor,
    enqueue,
    list_notifications,
    queue_drained,
    register_webhook,
    user_metadata,
)
from tests.notify_svc.receiver import STALL, Receiver
from tests.waiting import wait_until

Start = Callable[..., Awaitable[NotifyApp]]
SECRET = b"test-webhook-secret"


async def test_offline_message_produces_one_signed_webhook(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    app = await start_notify(webhook_secret=SECRET.decode())
    stub = channel_to(app)
    await register_webhook(stub, 42, receiver.url)

    await enqueue(
        redis, user_id=42, message_id=7001, channel_id=500, sender_id=9, preview="are you there?"
    )
    await wait_until(lambda: queue_drained(redis))

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.method == "POST" and request.path == "/hook"
    assert verify(SECRET, request.headers, request.body)
    assert not verify(b"another-secret", request.headers, request.body)
    assert not verify(SECRET, request.headers, request.body + b" ")
    assert request.headers["x-feedchat-delivery"] == "7001.phone"
    payload = request.json()
    assert payload["user_id"] == "42" and payload["device_id"] == "phone"
    note = payload["notification"]
    assert (note["id"], note["channel_id"], note["sender_id"]) == ("7001", "500", "9")
    assert (note["count"], note["preview"], note["kind"]) == (1, "are you there?", "chat_message")
    assert abs(int(request.headers["x-feedchat-timestamp"]) - time.time()) < 60

    listed = await list_notifications(stub, 42)
    assert [(n.notification_id, n.count, n.read) for n in listed] == [(7001, 1, False)]
    assert await redis.hlen(ATTEMPTS_KEY) == 0


async def test_receiver_failing_twice_gets_it_on_the_third_try(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    receiver.plan = [500, 503]
    app = await start_notify(webhook_secret=SECRET.decode(), max_attempts=5)
    await register_webhook(channel_to(app), 42, receiver.url)
    metrics = app.host.metrics_url
    retries = await value(metrics, "feedchat_notify_retries_total")
    delivered = await value(metrics, "feedchat_notify_jobs_total", outcome="delivered")

    await enqueue(redis, user_id=42, message_id=7002)
    await wait_until(lambda: queue_drained(redis))

    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert all(verify(SECRET, r.headers, r.body) for r in receiver.requests)
    assert {r.headers["x-feedchat-delivery"] for r in receiver.requests} == {"7002.phone"}
    assert await redis.xlen(DEAD_KEY) == 0
    assert await value(metrics, "feedchat_notify_retries_total") == retries + 2
    assert await value(metrics, "feedchat_notify_jobs_total", outcome="delivered") == delivered + 1


async def test_receiver_always_failing_sends_job_to_dead_letter_stream(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    receiver.default = 500
    app = await start_notify(max_attempts=3)
    await register_webhook(channel_to(app), 42, receiver.url)
    metrics = app.host.metrics_url
    dead_before = await value(metrics, "feedchat_notify_jobs_total", outcome="dead_lettered")

    entry_id = await enqueue(redis, user_id=42, message_id=7003, preview="lost?")
    await wait_until(lambda: queue_drained(redis))

    assert len(receiver.requests) == 3
    dead: Any = await redis.xrange(DEAD_KEY)
    assert len(dead) == 1
    fields = {k.decode(): v.decode() for k, v in dead[0][1].items()}
    assert fields["source_id"] == entry_id and fields["attempts"] == "3"
    assert (fields["user_id"], fields["message_id"], fields["preview"]) == ("42", "7003", "lost?")
    assert "HTTP 500" in fields["error"]
    assert await redis.hlen(ATTEMPTS_KEY) == 0
    assert (
        await value(metrics, "feedchat_notify_jobs_total", outcome="dead_lettered")
        == dead_before + 1
    )


async def test_malformed_entry_goes_to_dead_letter_stream_at_once(
    start_notify: Start, receiver: Receiver, redis: aioredis.Redis
) -> None:
    await start_notify()
    await redis.xadd("notify:queue", {"kind": "chat_message", "user_id": "abc"})
    await wait_until(lambda: queue_drained(redis))
    dead: Any = await redis.xrange(DEAD_KEY)
    assert len(dead) == 1 and b"malformed" in dead[0][1][b"error"]
    assert receiver.requests == []


async def test_muted_channel_produces_nothing(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    app = await start_notify()
    stub = channel_to(app)
    await register_webhook(stub, 42, receiver.url)
    await stub.MuteChannel(pb.MuteChannelRequest(channel_id=500), metadata=user_metadata(42))

    await enqueue(redis, user_id=42, message_id=7004, channel_id=500)
    await enqueue(redis, user_id=42, message_id=7005, channel_id=501)  # not muted
    await wait_until(lambda: queue_drained(redis))

    assert [r.json()["notification"]["channel_id"] for r in receiver.requests] == ["501"]
    assert [n.channel_id for n in await list_notifications(stub, 42)] == [501]

    await stub.UnmuteChannel(pb.UnmuteChannelRequest(channel_id=500), metadata=user_metadata(42))
    await enqueue(redis, user_id=42, message_id=7006, channel_id=500)
    await wait_until(lambda: len(receiver.requests) == 2)


async def test_burst_in_one_channel_collapses_into_one_push_with_a_count(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    app = await start_notify(collapse_window=60.0)
    stub = channel_to(app)
    await register_webhook(stub, 42, receiver.url)

    for i in range(5):
        await enqueue(
            redis,
            user_id=42,
            message_id=8000 + i,
            channel_id=500,
            sender_id=10 + i,
            preview=f"msg {i}",
        )
    await enqueue(redis, user_id=42, message_id=8100, channel_id=600)
    await wait_until(lambda: queue_drained(redis))

    assert sorted(r.json()["notification"]["channel_id"] for r in receiver.requests) == [
        "500",
        "600",
    ]
    listed = {n.channel_id: n for n in await list_notifications(stub, 42)}
    assert listed[500].count == 5 and listed[500].notification_id == 8000
    assert (listed[500].last_message_id, listed[500].preview, listed[500].sender_id) == (
        8004,
        "msg 4",
        14,
    )
    assert listed[600].count == 1

    # Reading closes the window: the next message opens a new notification and pushes.
    await stub.MarkRead(pb.MarkReadRequest(notification_ids=[8000]), metadata=user_metadata(42))
    await enqueue(redis, user_id=42, message_id=8200, channel_id=500)
    await wait_until(lambda: len(receiver.requests) == 3)
    assert receiver.requests[-1].json()["notification"]["id"] == "8200"


async def test_retried_entry_for_same_message_does_not_notify_twice(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    app = await start_notify(collapse_window=0.0)
    stub = channel_to(app)
    await register_webhook(stub, 42, receiver.url)

    await enqueue(redis, user_id=42, message_id=9001)
    await wait_until(lambda: queue_drained(redis))
    await enqueue(redis, user_id=42, message_id=9001)  # the writer retried its XADD
    await wait_until(lambda: queue_drained(redis))

    assert len(receiver.delivered) == 1
    assert [(n.notification_id, n.count) for n in await list_notifications(stub, 42)] == [(9001, 1)]


async def test_only_failed_device_is_retried(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    second = Receiver(plan=[500])
    await second.start()
    try:
        app = await start_notify(webhook_allow=f"127.0.0.1:{receiver.port},127.0.0.1:{second.port}")
        stub = channel_to(app)
        await register_webhook(stub, 42, receiver.url, device_id="phone")
        await register_webhook(stub, 42, second.url, device_id="tablet")
        await enqueue(redis, user_id=42, message_id=9100)
        await wait_until(lambda: queue_drained(redis))
        assert [r.status for r in receiver.requests] == [200]
        assert [r.status for r in second.requests] == [500, 200]
    finally:
        await second.stop()


async def test_url_removed_from_allow_list_is_not_called(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    api = await start_notify(worker=False)
    await register_webhook(channel_to(api), 42, receiver.url)
    # A worker whose operator has since narrowed the allow-list.
    await start_notify(webhook_allow="push.example.com")
    await enqueue(redis, user_id=42, message_id=9200)
    await wait_until(lambda: queue_drained(redis))
    assert receiver.requests == []
    assert await redis.xlen(DEAD_KEY) == 0


async def test_dead_consumers_entries_are_claimed_even_if_some_were_deleted(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    await redis.xgroup_create("notify:queue", "notify-workers", id="0", mkstream=True)
    doomed = await enqueue(redis, user_id=42, message_id=9301)
    await enqueue(redis, user_id=42, message_id=9302, channel_id=777)
    # A consumer that read both entries and died; then a writer trimmed one away.
    await redis.xreadgroup("notify-workers", "ghost", {"notify:queue": ">"}, count=10)
    await redis.xdel("notify:queue", doomed)

    api = await start_notify(worker=False)
    await register_webhook(channel_to(api), 42, receiver.url)
    await start_notify()
    await wait_until(lambda: queue_drained(redis))
    assert [r.json()["notification"]["id"] for r in receiver.delivered] == ["9302"]


async def test_hanging_receiver_times_out_and_is_retried(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    receiver.plan = [STALL, 302]  # a hang, then a redirect: neither counts as delivered
    app = await start_notify(webhook_timeout=0.3)
    await register_webhook(channel_to(app), 42, receiver.url)
    await enqueue(redis, user_id=42, message_id=9400)
    await wait_until(lambda: queue_drained(redis))
    assert [r.status for r in receiver.requests] == [None, 302, 200]


async def test_stopping_worker_finishes_the_post_in_flight_and_acknowledges_it(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    receiver.delay = 0.5
    app = await start_notify(grace=3.0)
    await register_webhook(channel_to(app), 42, receiver.url)
    await enqueue(redis, user_id=42, message_id=9500)
    await wait_until(lambda: len(receiver.requests) == 1)  # answer still pending

    await app.stop()
    assert await queue_drained(redis)
    assert len(receiver.delivered) == 1


async def test_stopping_worker_leaves_a_job_waiting_to_retry_pending(
    start_notify: Start, channel_to: StubFor, receiver: Receiver, redis: aioredis.Redis
) -> None:
    receiver.default = 500
    app = await start_notify(grace=30.0, retry_base=60.0, retry_max=60.0)
    await register_webhook(channel_to(app), 42, receiver.url)
    await enqueue(redis, user_id=42, message_id=9600)
    await wait_until(lambda: receiver.requests and receiver.requests[0].status == 500)

    started = time.monotonic()
    await app.stop()
    assert time.monotonic() - started < 10  # neither the 30 s grace nor the 30-60 s backoff
    pending = await redis.xpending("notify:queue", "notify-workers")
    assert pending["pending"] == 1 and len(receiver.requests) == 1
