"""A chat server process SIGKILLed mid-conversation loses nothing that was acked."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from feedchat_local.embedded import EmbeddedServer
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import Device, chat_processes
from tests.waiting import wait_until


@pytest.mark.timeout(90)
async def test_killed_chat_server_loses_no_acked_message(
    tmp_path: Path,
    etcd: EmbeddedServer,
    etcd_prefix: str,
    redis_url: str,
    redis: RedisClient,
    database_url: str,
) -> None:
    async with chat_processes(
        tmp_path, etcd.address, etcd_prefix, redis_url, redis, database_url
    ) as chat:
        sender_id = chat.users_of("chat-0")[0]
        victims = chat.users_of("chat-1")[:4]
        others = chat.users_of("chat-2")[:2]
        created = await chat.channels.create_group(sender_id, "g", victims + others)
        group = created.channel_id
        sender = await chat.connect(sender_id)
        followers = chat.follow(victims + others)
        await wait_until(
            lambda: all(f.streams and f.streams[-1].synced for f in followers),
            10,
            "receivers connected",
        )
        total, kill_at = 60, 20
        for i in range(total):
            if i == kill_at:
                await asyncio.to_thread(chat.procs[1].kill)
            cmid = sender.send(group, f"m{i}", client_msg_id=f"k{i}")
            await sender.sent(cmid, timeout=10)
            await asyncio.sleep(0.02)
        await chat.ring.wait_for(lambda r: "chat-1" not in r.members, 20)
        expected = [f"m{i}" for i in range(total)]
        for f in followers:
            await wait_until(functools.partial(f.got, total), 20, f"user {f.user_id}")
        for f in followers:
            assert f.texts == expected, f.user_id
        moved = [f for f in followers if f.user_id in victims]
        assert all(len(f.streams) >= 2 for f in moved)  # they really reconnected
        # a fresh device's full sync has every acked message exactly once, in order
        owner = chat.ring.ring.owner(victims[0])
        assert owner is not None
        fresh = Device(victims[0], owner.address, device_id="fresh", cursor="0-0")
        await fresh.open()
        assert fresh.texts() == expected
        await fresh.close()
