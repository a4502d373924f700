"""ChatConnection: redirects, moves, crashes, cursor resumption, de-duplication, retries."""

from __future__ import annotations

import asyncio

import pytest

from feedchat_client import Backoff, ChatSendError, MemoryCursorStore
from feedchat_runtime.registry import Member
from feedchat_runtime.ring import Ring
from tests.feedchat_client.helpers import StateLog, texts, user
from tests.feedchat_client.system import System
from tests.waiting import wait_until


async def test_connect_to_wrong_server_follows_redirect_to_owner(system: System) -> None:
    await system.start(chat_servers=2)
    alice = await user(system, "alice")
    owner = system.owner(alice.session.user_id)
    other = next(a for a in system.live_chats if a is not owner)
    log = StateLog()
    async with alice.chat.connection("phone", address=other.address, on_state=log) as conn:
        await conn.wait_connected(10)
        assert conn.redirects == 1
        assert conn.instance == owner.config.instance
        assert conn.address == owner.address
        assert ("redirected", f"{owner.config.instance} ({owner.address})") in log.events
        assert "routing" not in log.states()  # the redirect named the owner: no router trip


async def test_owner_shutdown_moves_stream_and_resumes_without_loss_or_duplicates(
    system: System,
) -> None:
    await system.start(chat_servers=3)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    async with alice.chat.connection("a") as a, bob.chat.connection("b") as b:
        await a.wait_connected(10)
        await b.wait_connected(10)
        for i in range(3):
            await a.send(channel.channel_id, f"before {i}", timeout=10)
        assert await texts(b, 3) == ["before 0", "before 1", "before 2"]
        cursor_before = b.cursor
        old_owner = system.owner(bob.session.user_id)
        stopping = asyncio.create_task(system.stop_chat(old_owner))
        # Sends while bob's server goes away land in his inbox and come through the replay.
        for i in range(3):
            await a.send(channel.channel_id, f"during {i}", timeout=15)
        await stopping
        assert await texts(b, 3, timeout=15) == ["during 0", "during 1", "during 2"]
        await b.wait_connected(10)
        assert b.instance != old_owner.config.instance
        assert (b.moves, b.connects) == (1, 2)  # told to move once, then synced again
        assert b.cursor > cursor_before
        with pytest.raises(TimeoutError):
            await b.next_message(timeout=0.3)  # nothing more: no duplicate arrived


async def test_crashed_owner_reconnect_with_backoff_resumes_from_cursor(system: System) -> None:
    await system.start(chat_servers=2)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    cursors = MemoryCursorStore()
    log = StateLog()
    backoff = Backoff(base=0.05, cap=0.5)
    async with bob.chat.connection("b", cursors=cursors, backoff=backoff, on_state=log) as b:
        await b.wait_connected(10)
        await alice.chat.open_direct(bob.session.user_id)
        async with alice.chat.connection("a") as a:
            await a.wait_connected(10)
            await a.send(channel.channel_id, "one", timeout=10)
            assert await texts(b, 1) == ["one"]
            assert cursors.load(bob.session.user_id, "b") == b.cursor
            crashed = system.owner(bob.session.user_id)
            # A crash: no drain, no deregistration; the registry forgets it when the lease
            # (2 s in tests) lapses.
            assert crashed.host.built is not None
            await crashed.host.built.server.stop(None)
            await crashed.host.session.close(revoke=False)
            await wait_until(lambda: "reconnecting" in log.states(), what="the drop")
            await system.rings_agree_without(crashed)
            await a.send(channel.channel_id, "two", timeout=20)
            assert await texts(b, 1, timeout=20) == ["two"]
            await b.wait_connected(10)  # "two" may come in the replay, before sync_complete
            assert b.instance != crashed.config.instance
            assert sum(1 for s in log.states() if s == "connected") >= 2


async def test_replay_of_already_taken_messages_is_dropped_by_message_id(
    system: System,
) -> None:
    await system.start(chat_servers=2)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    async with alice.chat.connection("a") as a, bob.chat.connection("b") as b:
        await a.wait_connected(10)
        await b.wait_connected(10)
        await a.send(channel.channel_id, "first", timeout=10)
        await a.send(channel.channel_id, "second", timeout=10)
        assert await texts(b, 2) == ["first", "second"]
        b.cursor = "0-0"  # as if the cursor were lost: the server replays everything
        await system.stop_chat(system.owner(bob.session.user_id))
        await a.send(channel.channel_id, "third", timeout=15)
        assert await texts(b, 1, timeout=15) == ["third"]
        assert b.duplicates_dropped >= 2


