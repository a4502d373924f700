"""Batch frames: a device whose hello sets batch_frames gets frames waiting together as one
``batch`` frame, with the same frames in the same order; other devices never see one."""

from __future__ import annotations

from chat_svc.sessions import MAX_BATCH
from tests.chat_svc.chatkit import OpenDevice, StartCluster, direct_pair
from tests.waiting import wait_until


async def test_replayed_backlog_comes_in_bounded_batches_in_inbox_order(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps, alice, bob, channel = await direct_pair(chat_cluster)
    a = await devices(alice, apps[0].address)
    total = MAX_BATCH + 6
    cmids = [a.send(channel, f"m{i}", client_msg_id=f"backlog-{i}") for i in range(total)]
    await a.sent(cmids[-1])
    batching = await devices(bob, apps[1].address, device_id="tablet", batch=True)
    plain = await devices(bob, apps[1].address, device_id="phone")
    expected = [f"m{i}" for i in range(total)]
    assert batching.texts() == expected
    assert [m.seq for m in batching.messages] == list(range(1, total + 1))
    # the replay page plus sync_complete, cut at the bound; sync_complete still comes last
    assert batching.batch_sizes == [MAX_BATCH, total + 1 - MAX_BATCH]
    assert batching.frames[-1].WhichOneof("frame") == "sync_complete"
    assert plain.texts() == expected and plain.batch_sizes == []


async def test_live_burst_between_batching_devices_arrives_once_in_order_with_every_ack(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps, alice, bob, channel = await direct_pair(chat_cluster)
    a = await devices(alice, apps[0].address, batch=True)
    b = await devices(bob, apps[1].address, batch=True)
    total = 40
    cmids = [a.send(channel, f"m{i}", client_msg_id=f"burst-{i}") for i in range(total)]
    await wait_until(lambda: len(b.messages) >= total, what="the burst at bob")
    await wait_until(lambda: len(a.messages) >= total, what="alice's own copies")
    assert b.texts() == [f"m{i}" for i in range(total)]
    assert sorted(ack.client_msg_id for ack in a.acks) == sorted(cmids)
    assert [m.seq for m in a.messages] == list(range(1, total + 1))
    assert all(size <= MAX_BATCH for size in a.batch_sizes + b.batch_sizes)
