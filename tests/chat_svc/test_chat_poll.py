"""The unary chat path on real chat servers: SendMessage answered by any server, PollInbox
held on the owner and woken by a send anywhere, redirects, wait bounds, acks by cursor,
the shared per-user bound, and held polls ended by a ring change."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from feedchat_client.errors import error_details
from feedchat_runtime import replies
from feedchat_runtime.notify_queue import QUEUE_KEY
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import OpenDevice, StartCluster, open_direct, owner_of, users_on
from tests.chat_svc.pollkit import poll, send
from tests.redis_reads import stream_entries
from tests.waiting import wait_until


async def _refusal(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    details = await error_details(err.value)
    return details.code, details.reason, details.metadata


async def test_send_on_any_server_wakes_the_poll_held_on_the_owner_at_once(
    chat_cluster: StartCluster,
) -> None:
    apps = await chat_cluster(3)
    poller, sender = users_on(apps, "chat-1", 1)[0], users_on(apps, "chat-2", 1)[0]
    owner = owner_of(apps, poller)
    channel = await open_direct(apps[0].address, sender, poller)
    held = asyncio.create_task(poll(owner.address, poller, "0-0", wait=20))
    await wait_until(lambda: owner.hub.devices(poller), what="the poll held on the owner")
    started = time.monotonic()
    ack = await send(apps[0].address, sender, channel, "hello poller")  # not the owner
    page = await held
    assert time.monotonic() - started < 2.0  # woken by the push, not the 20 s wait
    assert [(m.message_id, m.text, m.seq) for m in page.messages] == [
        (ack.message_id, "hello poller", ack.seq)
    ]
    assert page.inbox_cursor == page.messages[-1].inbox_cursor
    assert page.instance == owner.config.instance and not page.more


async def test_poll_at_a_server_that_does_not_own_the_user_names_the_owner_at_once(
    chat_cluster: StartCluster,
) -> None:
    apps = await chat_cluster(2)
    user = users_on(apps, "chat-1", 1)[0]
    started = time.monotonic()
    code, reason, meta = await _refusal(poll(apps[0].address, user, wait=20))
    assert time.monotonic() - started < 2.0
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_CHAT_SERVER")
    assert meta["owner_address"] == apps[1].address
    assert meta["owner_instance"] == "chat-1"


async def test_wait_bounds_an_empty_poll_and_answers_the_same_cursor(
    chat_cluster: StartCluster,
) -> None:
    (app,) = await chat_cluster(1, poll_wait=0.3, poll_max_wait=0.6)
    started = time.monotonic()
    assert (await poll(app.address, 1, "5-0", wait=0)).inbox_cursor == "5-0"  # at once
    assert time.monotonic() - started < 0.25
    started = time.monotonic()
    page = await poll(app.address, 1, "5-0")  # no wait named: the default (0.3 s here)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert (list(page.messages), page.inbox_cursor) == ([], "5-0")
    started = time.monotonic()
    await poll(app.address, 1, "5-0", wait=3600)  # cut to the cap (0.6 s here)
    assert 0.5 <= time.monotonic() - started < 2.5
    code, reason, _ = await _refusal(poll(app.address, 1, "5-0", wait=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, reason, _ = await _refusal(poll(app.address, 1, "not-a-cursor", wait=0))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_CURSOR")


async def test_the_next_cursor_acks_and_resumes_the_device(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    (app,) = await chat_cluster(1, send_rate=1000.0, send_burst=1000)
    sender = await devices(1, app.address)  # a streaming sender gets DELIVERED receipts
    channel = await open_direct(app.address, 1, 2)
    sent = [await send(app.address, 1, channel, f"m{i}") for i in range(5)]
    first = await poll(app.address, 2, "", wait=0, max_messages=3)
    assert [m.seq for m in first.messages] == [1, 2, 3] and first.more
    second = await poll(app.address, 2, first.inbox_cursor, wait=0, max_messages=3)
    assert [m.seq for m in second.messages] == [4, 5] and not second.more
    await wait_until(
        lambda: {r.message_id for r in sender.receipts} >= {a.message_id for a in sent[:3]},
        what="DELIVERED receipts for the acked messages",
    )
    await poll(app.address, 2, second.inbox_cursor, wait=0)  # acks the rest
    resumed = await poll(app.address, 2, "", wait=0)  # empty cursor: the device's saved one
    assert (list(resumed.messages), resumed.inbox_cursor) == ([], second.inbox_cursor)
    other = await poll(app.address, 2, "", wait=0, device="tablet")  # its own cursor
    assert len(other.messages) == 5


async def test_send_message_has_the_stream_sends_semantics(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, send_rate=0.01, send_burst=3)
    channel = await open_direct(apps[0].address, 1, 2)
    first = await send(apps[0].address, 1, channel, "hi", cmid="same")
    again = await send(apps[1].address, 1, channel, "hi", cmid="same")  # any server
    assert (again.message_id, again.seq, again.duplicate) == (first.message_id, 1, True)
    code, reason, _ = await _refusal(send(apps[0].address, 1, channel, "other", cmid="same"))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "CLIENT_MSG_ID_REUSED")
    code, reason, _ = await _refusal(send(apps[0].address, 3, channel, "intruder"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_MEMBER")
    streamer = await devices(1, owner_of(apps, 1).address)
    cmid = streamer.send(channel, "streamed", client_msg_id="both-ways")
    streamed = await streamer.sent(cmid)
    unary = await send(apps[1].address, 1, channel, "streamed", cmid="both-ways")
    assert (unary.message_id, unary.duplicate) == (streamed.message_id, True)
    await send(apps[0].address, 1, channel, "third")
    code, reason, _ = await _refusal(send(apps[0].address, 1, channel, "too fast"))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")


async def test_a_poller_and_a_streaming_user_talk_both_ways(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    poller, streamer = users_on(apps, "chat-0", 1)[0], users_on(apps, "chat-1", 1)[0]
    channel = await open_direct(apps[0].address, poller, streamer)
    stream = await devices(streamer, owner_of(apps, streamer).address)
    await send(apps[1].address, poller, channel, "from the poller")
    await wait_until(lambda: stream.texts() == ["from the poller"], what="the streamed copy")
    cursor = (await poll(owner_of(apps, poller).address, poller, "", wait=0)).inbox_cursor
    held = asyncio.create_task(poll(owner_of(apps, poller).address, poller, cursor, wait=20))
    await wait_until(lambda: owner_of(apps, poller).hub.devices(poller), what="held poll")
    await stream.sent(stream.send(channel, "from the stream"))
    page = await asyncio.wait_for(held, 3)
    assert [m.text for m in page.messages] == ["from the stream"]


async def test_held_polls_count_against_the_per_user_stream_bound(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    (app,) = await chat_cluster(1, max_streams_per_user=2)
    await devices(1, app.address, device_id="streamed")
    held = asyncio.create_task(poll(app.address, 1, "", wait=20, device="a"))
    await wait_until(lambda: len(app.hub.devices(1)) == 2, what="stream and poll held")
    code, reason, meta = await _refusal(poll(app.address, 1, "", wait=20, device="b"))
    assert (code, reason, meta["limit"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS",
        "2",
    )
    assert (await poll(app.address, 2, "", wait=0)).inbox_cursor  # others unaffected
    held.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await held


async def test_a_draining_owner_ends_held_polls_at_once_naming_the_next_owner(
    chat_cluster: StartCluster,
) -> None:
    apps = await chat_cluster(2, grace=5.0)
    user = users_on(apps, "chat-1", 1)[0]
    held = asyncio.create_task(poll(apps[1].address, user, "", wait=30))
    await wait_until(lambda: apps[1].hub.devices(user), what="the held poll")
    started = time.monotonic()
    stopping = asyncio.create_task(apps[1].stop())
    code, reason, meta = await _refusal(held)
    assert time.monotonic() - started < 2.0
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_CHAT_SERVER")
    assert meta["owner_address"] == apps[0].address
    await stopping


async def test_a_poller_resumes_from_its_cursor_after_its_server_dies(
    chat_cluster: StartCluster,
) -> None:
    apps = await chat_cluster(2, send_rate=1000.0, send_burst=1000)
    user = users_on(apps, "chat-1", 1)[0]
    channel = await open_direct(apps[0].address, 7, user)
    await send(apps[0].address, 7, channel, "before")
    first = await poll(apps[1].address, user, "0-0", wait=0)
    await apps[1].stop()
    await wait_until(lambda: set(apps[0].ring.ring.members) == {"chat-0"}, what="ring shrinks")
    for text in ("during-1", "during-2"):
        await send(apps[0].address, 7, channel, text)
    page = await poll(apps[0].address, user, first.inbox_cursor, wait=0)
    assert [m.text for m in first.messages] + [m.text for m in page.messages] == [
        "before",
        "during-1",
        "during-2",
    ]


async def test_a_user_who_just_polled_gets_no_offline_notification(
    chat_cluster: StartCluster, redis: RedisClient
) -> None:
    (app,) = await chat_cluster(1)
    to_poller = await open_direct(app.address, 1, 2)
    to_absent = await open_direct(app.address, 1, 3)
    await poll(app.address, 2, "", wait=0)  # user 2 polls; user 3 never does
    await send(app.address, 1, to_poller, "for the poller")
    await send(app.address, 1, to_absent, "for the absent")

    async def notified() -> set[str]:
        return {replies.text(f[b"user_id"]) for _, f in await stream_entries(redis, QUEUE_KEY)}

    found = await wait_until(notified, what="the absent user's notification")
    assert "3" in found and "2" not in found


async def test_a_made_up_cursor_ahead_of_the_inbox_is_refused_and_saves_nothing(
    chat_cluster: StartCluster,
) -> None:
    (app,) = await chat_cluster(1)
    channel = await open_direct(app.address, 1, 2)
    await send(app.address, 1, channel, "before")
    ahead = f"{int(time.time() * 1000) + 3_600_000}-0"  # an hour from now
    code, reason, _ = await _refusal(poll(app.address, 2, ahead, wait=0))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_CURSOR")
    await send(app.address, 1, channel, "after")
    page = await poll(app.address, 2, "", wait=0)  # the device's saved cursor did not move
    assert [m.text for m in page.messages] == ["before", "after"]
