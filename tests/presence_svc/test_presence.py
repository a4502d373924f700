"""Online, offline and last seen across two presence instances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc

from feedchat.presence.v1 import presence_pb2 as pb
from feedchat.presence.v1 import presence_pb2_grpc
from feedchat_client.errors import error_details
from feedchat_runtime.redis_client import connect_any, open_pubsub
from feedchat_runtime.replies import text
from presence_svc.store import channel, devices_key
from tests.presence_svc.conftest import Cluster, service_metadata, user_metadata
from tests.waiting import eventually

Start = Callable[..., Awaitable[Cluster]]
ONLINE, AWAY, OFFLINE = (
    pb.PRESENCE_STATUS_ONLINE,
    pb.PRESENCE_STATUS_AWAY,
    pb.PRESENCE_STATUS_OFFLINE,
)


async def test_connect_makes_user_online_for_watcher_on_other_instance(
    start_cluster: Start,
) -> None:
    cluster = await start_cluster()
    watcher = await cluster.connect(0, 1)
    assert list((await watcher.snapshot()).presences) == []
    watcher.watch([2])
    [before] = (await watcher.snapshot()).presences
    assert (before.user_id, before.status, before.HasField("last_seen_time")) == (2, OFFLINE, False)

    await cluster.connect(1, 2)
    change = await watcher.change()
    assert (change.user_id, change.status, change.version) == (2, ONLINE, 1)
    assert abs(change.last_seen_time.ToMilliseconds() - time.time() * 1000) < 5000
    assert await cluster.status(2) == ONLINE


async def test_clean_close_goes_offline_at_once_with_last_seen(start_cluster: Start) -> None:
    cluster = await start_cluster(offline_timeout=20.0, heartbeat_interval=5.0)
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    device = await cluster.connect(1, 2)
    await device.snapshot()
    watcher.watch([2])
    assert [p.status for p in (await watcher.snapshot()).presences] == [ONLINE]

    closed_at = time.monotonic()
    closed_wall_ms = time.time() * 1000
    await device.close()
    change = await watcher.change(timeout=2.0)
    assert time.monotonic() - closed_at < 2.0  # the timeout is 20 s: this was the close
    assert (change.status, change.version) == (OFFLINE, 2)
    assert abs(change.last_seen_time.ToMilliseconds() - closed_wall_ms) < 1000
    [looked_up] = await cluster.lookup([2], instance=1)
    assert looked_up.status == OFFLINE
    assert looked_up.last_seen_time == change.last_seen_time


async def test_silent_device_goes_offline_after_timeout_not_before(start_cluster: Start) -> None:
    cluster = await start_cluster(offline_timeout=1.5)
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch([2])
    await watcher.snapshot()
    device = await cluster.connect(1, 2)
    await device.snapshot()
    assert (await watcher.change()).status == ONLINE
    last_beat = time.monotonic()
    # The device keeps its stream open but stops heartbeating.
    while time.monotonic() - last_beat < 1.2:
        assert await cluster.status(2) == ONLINE
        await asyncio.sleep(0.05)
    change = await watcher.change(timeout=3.0)
    assert change.status == OFFLINE
    assert time.monotonic() - last_beat >= 1.5


async def test_heartbeats_keep_a_device_online_past_the_timeout(start_cluster: Start) -> None:
    cluster = await start_cluster(offline_timeout=1.0, heartbeat_interval=0.2)
    device = await cluster.connect(1, 2)
    await device.snapshot()
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        device.heartbeat()
        assert await cluster.status(2) == ONLINE
        await asyncio.sleep(0.2)


async def test_vanished_connection_goes_offline_after_timeout(start_cluster: Start) -> None:
    cluster = await start_cluster(offline_timeout=1.5)
    device = await cluster.connect(1, 2)
    await device.snapshot()
    gone_at = time.monotonic()
    await device.vanish()
    assert await cluster.status(2) == ONLINE
    await eventually(lambda: _is(cluster, 2, OFFLINE), timeout=4.0)
    assert time.monotonic() - gone_at >= 1.3


async def test_devices_of_a_stopped_instance_are_swept_by_the_other(start_cluster: Start) -> None:
    cluster = await start_cluster(offline_timeout=1.5)
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch([2])
    await watcher.snapshot()
    device = await cluster.connect(1, 2)
    await device.snapshot()
    connected_at = time.monotonic()
    assert (await watcher.change()).status == ONLINE
    await cluster.apps[1].stop()
    assert await device.call.read() is grpc.aio.EOF  # the drain ends the stream cleanly
    # ...but does not say goodbye for the device: it goes offline by its deadline.
    assert await cluster.status(2) == ONLINE
    change = await watcher.change(timeout=5.0)
    assert change.status == OFFLINE
    assert time.monotonic() - connected_at >= 1.4


async def test_each_transition_is_published_once_with_two_instances(
    start_cluster: Start, redis_url: str
) -> None:
    # sweep_batch=1: a sweep round needs several index reads per bucket.
    cluster = await start_cluster(
        offline_timeout=1.0, heartbeat_interval=0.3, sweep_interval=0.05, sweep_batch=1
    )
    users = list(range(100, 120))
    listener = await open_pubsub(connect_any(redis_url))
    await listener.subscribe(*(channel(u) for u in users))
    for _ in users:
        assert (await listener.get_message(timeout=5.0))["type"] == "subscribe"
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch(users)
    await watcher.snapshot()
    devices = [await cluster.connect(i % 2, uid) for i, uid in enumerate(users)]
    for device in devices:
        await device.snapshot()
    for device in devices:
        await device.vanish()  # both instances now race to sweep them offline
    events: dict[int, list[str]] = {u: [] for u in users}
    deadline = time.monotonic() + 6.0
    while sum(len(v) for v in events.values()) < 2 * len(users):
        assert time.monotonic() < deadline, events
        message = await listener.get_message(timeout=1.0)
        if message and message["type"] == "message":
            uid, status, *_ = message["data"].split()
            events[int(uid)].append(status.decode())
    # Give a duplicate time to show up: two more full sweep rounds of both instances.
    rounds = [app.tracker.sweep_rounds for app in cluster.apps]
    await eventually(lambda: _swept_twice_more(cluster, rounds), timeout=3.0)
    while (message := await listener.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            uid, status, *_ = message["data"].split()
            events[int(uid)].append(status.decode())
    assert events == {u: ["online", "offline"] for u in users}
    changes = [await watcher.change() for _ in range(2 * len(users))]
    assert sorted((c.user_id, c.version) for c in changes) == sorted(
        (u, v) for u in users for v in (1, 2)
    )
    await listener.aclose()  # type: ignore[no-untyped-call]


async def test_user_stays_online_while_any_device_is(start_cluster: Start) -> None:
    cluster = await start_cluster(offline_timeout=20.0, heartbeat_interval=5.0)
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch([2])
    await watcher.snapshot()
    phone = await cluster.connect(0, 2)
    await phone.snapshot()
    assert (await watcher.change()).status == ONLINE
    laptop = await cluster.connect(1, 2)
    await laptop.snapshot()
    await phone.close()
    assert await cluster.status(2) == ONLINE
    laptop.heartbeat(AWAY)
    # The next change is the laptop going away: the phone's close made none.
    change = await watcher.change()
    assert (change.status, change.version) == (AWAY, 2)
    await laptop.close()
    change = await watcher.change()
    assert (change.status, change.version) == (OFFLINE, 3)


async def test_online_device_outweighs_away_device(start_cluster: Start) -> None:
    cluster = await start_cluster()
    phone = await cluster.connect(0, 2)
    await phone.snapshot()
    laptop = await cluster.connect(1, 2)
    await laptop.snapshot()
    laptop.heartbeat(AWAY)
    await eventually(lambda: _device_statuses_are(cluster, 2, ["away", "online"]))
    assert await cluster.status(2) == ONLINE
    phone.heartbeat(AWAY)
    await eventually(lambda: _is(cluster, 2, AWAY))
    laptop.heartbeat(ONLINE)
    await eventually(lambda: _is(cluster, 2, ONLINE))


async def test_devices_beyond_the_limit_are_refused(start_cluster: Start) -> None:
    cluster = await start_cluster(max_devices=2)
    for instance in (0, 1):
        await (await cluster.connect(instance, 2)).snapshot()
    third = await cluster.connect(0, 2)
    try:
        await third.read()
        raise AssertionError("a third device was accepted")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await error_details(err)).reason == "TOO_MANY_DEVICES"
    assert await cluster.apps[0].store.device_count(2) == 2


async def test_stream_acts_only_for_the_token_user(start_cluster: Start) -> None:
    cluster = await start_cluster()
    device = await cluster.connect(0, 7)
    first = await device.snapshot()
    assert first.session.user_id == 7
    device.heartbeat(AWAY)
    await eventually(lambda: _is(cluster, 7, AWAY))
    assert [p.status for p in await cluster.lookup([7, 8])] == [AWAY, OFFLINE]

    async with grpc.aio.insecure_channel(cluster.apps[0].address) as ch:
        stub = presence_pb2_grpc.PresenceServiceStub(ch)
        for metadata, code in [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            (service_metadata(), grpc.StatusCode.UNAUTHENTICATED),
        ]:
            call = stub.Connect(
                iter([pb.ConnectRequest(heartbeat=pb.Heartbeat())]), metadata=metadata
            )
            try:
                await call.read()
                raise AssertionError("a stream without a user token was accepted")
            except grpc.aio.AioRpcError as err:
                assert err.code() == code
    assert await cluster.status(8) == OFFLINE


async def test_heartbeat_offline_status_is_refused(start_cluster: Start) -> None:
    cluster = await start_cluster()
    device = await cluster.connect(0, 2)
    await device.snapshot()
    device.heartbeat(OFFLINE)
    try:
        await device.read()
        raise AssertionError("an OFFLINE heartbeat was accepted")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await error_details(err)).field_violations[0][0] == "heartbeat.status"
    await eventually(lambda: _is(cluster, 2, OFFLINE))


async def test_batch_lookup_answers_each_id_in_order(start_cluster: Start) -> None:
    cluster = await start_cluster()
    device = await cluster.connect(1, 2)
    await device.snapshot()
    replies = await cluster.lookup([2, 999_999_999_999_999_999, 2])
    assert [(p.user_id, p.status) for p in replies] == [
        (2, ONLINE),
        (999_999_999_999_999_999, OFFLINE),
        (2, ONLINE),
    ]
    assert not replies[1].HasField("last_seen_time") and replies[1].version == 0
    assert replies[0].HasField("last_seen_time")

    async with grpc.aio.insecure_channel(cluster.apps[0].address) as ch:
        stub = presence_pb2_grpc.PresenceServiceStub(ch)
        by_user = await stub.GetPresence(
            pb.GetPresenceRequest(user_ids=[2]), metadata=user_metadata(5)
        )
        assert by_user.presences[0].status == ONLINE
        for ids in ([], [2, 0], list(range(1, 1002))):
            try:
                await stub.GetPresence(
                    pb.GetPresenceRequest(user_ids=ids), metadata=service_metadata()
                )
                raise AssertionError(f"{len(ids)} ids were accepted")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert (await error_details(err)).field_violations[0][0] == "user_ids"
        assert (
            len(
                (
                    await stub.GetPresence(
                        pb.GetPresenceRequest(user_ids=range(1, 1001)), metadata=service_metadata()
                    )
                ).presences
            )
            == 1000
        )


async def _is(cluster: Cluster, user_id: int, status: int) -> bool:
    return await cluster.status(user_id) == status


async def _device_statuses_are(cluster: Cluster, user_id: int, expected: list[str]) -> bool:
    stored = await cluster.apps[0].store.redis.hvals(devices_key(user_id))
    return sorted(text(v) for v in stored) == expected


async def _swept_twice_more(cluster: Cluster, before: list[int]) -> bool:
    return all(
        app.tracker.sweep_rounds >= n + 2 for app, n in zip(cluster.apps, before, strict=True)
    )
