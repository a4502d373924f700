"""A graceful stop (SIGTERM): what a chat server finishes before it closes its channels."""

from __future__ import annotations

import grpc

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.chat_svc.chatkit import OpenDevice, StartCluster, auth, open_direct, users_on
from tests.waiting import wait_until

CROWD = 60
"""Offline members of the group besides bob, all owned by bob's server: each message is
appended to their inboxes and pushed to his server too, so the dispatch of a batch of
sends is still appending and pushing when the sender has its acks."""
SENDS = 20


async def test_stopping_server_pushes_every_acked_message_to_a_device_on_another_server(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    # A fanout left unfinished would be claimed by chat-1 after fanout_claim_idle and
    # reach bob then; with the claim far off, only the stopping server's own push counts.
    # The stop window is the peer timeout: a generous one keeps a loaded machine in it.
    apps = await chat_cluster(
        2, send_rate=1000.0, send_burst=1000, fanout_claim_idle=60.0, peer_timeout=5.0
    )
    alice = users_on(apps, "chat-0", 1)[0]
    bob, *crowd = users_on(apps, "chat-1", 1 + CROWD)
    async with grpc.aio.insecure_channel(apps[0].address) as ch:
        created = await chat_pb2_grpc.ChatServiceStub(ch).CreateGroup(
            chat_pb2.CreateGroupRequest(name="crowd", member_ids=[bob, *crowd]),
            metadata=auth(alice),
        )
    group = created.channel.channel_id
    a = await devices(alice, apps[0].address, batch=True)
    b = await devices(bob, apps[1].address)
    texts = [f"m{i}" for i in range(SENDS)]
    a.send_batch(group, [(f"c{i}", text) for i, text in enumerate(texts)])
    await wait_until(lambda: len(a.acks) == SENDS, what="every ack", interval=0.001)
    await apps[0].stop()  # SIGTERM path, while those messages are still being dispatched
    # their fanouts are done: no record is left for a claim (the removals went before Redis
    # closed)
    assert await apps[1].store.pending_fanouts() == 0
    # bob sends nothing: only pushes can bring them to his open stream
    await wait_until(lambda: b.got(SENDS), what="every acked message on bob's stream")
    assert b.texts() == texts
    assert b.error is None and not b.ended


async def test_closing_store_removes_the_records_of_finished_fanouts_at_once(
    chat_cluster: StartCluster,
) -> None:
    (app,) = await chat_cluster(1)
    alice, bob = users_on([app], "chat-0", 2)
    channel = await open_direct(app.address, alice, bob)
    outcome = await app.delivery.send(alice, "c1", channel, "hi")
    assert await app.store.pending_fanouts() == 1
    fanned = await app.store.fan_out(outcome.message, outcome.recipients)
    assert fanned.error is None
    # the removal waits to ride on a later pipeline; a stopping server sends it before
    # Redis closes (a record left behind would be claimed again, with a warning)
    await app.store.close()
    assert await app.store.pending_fanouts() == 0
