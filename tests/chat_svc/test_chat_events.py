"""Edits, deletes, reactions and replies: channel events in the channel's order, delivered
live and through sync (stream and poll) to every device, and history with them applied."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from chat_svc.app import ChatApp
from chat_svc.keys import chan_ids_key, chan_state_key
from feedchat.chat.v1 import chat_pb2
from feedchat_runtime.errors import NotFound
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import (
    Device,
    OpenDevice,
    StartCluster,
    auth,
    fan_out_nothing,
    open_direct,
    users_on,
)
from tests.chat_svc.pollkit import poll, stub
from tests.rpc_errors import failure
from tests.waiting import eventually, wait_until

SECRET = "the launch code is 0000"
_CALLS = itertools.count()
"""Numbers the unary calls' client_msg_ids (each call is a new event unless given one)."""


@dataclass
class Conversation:
    """A group of alice (owner, chat-0), bob (chat-1) and carol (chat-2) after: m1, m2,
    m3 by alice; alice edits m1 (stream frame); bob reacts to m2 (unary); alice deletes
    m3 (unary, on another server)."""

    apps: list[ChatApp]
    alice: int
    bob: int
    carol: int
    group: int
    sent: list[chat_pb2.SendAck]
    a: Device
    phone: Device


async def _conversation(apps: list[ChatApp], devices: OpenDevice) -> Conversation:
    alice = users_on(apps, "chat-0", 1)[0]
    bob = users_on(apps, "chat-1", 1)[0]
    carol = users_on(apps, "chat-2", 1)[0]
    channel, chat = stub(apps[0].address)
    async with channel:
        created = await chat.CreateGroup(
            chat_pb2.CreateGroupRequest(name="g", member_ids=[bob, carol]), metadata=auth(alice)
        )
    group = created.channel.channel_id
    a = await devices(alice, apps[0].address)
    phone = await devices(bob, apps[1].address, device_id="phone")
    texts = ("first", "second", SECRET)
    sent = [
        await a.sent(a.send(group, text, client_msg_id=f"m{i}")) for i, text in enumerate(texts)
    ]
    await a.sent(a.edit(group, sent[0].message_id, "first, edited"))
    await _unary(apps[2], "AddReaction", bob, group, sent[1].message_id, emoji="👍")
    await _unary(apps[1], "DeleteMessage", alice, group, sent[2].message_id)
    return Conversation(apps, alice, bob, carol, group, sent, a, phone)


_REQUESTS: dict[str, Any] = {
    "EditMessage": chat_pb2.EditMessageRequest,
    "DeleteMessage": chat_pb2.DeleteMessageRequest,
    "AddReaction": chat_pb2.AddReactionRequest,
    "RemoveReaction": chat_pb2.RemoveReactionRequest,
}


def _call(
    app: ChatApp, rpc: str, user: int, channel_id: int, message_id: int, **fields: Any
) -> tuple[grpc.aio.Channel, Any]:
    """Start a unary event RPC (a fresh client_msg_id unless given): (channel, call)."""
    fields.setdefault("client_msg_id", f"{rpc}-{next(_CALLS)}")
    request = _REQUESTS[rpc](channel_id=channel_id, message_id=message_id, **fields)
    channel, chat = stub(app.address)
    return channel, getattr(chat, rpc)(request, metadata=auth(user))


async def _unary(
    app: ChatApp, rpc: str, user: int, channel_id: int, message_id: int, **fields: Any
) -> chat_pb2.SendAck:
    channel, call = _call(app, rpc, user, channel_id, message_id, **fields)
    async with channel:
        return (await call).ack  # type: ignore[no-any-return]


async def _refused(
    app: ChatApp, rpc: str, user: int, channel_id: int, message_id: int, **fields: Any
) -> tuple[grpc.StatusCode, str]:
    channel, call = _call(app, rpc, user, channel_id, message_id, **fields)
    async with channel:
        details = await failure(call)
    return details.code, details.reason


def _seqs(messages: Sequence[chat_pb2.Message], channel_id: int) -> list[int]:
    return [m.seq for m in messages if m.channel_id == channel_id]


def _has(device: Device, channel_id: int, seq: int) -> bool:
    return seq in _seqs(device.messages, channel_id)


