"""A chat server joining costs each client at most one redirect (no ping-pong)."""

from __future__ import annotations

import asyncio

from feedchat_client import ChatConnection
from tests.feedchat_client.helpers import user
from tests.feedchat_client.system import System
from tests.waiting import wait_until

CONNECTED, JOINING = 16, 8


async def test_join_redirects_each_client_at_most_once(system: System) -> None:
    await system.start(chat_servers=2)
    clients = [await user(system, "joiner") for _ in range(CONNECTED + JOINING)]
    conns: list[ChatConnection] = []
    for client in clients[:CONNECTED]:
        conn = client.chat.connection("phone")
        conns.append(await conn.start())
    for conn in conns:
        await conn.wait_connected(15)
    # chat-2 joins while these are connected, and more clients connect during the join
    # (their router may still name an old owner). Its own ring lags its peers' by 0.3 s:
    # they move clients to it before it knows it owns them.
    joining = asyncio.create_task(system.add_chat(watch_delay=0.3))
    late: list[ChatConnection] = []
    for client in clients[CONNECTED:]:
        late.append(await client.chat.connection("phone").start())
        await asyncio.sleep(0.01)
    await joining
    conns += late
    for conn in conns:
        await conn.wait_connected(15)

    def settled() -> bool:
        return all(
            c.connected and c.instance == system.owner(c._user_id).config.instance for c in conns
        )

    await wait_until(settled, 15, "every client on its owner")
    moved = [c for c in conns[:CONNECTED] if c.instance == "chat-2"]
    assert moved, "the join should move some connected clients"
    assert all(c.moves == 1 for c in moved)
    redirects = {c.device_id + str(c._user_id): c.redirects for c in conns}
    assert max(redirects.values()) <= 1, redirects
