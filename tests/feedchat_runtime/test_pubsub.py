"""The process's one pub/sub hub: channels counted per listener, confirmed subscriptions,
and the gap reported after Redis dropped the connection."""

from __future__ import annotations

from feedchat_runtime.pubsub import PubSubHub
from feedchat_runtime.redis_client import RedisClient
from tests.waiting import wait_until

Heard = list[tuple[str, str]]


def _text(_channel: str, data: bytes) -> str:
    return data.decode()


async def _subscribers(redis: RedisClient, channel: str) -> int:
    [(_, count)] = await redis.pubsub_numsub(channel)
    return int(count)


async def _unsubscribed(redis: RedisClient, channel: str) -> bool:
    return await _subscribers(redis, channel) == 0


async def test_a_channel_stays_subscribed_while_any_listener_wants_it(
    redis: RedisClient,
) -> None:
    hub: PubSubHub[str] = PubSubHub(redis, "test-hub", _text)
    home: Heard = []
    one: Heard = []
    two: Heard = []
    await hub.start("test:home", lambda c, m: home.append((c, m)))
    try:
        await hub.subscribe(["test:a"], lambda c, m: one.append((c, m)))

        def listener_two(channel: str, message: str) -> None:
            two.append((channel, message))

        await hub.subscribe(["test:a", "test:b"], listener_two)
        # Confirmed on return: a message published now reaches both listeners.
        await redis.publish("test:a", "x")
        await wait_until(lambda: one and two, 5, "both listeners")
        assert one == two == [("test:a", "x")]
        assert (hub.subscribed_channels, await _subscribers(redis, "test:a")) == (2, 1)

        await hub.unsubscribe(["test:a", "test:b"], listener_two)
        assert hub.subscribed_channels == 1  # test:a still has a listener
        assert await _subscribers(redis, "test:a") == 1
        await wait_until(lambda: _unsubscribed(redis, "test:b"), 5, "test:b unsubscribed")
        await redis.publish("test:home", "h")
        await wait_until(lambda: home, 5, "the home channel's message")
        assert home == [("test:home", "h")]
    finally:
        await hub.close()


async def test_a_dropped_connection_is_reported_then_resubscribed(redis: RedisClient) -> None:
    hub: PubSubHub[str] = PubSubHub(redis, "test-hub", _text)
    lost: list[bool] = []
    gaps: list[list[str]] = []
    heard: Heard = []
    hub.on_lost = lambda: lost.append(True)
    hub.on_gap = gaps.append
    await hub.start("test:home", lambda c, m: None)
    try:
        await hub.subscribe(["test:a"], lambda c, m: heard.append((c, m)))
        await redis.client_kill_filter(_type="pubsub")
        # Both channels come back, and both are reported as having had a gap.
        await wait_until(lambda: len(sum(gaps, [])) >= 2, 10, "the gap report")
        assert sorted(sum(gaps, [])) == ["test:a", "test:home"]
        assert lost == [True]  # only the hub reconnects, once
        await redis.publish("test:a", "after")
        await wait_until(lambda: heard, 5, "a message after the reconnect")
        assert heard == [("test:a", "after")]
    finally:
        await hub.close()


async def test_listeners_that_come_and_go_while_the_connection_drops_end_subscribed(
    redis: RedisClient,
) -> None:
    # Streams end and begin while Redis drops the hub's connection, before the hub's reader
    # has noticed: their (un)subscribes meet the broken connection. None may fail, and
    # every channel still wanted ends subscribed.
    hub: PubSubHub[str] = PubSubHub(redis, "test-hub", _text)
    heard: Heard = []

    def listener(channel: str, message: str) -> None:
        heard.append((channel, message))

    await hub.start("test:home", lambda c, m: None)
    try:
        await hub.subscribe(["test:0"], listener)
        for round_ in range(1, 11):
            await redis.client_kill_filter(_type="pubsub")
            await hub.unsubscribe([f"test:{round_ - 1}"], listener)
            await hub.subscribe([f"test:{round_}"], listener)
        await redis.publish("test:10", "last")
        await wait_until(lambda: heard, 5, "a message on the channel subscribed last")
        assert heard == [("test:10", "last")]
        assert await _unsubscribed(redis, "test:9")
    finally:
        await hub.close()