def _check_events(c: Conversation, messages: Sequence[chat_pb2.Message]) -> None:
    """The three events as a device must see them: seqs 4..6, their kinds and targets."""
    by_seq = {m.seq: m for m in messages if m.channel_id == c.group}
    edit, reaction, delete = by_seq[4].event, by_seq[5].event, by_seq[6].event
    assert (edit.kind, edit.target_message_id, edit.target_seq, edit.text) == (
        chat_pb2.EVENT_KIND_EDIT,
        c.sent[0].message_id,
        1,
        "first, edited",
    )
    assert (reaction.kind, reaction.target_message_id, reaction.emoji) == (
        chat_pb2.EVENT_KIND_REACTION_ADDED,
        c.sent[1].message_id,
        "👍",
    )
    assert by_seq[5].sender_id == c.bob
    assert (delete.kind, delete.target_message_id, delete.target_seq) == (
        chat_pb2.EVENT_KIND_DELETE,
        c.sent[2].message_id,
        3,
    )
    assert all(m.text == "" for m in (by_seq[4], by_seq[5], by_seq[6]))


async def test_edit_delete_and_reaction_reach_every_device_in_order_once(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(3)
    c = await _conversation(apps, devices)
    # live: alice's stream on chat-0 and bob's phone on chat-1, every seq once, in order
    for live in (c.a, c.phone):
        await wait_until(functools.partial(_has, live, c.group, 6), what="the delete")
        assert _seqs(live.messages, c.group) == [1, 2, 3, 4, 5, 6]
        _check_events(c, live.messages)
    # offline until now: bob's laptop syncs through Connect, carol through PollInbox; the
    # deleted message left their inboxes with the delete, its events did not
    laptop = await devices(c.bob, apps[1].address, device_id="laptop")
    assert _seqs(laptop.messages, c.group) == [1, 2, 4, 5, 6]
    _check_events(c, laptop.messages)
    polled: list[chat_pb2.Message] = []
    cursor = ""
    while 6 not in _seqs(polled, c.group):
        page = await poll(apps[2].address, c.carol, cursor, wait=5)
        polled += page.messages
        cursor = page.inbox_cursor
    assert _seqs(polled, c.group) == [1, 2, 4, 5, 6]
    _check_events(c, polled)
    assert all(SECRET not in m.text for m in [*laptop.messages, *polled])
    # a resumed device gets nothing twice
    again = await devices(c.bob, apps[1].address, device_id="laptop", cursor=laptop.cursor)
    await _unary(apps[0], "RemoveReaction", c.bob, c.group, c.sent[1].message_id, emoji="👍")
    await wait_until(lambda: 7 in _seqs(again.messages, c.group), what="the removal")
    assert _seqs(again.messages, c.group) == [7]
    assert again.messages[0].event.kind == chat_pb2.EVENT_KIND_REACTION_REMOVED


async def _chat_keys_holding(redis: RedisClient, text: str) -> list[str]:
    """The chat keys (any node) whose value holds ``text``."""
    found = []
    needle = text.encode()
    async for raw in redis.scan_iter(match="chat:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        value: Any
        if kind == "stream":
            value = await redis.xrange(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1)
        elif kind == "set":
            value = await redis.smembers(key)
        else:
            value = await redis.get(key)
        if needle in repr(value).encode() or text in repr(value):
            found.append(key)
    return found


async def test_history_shows_edits_reactions_and_a_tombstone_and_keeps_no_deleted_text(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    apps = await chat_cluster(3)
    c = await _conversation(apps, devices)
    for user in (c.alice, c.bob):
        channel, chat = stub(apps[1].address)
        async with channel:
            history = await chat.GetHistory(
                chat_pb2.GetHistoryRequest(channel_id=c.group), metadata=auth(user)
            )
        assert [m.seq for m in history.messages] == [3, 2, 1], "messages only, events applied"
        deleted, reacted, edited = history.messages
        assert (deleted.text, deleted.message_id, deleted.sender_id) == (
            "",
            c.sent[2].message_id,
            c.alice,
        )
        assert deleted.deleted_ms > 0 and not deleted.reactions
        assert [(r.emoji, r.count, r.reacted) for r in reacted.reactions] == [
            ("👍", 1, user == c.bob)
        ]
        assert (reacted.text, reacted.edited_ms) == ("second", 0)
        assert edited.text == "first, edited" and edited.edited_ms >= edited.created_ms
    # the text was sent, stored, fanned out -- and is nowhere in chat's Redis keys now
    await wait_until(lambda: c.phone.got(6), what="the phone's delete")
    assert await _chat_keys_holding(redis, SECRET) == []
    assert await _chat_keys_holding(redis, "first, edited") != []  # the search does find text


async def test_reply_reference_is_delivered_synced_and_in_history(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(3)
    alice = users_on(apps, "chat-0", 1)[0]
    bob = users_on(apps, "chat-1", 1)[0]
    channel_id = await open_direct(apps[0].address, alice, bob)
    elsewhere = await open_direct(apps[0].address, alice, bob + 1_000_000)
    a = await devices(alice, apps[0].address)
    question = await a.sent(a.send(channel_id, "lunch?"))
    foreign = await a.sent(a.send(elsewhere, "not here"))
    answer = await a.sent(a.reply(channel_id, "12:30?", question.message_id))
    # bob was offline: his first device syncs the reply with its reference
    b = await devices(bob, apps[1].address)
    reply = next(m for m in b.messages if m.message_id == answer.message_id)
    assert (reply.reply_to, reply.reply_to_seq, reply.text) == (question.message_id, 1, "12:30?")
    channel, chat = stub(apps[1].address)
    async with channel:
        history = await chat.GetHistory(
            chat_pb2.GetHistoryRequest(channel_id=channel_id), metadata=auth(bob)
        )
        assert [(m.seq, m.reply_to, m.reply_to_seq) for m in history.messages] == [
            (2, question.message_id, 1),
            (1, 0, 0),
        ]
        # a reply to a message of another channel, or to no message, is refused
        for target in (foreign.message_id, 12345):
            details = await failure(
                chat.SendMessage(
                    chat_pb2.SendMessageRequest(
                        client_msg_id=f"r-{target}",
                        channel_id=channel_id,
                        text="x",
                        reply_to=target,
                    ),
                    metadata=auth(bob),
                )
            )
            assert (details.code, details.reason) == (
                grpc.StatusCode.NOT_FOUND,
                "REPLY_TARGET_NOT_FOUND",
            )


async def test_bad_events_get_precise_statuses(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1, max_reactions=2, max_user_reactions=2, edit_window=3600.0)
    app = apps[0]
    owner, member, outsider = users_on(apps, "chat-0", 3)
    channel, chat = stub(app.address)
    async with channel:
        created = await chat.CreateGroup(
            chat_pb2.CreateGroupRequest(name="g", member_ids=[member]), metadata=auth(owner)
        )
    group = created.channel.channel_id
    m = await devices(member, app.address)
    mine = (await m.sent(m.send(group, "member's"))).message_id
    old = await app.store.store_message(  # sent two hours ago: past the one-hour window
        sender_id=member,
        channel_id=group,
        message_id=app.delivery.ids.next_id(),
        client_msg_id="old",
        text="old",
        created_ms=int(time.time() * 1000) - 7_200_000,
        rate=100.0,
        burst=100,
    )
    refused = functools.partial(_refused, app)
    nf, pd, fp, ia = (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert await refused("EditMessage", member, group, 999, text="x") == (nf, "MESSAGE_NOT_FOUND")
    assert await refused("EditMessage", owner, group, mine, text="x") == (pd, "NOT_MESSAGE_SENDER")
    assert await refused("EditMessage", outsider, group, mine, text="x") == (pd, "NOT_A_MEMBER")
    assert await refused("EditMessage", member, group, old.message.message_id, text="x") == (
        fp,
        "EDIT_WINDOW_CLOSED",
    )
    assert await refused("EditMessage", member, group, mine, text="") == (ia, "MESSAGE_EMPTY")
    assert await refused("EditMessage", member, group, 0, text="x") == (ia, "INVALID_ARGUMENT")
    assert await refused("AddReaction", member, group, mine, emoji="") == (ia, "EMOJI_EMPTY")
    assert await refused("AddReaction", member, group, mine, emoji="x" * 17) == (
        ia,
        "EMOJI_TOO_LONG",
    )
    assert await refused("AddReaction", member, group, mine, emoji="a b") == (
        ia,
        "EMOJI_INVALID_CHARACTERS",
    )
    # an edit is an event, not a message: it cannot be edited or reacted to itself
    edit = await _unary(app, "EditMessage", member, group, mine, text="member's, edited")
    assert await refused("AddReaction", owner, group, edit.message_id, emoji="+1") == (
        nf,
        "MESSAGE_NOT_FOUND",
    )
    # the same client_msg_id: the same edit answers the original ids, another is refused
    retry = await _unary(
        app, "EditMessage", member, group, mine, text="member's, edited", client_msg_id="e1"
    )
    again = await _unary(
        app, "EditMessage", member, group, mine, text="member's, edited", client_msg_id="e1"
    )
    assert (again.duplicate, again.seq) == (True, retry.seq)
    assert await refused("EditMessage", member, group, mine, text="other", client_msg_id="e1") == (
        grpc.StatusCode.ALREADY_EXISTS,
        "CLIENT_MSG_ID_REUSED",
    )
    # reactions: once per emoji and user, bounded per user and per message
    await _unary(app, "AddReaction", member, group, mine, emoji="+1")
    assert await refused("AddReaction", member, group, mine, emoji="+1") == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ALREADY_REACTED",
    )
    await _unary(app, "AddReaction", member, group, mine, emoji="-1")
    assert await refused("AddReaction", member, group, mine, emoji="ok") == (
        fp,
        "TOO_MANY_USER_REACTIONS",
    )
    assert await refused("AddReaction", owner, group, mine, emoji="ok") == (
        fp,
        "TOO_MANY_REACTIONS",
    )
    await _unary(app, "AddReaction", owner, group, mine, emoji="+1")  # a known emoji: fine
    assert await refused("RemoveReaction", owner, group, mine, emoji="-1") == (
        nf,
        "REACTION_NOT_FOUND",
    )
    # on a stream, a refused event is a send_error for its client_msg_id
    o = await devices(owner, app.address)
    cmid = o.edit(group, mine, "not mine")
    await wait_until(lambda: bool(o.send_errors), what="the refusal")
    assert (o.send_errors[0].client_msg_id, o.send_errors[0].reason) == (
        cmid,
        "NOT_MESSAGE_SENDER",
    )
    # deleting: a member may not delete the owner's message; the owner may delete theirs
    owners = (await o.sent(o.send(group, "owner's"))).message_id
    assert await refused("DeleteMessage", member, group, owners) == (pd, "NOT_MESSAGE_SENDER")
    await _unary(app, "DeleteMessage", owner, group, mine)
    assert await refused("DeleteMessage", owner, group, mine) == (fp, "MESSAGE_DELETED")
    assert await refused("EditMessage", member, group, mine, text="x") == (fp, "MESSAGE_DELETED")
    assert await refused("AddReaction", member, group, mine, emoji="!") == (fp, "MESSAGE_DELETED")


async def test_history_pages_skip_events_and_keep_tombstones_in_place(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1, send_rate=1000.0, send_burst=1000)
    app = apps[0]
    alice, bob = users_on(apps, "chat-0", 2)
    channel_id = await open_direct(app.address, alice, bob)
    channel, chat = stub(app.address)
    async with channel:
        a = await devices(alice, app.address)
        ids = [(await a.sent(a.send(channel_id, f"m{i}"))).message_id for i in range(5)]
        for n in range(12):  # a run of events between m4 and m5 longer than a page
            added = n % 2 == 0
            await a.sent(a.react(channel_id, ids[4], "+1", add=added))
        await a.sent(a.send(channel_id, "m5"))
        for i in (1, 4):
            await a.sent(a.delete(channel_id, ids[i]))
        pages: list[list[tuple[int, str, bool]]] = []
        token = ""
        while True:
            page = await chat.GetHistory(
                chat_pb2.GetHistoryRequest(channel_id=channel_id, page_size=2, page_token=token),
                metadata=auth(bob),
            )
            pages.append([(m.seq, m.text, m.deleted_ms > 0) for m in page.messages])
            token = page.next_page_token
            if not token:
                break
    seen = [item for page in pages for item in page]
    assert seen == [
        (18, "m5", False),
        (5, "", True),
        (4, "m3", False),
        (3, "m2", False),
        (2, "", True),
        (1, "m0", False),
    ]
    assert all(len(page) <= 2 for page in pages)


async def test_member_events_reach_a_device_that_only_polls(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    alice = users_on(apps, "chat-0", 1)[0]
    bob = users_on(apps, "chat-1", 1)[0]
    channel_id = await open_direct(apps[0].address, alice, bob)
    a = await devices(alice, apps[0].address)
    first = await a.sent(a.send(channel_id, "hi"))
    start = await poll(apps[1].address, bob, "", wait=0)
    cursor = start.inbox_cursor

    async def edited() -> bool:
        nonlocal cursor
        page = await poll(apps[1].address, bob, cursor, wait=2)
        cursor = page.inbox_cursor
        return any(m.event.kind == chat_pb2.EVENT_KIND_EDIT for m in page.messages)

    await a.sent(a.edit(channel_id, first.message_id, "hi!"))
    await eventually(edited, what="the edit through a held poll")


async def test_a_delete_left_by_a_dead_server_is_claimed_and_still_scrubs_the_inboxes(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, fanout_claim_idle=0.5, fanout_claim_interval=0.1)
    dead, alive = apps
    alice = users_on(apps, "chat-0", 1)[0]
    bob = users_on(apps, "chat-1", 1)[0]
    channel_id = await open_direct(alive.address, alice, bob)
    b = await devices(bob, alive.address)
    secret = await _unary_send(alive, alice, channel_id, SECRET)
    await wait_until(lambda: b.got(1), what="the message")
    # chat-0 dies right after the delete's channel step: chat-1's claim fans it out
    fan_out_nothing(dead)
    ack = await _unary(dead, "DeleteMessage", alice, channel_id, secret.message_id)
    await wait_until(lambda: b.got(2), what="the claimed delete")
    assert (b.messages[1].seq, b.messages[1].event.kind) == (ack.seq, chat_pb2.EVENT_KIND_DELETE)
    for uid in (alice, bob):
        inbox = await alive.store.read_inbox(uid, "0-0", 10)
        assert [m.seq for m in inbox] == [2], uid  # the deleted message's entry went too


async def _unary_send(app: ChatApp, user: int, channel_id: int, text: str) -> chat_pb2.SendAck:
    channel, chat = stub(app.address)
    async with channel:
        reply: chat_pb2.SendMessageResponse = await chat.SendMessage(
            chat_pb2.SendMessageRequest(
                client_msg_id=f"send-{next(_CALLS)}", channel_id=channel_id, text=text
            ),
            metadata=auth(user),
        )
    return reply.ack


async def test_the_message_index_and_its_states_are_trimmed_with_the_history(
    chat_cluster: StartCluster, redis: RedisClient
) -> None:
    apps = await chat_cluster(1, history_cap=100)
    app = apps[0]
    alice, bob = users_on(apps, "chat-0", 2)
    channel_id = await open_direct(app.address, alice, bob)

    async def store(n: int, text: str = "", **event: Any) -> int:
        outcome = await app.store.store_message(
            sender_id=alice,
            channel_id=channel_id,
            message_id=app.delivery.ids.next_id(),
            client_msg_id=f"t{n}",
            text=text or f"m{n}",
            created_ms=int(time.time() * 1000),
            rate=1e6,
            burst=1_000_000,
            **event,
        )
        return outcome.message.message_id

    first = await store(0)
    await store(1, kind="react", target_id=first, emoji="+1")
    await store(2, kind="edit", target_id=first, text="m0, edited")
    assert sorted(await redis.hkeys(chan_state_key(channel_id))) == [
        b"m:1",
        f"u:1:{alice}".encode(),
    ]
    for n in range(3, 3 + 100 + 64):  # the index keeps 100 ids and trims 64 at a time
        await store(n)
    assert await redis.hkeys(chan_state_key(channel_id)) == []  # the first message's state
    assert await redis.zcard(chan_ids_key(channel_id)) <= 100 + 64
    with pytest.raises(NotFound):
        await store(999, kind="react", target_id=first, emoji="+1")