async def test_send_retried_with_same_client_msg_id_is_stored_once(system: System) -> None:
    await system.start(chat_servers=2)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    async with alice.chat.connection("a") as a, bob.chat.connection("b") as b:
        await a.wait_connected(10)
        await b.wait_connected(10)
        first = await a.send(channel.channel_id, "only once", client_msg_id="m-1", timeout=10)
        again = await a.send(channel.channel_id, "only once", client_msg_id="m-1", timeout=10)
        assert not first.duplicate and again.duplicate
        assert again.message_id == first.message_id and again.seq == first.seq
        # A send made while the stream is down waits, then goes out once on the new stream.
        await system.stop_chat(system.owner(alice.session.user_id))
        late = await a.send(channel.channel_id, "after the move", client_msg_id="m-2", timeout=15)
        assert await texts(b, 2, timeout=15) == ["only once", "after the move"]
        history, _ = await bob.chat.history(channel.channel_id)
        assert [m.text for m in history] == ["after the move", "only once"]
        assert late.seq == first.seq + 1


async def test_refused_send_raises_with_reason(system: System) -> None:
    await system.start(chat_servers=1)
    alice, bob, carol = [await user(system, n) for n in ("alice", "bob", "carol")]
    channel = await bob.chat.open_direct(carol.session.user_id)
    async with alice.chat.connection("a") as a:
        await a.wait_connected(10)
        with pytest.raises(ChatSendError) as refused:
            await a.send(channel.channel_id, "not my channel", timeout=10)
        assert refused.value.reason == "NOT_A_MEMBER"


async def test_new_device_resumes_from_its_stored_cursor(system: System) -> None:
    await system.start(chat_servers=1)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    cursors = MemoryCursorStore()
    async with bob.chat.connection("phone", cursors=cursors) as phone:
        async with alice.chat.connection("a") as a:
            for text in ("m1", "m2", "m3"):
                await a.send(channel.channel_id, text, timeout=10)
        taken = [await phone.next_message(10) for _ in range(3)]
    assert [m.text for m in taken] == ["m1", "m2", "m3"]
    # A tablet that already holds m1 and m2 (its saved cursor) gets only m3; without the
    # cursor the server would replay the whole inbox to a device it has never seen.
    cursors.save(bob.session.user_id, "tablet", taken[1].inbox_cursor)
    async with bob.chat.connection("tablet", cursors=cursors) as tablet:
        assert await texts(tablet, 1) == ["m3"]
        with pytest.raises(TimeoutError):
            await tablet.next_message(timeout=0.3)
        assert cursors.load(bob.session.user_id, "tablet") == taken[2].inbox_cursor


async def test_server_joining_moves_stream_to_new_owner_and_resumes(system: System) -> None:
    await system.start(chat_servers=2)
    current = system.live_chats[0].ring.ring
    joined = Ring.build({**current.members, "chat-2": Member("chat", "chat-2", "x:1")})
    alice = await user(system, "alice")
    for _ in range(40):  # about a third of users move to a third server
        mover = await user(system, "mover")
        owner = joined.owner(mover.session.user_id)
        if owner is not None and owner.instance == "chat-2":
            break
    else:
        raise AssertionError("no user moves to chat-2")
    channel = await alice.chat.open_direct(mover.session.user_id)
    log = StateLog()
    async with mover.chat.connection("m", on_state=log) as m, alice.chat.connection("a") as a:
        await m.wait_connected(10)
        await a.wait_connected(10)
        await a.send(channel.channel_id, "before the join", timeout=10)
        assert await texts(m, 1) == ["before the join"]
        await system.add_chat()  # chat-2 joins: the ring moves the mover there
        await a.send(channel.channel_id, "after the join", timeout=10)
        assert await texts(m, 1, timeout=15) == ["after the join"]
        await wait_until(lambda: m.instance == "chat-2", what="the move to chat-2")
        assert m.moves == 1 and "moved" in log.states()
        with pytest.raises(TimeoutError):
            await m.next_message(timeout=0.3)
