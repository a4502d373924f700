"""A ChatConnection's own messages: the server does not echo them back to it
(``Hello.omit_own_echo``), yet its ``messages()`` yields each one exactly once, as the
user's other devices get it, also when a reconnect replays them from the inbox."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from feedchat_client import ChatConnection, ChatMessage
from tests.feedchat_client.helpers import direct_pair, texts
from tests.feedchat_client.system import System
from tests.waiting import wait_until


async def _taken(conn: ChatConnection, count: int) -> list[ChatMessage]:
    """The next ``count`` messages, then proof that nothing more is coming."""
    taken = [await conn.next_message(10) for _ in range(count)]
    with pytest.raises(TimeoutError):
        await conn.next_message(timeout=0.3)
    return taken


async def test_sender_sees_its_messages_and_events_once_as_its_other_devices_get_them(
    system: System,
) -> None:
    alice, bob, channel = await direct_pair(system)
    async with (
        alice.chat.connection("phone") as phone,
        alice.chat.connection("tablet") as tablet,
        bob.chat.connection("bob") as b,
    ):
        for conn in (phone, tablet, b):
            await conn.wait_connected(10)
        hello = await phone.send(channel, "hello", client_msg_id="hello-1")
        retried = await phone.send(channel, "hello", client_msg_id="hello-1")
        assert retried.duplicate and retried.message_id == hello.message_id
        reply = await phone.send(channel, "again", reply_to=hello.message_id)
        await phone.edit(channel, hello.message_id, "hello!")
        await phone.react(channel, hello.message_id, "👍")
        await phone.react(channel, hello.message_id, "👍", remove=True)
        await phone.delete(channel, reply.message_id)
        own = await _taken(phone, 6)
        elsewhere = await _taken(tablet, 6)
        assert [m.message_id for m in await _taken(b, 6)] == [m.message_id for m in own]
    assert [m.seq for m in own] == [1, 2, 3, 4, 5, 6]
    # each is the message the other device took from the inbox, but for the inbox cursor
    assert own == [dataclasses.replace(m, inbox_cursor="") for m in elsewhere]
    assert (own[1].reply_to, own[1].reply_to_seq) == (hello.message_id, 1)
    assert own[2].event is not None and own[2].event.target_seq == 1
    assert all(m.sender_id == alice.session.user_id for m in own)
    assert phone.duplicates_dropped == 1  # the retry's duplicate ack; the server echoed none


async def test_reconnect_replaying_own_messages_from_the_inbox_yields_them_once(
    system: System,
) -> None:
    alice, bob, channel = await direct_pair(system)
    async with alice.chat.connection("phone") as phone, bob.chat.connection("bob") as b:
        await phone.wait_connected(10)
        await b.wait_connected(10)
        for i in range(3):
            await phone.send(channel, f"before {i}")
        assert await texts(phone, 3) == ["before 0", "before 1", "before 2"]
        assert phone.cursor == ""  # no echo came: its cursor is still before them
        # the phone's server goes away: the next stream replays the inbox from the
        # cursor, own messages included; a send made meanwhile is yielded once all the same
        stopping = asyncio.create_task(system.stop_chat(system.owner(alice.session.user_id)))
        during = await phone.send(channel, "during", timeout=15)
        await stopping
        await wait_until(lambda: phone.connects >= 2, 15, "the phone's second sync")
        assert (await phone.next_message(10)).message_id == during.message_id
        assert phone.duplicates_dropped >= 3  # the replayed copies of its earlier sends
        assert phone.cursor != ""  # and the replay moved its cursor past them
        await b.send(channel, "from bob")
        assert [m.text for m in await _taken(phone, 1)] == ["from bob"]
        # bob's own message comes at its ack, alice's as they arrive: in seq order, each once
        seen = sorted(await _taken(b, 5), key=lambda m: m.seq)
        assert [m.text for m in seen] == ["before 0", "before 1", "before 2", "during", "from bob"]
