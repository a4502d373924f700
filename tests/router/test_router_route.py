"""The router's answers agree with the ring every chat server uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from chat_svc.app import build as build_chat
from chat_svc.config import ChatConfig
from feedchat.router.v1 import router_pb2, router_pb2_grpc
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.ring import Ring
from router.app import build as build_router
from router.config import RouterConfig
from tests.chat_svc.chatkit import auth, owner_instance


def test_ring_is_a_function_of_membership_only() -> None:
    from feedchat_runtime.registry import Member

    members = {f"chat-{i}": Member("chat", f"chat-{i}", f"127.0.0.1:{7000 + i}") for i in range(3)}
    one = Ring.build(members)
    other = Ring.build(dict(reversed(list(members.items()))))
    assert one.version == other.version
    assert all(one.owner(u) == other.owner(u) for u in range(1, 2000))
    smaller = Ring.build({k: v for k, v in members.items() if k != "chat-2"})
    moved = sum(one.owner(u) != smaller.owner(u) for u in range(1, 3000))
    lost = sum(owner_instance(one, u) == "chat-2" for u in range(1, 3000))
    assert moved == lost  # only chat-2's users move when it leaves


async def test_route_agrees_with_every_chat_server(
    make_config: Callable[..., Any], redis: RedisClient
) -> None:
    chats = []
    router = await build_router(make_config(RouterConfig, instance="router-0"))
    await router.start()
    try:
        for i in range(3):
            app = await build_chat(make_config(ChatConfig, instance=f"chat-{i}"))
            await app.start()
            chats.append(app)
        for app in chats:
            await app.ring.wait_for(lambda r: len(r.members) == 3, 10)
        async with grpc.aio.insecure_channel(router.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            for _ in range(200):  # the router's own watch may trail the chat servers'
                servers = await stub.ListChatServers(
                    router_pb2.ListChatServersRequest(), metadata=auth(1)
                )
                if len(servers.chat_servers) == 3:
                    break
                await asyncio.sleep(0.02)
            assert [s.instance for s in servers.chat_servers] == ["chat-0", "chat-1", "chat-2"]
            owners = set()
            for user in range(1, 60):
                route = await stub.Route(router_pb2.RouteRequest(user_id=user), metadata=auth(1))
                assert route.ring_version == chats[0].ring.ring.version == servers.ring_version
                for app in chats:
                    owner = app.ring.ring.owner(user)
                    assert owner is not None
                    assert (owner.instance, owner.address) == (route.instance, route.address)
                owners.add(route.instance)
            assert owners == {"chat-0", "chat-1", "chat-2"}
            for bad in (0, 1 << 63):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Route(router_pb2.RouteRequest(user_id=bad), metadata=auth(1))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    finally:
        for app in chats:
            await app.stop()
        await router.stop()


def test_remembered_owners_match_the_hash_ring() -> None:
    from feedchat_runtime.registry import Member

    members = {f"chat-{i}": Member("chat", f"chat-{i}", f"127.0.0.1:{7000 + i}") for i in range(3)}
    ring = Ring.build(members)
    first = [ring.owner(u) for u in range(1, 500)]
    again = [ring.owner(u) for u in range(1, 500)]  # from the snapshot's cache
    direct = [members[str(ring._ring.get_node(str(u)))] for u in range(1, 500)]
    assert first == again == direct
    assert {m.instance for m in first if m is not None} == set(members)
