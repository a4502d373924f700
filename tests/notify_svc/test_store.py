"""The store's scripts on a real Redis (one node and the cluster): every key they touch is
declared, including the ones they only learn about (the open notification, the ones a
full list drops)."""

from __future__ import annotations

from feedchat_runtime.notify_queue import NotificationKind
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from notify_svc.store import ApplyResult, NotifyStore, list_key, notification_key

CHAT = NotificationKind.CHAT_MESSAGE
USER = 42


async def _apply(
    store: NotifyStore, message_id: int, channel_id: int, window_ms: int = 0, keep: int = 3
) -> ApplyResult:
    return await store.apply(
        USER,
        CHAT,
        channel_id,
        message_id,
        9,
        f"m{message_id}",
        1_000 + message_id,
        window_ms,
        60_000,
        keep,
    )


async def test_full_list_drops_its_oldest_notifications_and_their_hashes(
    redis: RedisClient,
) -> None:
    store = NotifyStore(redis)
    for message_id in (10, 20, 30, 40):
        result = await _apply(store, message_id, channel_id=message_id)
        assert (result.outcome, result.nid, result.fresh) == ("created", message_id, True)
    assert [int(text(x)) for x in await redis.zrange(list_key(USER), 0, -1)] == [20, 30, 40]
    assert await store.notification(USER, 10) is None
    # A late message older than all it would keep is created and dropped at once.
    assert (await _apply(store, 5, channel_id=5)).outcome == "created"
    assert await store.notification(USER, 5) is None
    assert [int(text(x)) for x in await redis.zrange(list_key(USER), 0, -1)] == [20, 30, 40]
    # A smaller limit drops several in one job.
    assert (await _apply(store, 50, channel_id=50, keep=2)).outcome == "created"
    assert [int(text(x)) for x in await redis.zrange(list_key(USER), 0, -1)] == [40, 50]
    assert not await redis.exists(notification_key(USER, 20), notification_key(USER, 30))


async def test_open_notification_collapses_until_read_then_a_new_one_opens(
    redis: RedisClient,
) -> None:
    store = NotifyStore(redis)
    assert (await _apply(store, 10, channel_id=7, window_ms=60_000)).outcome == "created"
    collapsed = await _apply(store, 11, channel_id=7, window_ms=60_000)
    assert (collapsed.outcome, collapsed.nid) == ("collapsed", 10)
    note = await store.notification(USER, 10)
    assert note is not None and (note.count, note.last_message_id) == (2, 11)
    # A retried job replays its first outcome and changes nothing.
    again = await _apply(store, 11, channel_id=7, window_ms=60_000)
    assert (again.outcome, again.nid, again.fresh) == ("collapsed", 10, False)
    assert await store.mark_read(USER, [10, 999]) == 1
    assert await store.mark_read(USER, [10]) == 0
    reopened = await _apply(store, 12, channel_id=7, window_ms=60_000)
    assert (reopened.outcome, reopened.nid) == ("created", 12)
