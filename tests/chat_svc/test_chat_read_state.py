"""Read state: markers move forward only, stop at the channel's last message, are listed
with unread counts, and READ receipts reach the sender across chat servers."""

from __future__ import annotations

import grpc

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.chat_svc.chatkit import OpenDevice, StartCluster, auth, pair_across
from tests.waiting import wait_until


async def _unread(address: str, user: int, channel: int) -> tuple[int, int]:
    """(read_seq, unread_count) of ``channel`` in ``user``'s ListChannels."""
    async with grpc.aio.insecure_channel(address) as ch:
        reply = await chat_pb2_grpc.ChatServiceStub(ch).ListChannels(
            chat_pb2.ListChannelsRequest(), metadata=auth(user)
        )
    [found] = [c for c in reply.channels if c.channel_id == channel]
    return found.read_seq, found.unread_count


async def _is_unread(address: str, user: int, channel: int, expected: tuple[int, int]) -> bool:
    return await _unread(address, user, channel) == expected


async def test_read_markers_never_move_backwards_and_receipts_cross_servers(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    alice, bob, channel, a, b = await pair_across(apps, devices)
    for i in range(5):
        await a.sent(a.send(channel, f"m{i}"))
    assert await _unread(apps[1].address, bob, channel) == (0, 5)
    # own sends are read (the sender's marker moves with the append to its own inbox,
    # right after the ack)
    await wait_until(
        lambda: _is_unread(apps[0].address, alice, channel, (5, 0)), what="alice's marker"
    )

    def reads() -> list[int]:
        return [r.seq for r in a.receipts if r.kind == chat_pb2.RECEIPT_KIND_READ]

    b.read(channel, 50)  # past the newest message: clamped to it
    await wait_until(lambda: reads() == [5], what="READ receipt on alice's server")
    assert a.receipts[-1].user_id == bob
    b.read(channel, 2)  # backwards: ignored
    b.read(channel, 5)  # no move: ignored, no second receipt
    await wait_until(lambda: len(b.texts()) == 5, what="bob's messages")
    assert await _unread(apps[1].address, bob, channel) == (5, 0)
    await a.sent(a.send(channel, "m5"))
    assert await _unread(apps[1].address, bob, channel) == (5, 1)
    b.read(channel, 3)  # still backwards after a new message
    b.read(channel, 6)
    await wait_until(lambda: reads() == [5, 6], what="the second READ receipt")
    assert await _unread(apps[1].address, bob, channel) == (6, 0)


async def test_unread_counts_messages_not_edits_deletes_or_reactions(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    alice, bob, channel, a, b = await pair_across(apps, devices)
    acks = [await a.sent(a.send(channel, f"m{i}")) for i in range(3)]
    await a.sent(a.edit(channel, acks[0].message_id, "m0, edited"))
    await a.sent(a.react(channel, acks[1].message_id, "+1"))
    await a.sent(a.delete(channel, acks[2].message_id))
    _, unread = await _unread(apps[1].address, bob, channel)
    assert unread == 3  # the three messages (one now a tombstone), not the three events
    b.read(channel, acks[0].seq)
    await wait_until(
        lambda: _is_unread(apps[1].address, bob, channel, (acks[0].seq, 2)), what="one read"
    )
    await a.sent(a.send(channel, "m3"))
    assert (await _unread(apps[1].address, bob, channel))[1] == 3
    # reacting to an old message does not mark the newer ones read
    await b.sent(b.react(channel, acks[0].message_id, "+1"))
    await wait_until(  # on bob's own device: the append to bob's inbox is done
        lambda: any(m.event.emoji == "+1" for m in b.messages), what="bob's reaction"
    )
    assert await _unread(apps[1].address, bob, channel) == (acks[0].seq, 3)
