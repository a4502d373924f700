"""A chat server process SIGKILLed mid-conversation loses nothing that was acked."""

from __future__ import annotations

import asyncio

import pytest

from chat_svc.groups import Channels
from chat_svc.store import ChatStore
from chat_svc.store_channels import ChannelRecords
from feedchat_runtime.postgres import open_database
from feedchat_runtime.registry import EtcdSession
from feedchat_runtime.ring import RingWatch
from feedchat_runtime.snowflake import SnowflakeGenerator
from tests.chat_svc.chatkit import Device, Follower, chat_process, open_on_owner
from tests.waiting import wait_until


@pytest.mark.timeout(90)
async def test_killed_chat_server_loses_no_acked_message(
    tmp_path, etcd, etcd_prefix, redis_url, redis, database_url
) -> None:
    procs = [
        chat_process(tmp_path, etcd.address, etcd_prefix, redis_url, database_url, f"chat-{i}")
        for i in range(3)
    ]
    db = await open_database(database_url, "chat", "chat_svc", 2)
    session = EtcdSession(etcd.address, etcd_prefix, ttl=2)
    await session.start()
    ring = RingWatch(session)
    await ring.start()
    followers: list[Follower] = []
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        await ring.wait_for(lambda r: len(r.members) == 3, 20)
        owner = {u: ring.ring.owner(u).instance for u in range(1, 400)}
        sender_id = next(u for u, o in owner.items() if o == "chat-0")
        victims = [u for u, o in owner.items() if o == "chat-1"][:4]
        others = [u for u, o in owner.items() if o == "chat-2"][:2]
        records = ChannelRecords(db)
        store = ChatStore(redis, load_members=records.members)
        channels = Channels(store, records, SnowflakeGenerator(lambda: 1), 500)
        group = (await channels.create_group(sender_id, "g", victims + others)).channel_id
        sender = await open_on_owner(sender_id, ring)
        followers = [Follower(u, ring) for u in victims + others]
        await wait_until(
            lambda: all(f.streams and f.streams[-1].synced for f in followers),
            10,
            "receivers connected",
        )
        total, kill_at = 60, 20
        for i in range(total):
            if i == kill_at:
                await asyncio.to_thread(procs[1].kill)
            cmid = sender.send(group, f"m{i}", client_msg_id=f"k{i}")
            await sender.sent(cmid, timeout=10)
            await asyncio.sleep(0.02)
        await ring.wait_for(lambda r: "chat-1" not in r.members, 20)
        expected = [f"m{i}" for i in range(total)]
        for f in followers:
            await wait_until(lambda f=f: len(f.texts) >= total, 20, f"user {f.user_id}")
        for f in followers:
            assert f.texts == expected, f.user_id
        moved = [f for f in followers if f.user_id in victims]
        assert all(len(f.streams) >= 2 for f in moved)  # they really reconnected
        # a fresh device's full sync has every acked message exactly once, in order
        fresh = Device(
            victims[0], ring.ring.owner(victims[0]).address, device_id="fresh", cursor="0-0"
        )
        await fresh.open()
        assert fresh.texts() == expected
        await fresh.close()
        await sender.close()
    finally:
        for f in followers:
            await f.stop()
        for p in procs:
            p.stop()
        await ring.stop()
        await session.close()
        await db.close()
