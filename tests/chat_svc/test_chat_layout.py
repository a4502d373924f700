"""A Redis written by chat servers before the Redis Cluster key layout keeps its channels'
history and sequence: the new servers move the old keys at start-up."""

from __future__ import annotations

from redis.typing import EncodableT, FieldT

from chat_svc.groups import Channels
from chat_svc.keys import LAYOUT_KEY, chan_seq_key
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import Device, OpenDevice, StartCluster


async def test_old_channel_keys_are_moved_and_the_conversation_goes_on(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    (app,) = await chat_cluster(1)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    channel = (await channels.open_direct(1, 2)).channel_id
    await redis.delete(chan_seq_key(channel), LAYOUT_KEY)
    # what an older chat server left: two messages in the old layout
    old = f"chat:chan:{{c:{channel}}}"
    await redis.set(f"{old}:seq", 2)
    for seq in (1, 2):
        fields: dict[FieldT, EncodableT] = {
            "message_id": 900 + seq,
            "sender_id": 1,
            "text": f"old {seq}",
        }
        await redis.xadd(
            f"{old}:hist", {**fields, "client_msg_id": f"o{seq}", "created_ms": 1}, id=f"{seq}-0"
        )
    await redis.sadd(f"{old}:members", 1, 2)

    await app.stop()
    app = (await chat_cluster(1))[-1]  # a new server starts on that Redis
    assert await redis.exists(f"{old}:seq", f"{old}:hist", f"{old}:members") == 0
    sender: Device = await devices(1, app.address)
    ack = await sender.sent(sender.send(channel, "new"))
    assert ack.seq == 3
    history = await app.store.history(channel, None, 10)
    assert [m.text for m in history] == ["new", "old 2", "old 1"]
