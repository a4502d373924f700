"""Health tells the truth: Redis gone → NOT_SERVING and sends refused; PostgreSQL gone →
NOT_SERVING and channel changes UNAVAILABLE; back → SERVING."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chat_svc.app import build
from chat_svc.config import ChatConfig
from chat_svc.groups import Channels
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.errors import error_details
from feedchat_local.embedded import EmbeddedServer, etcd_server, postgres_url, redis_server
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import Device, auth
from tests.waiting import wait_until


async def _status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply: health_pb2.HealthCheckResponse = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
        return int(reply.status)


async def test_lost_redis_means_not_serving_and_no_ack_then_recovery(
    tmp_path: Path, make_config: Callable[..., Any]
) -> None:
    own_redis = redis_server(tmp_path / "redis")
    await asyncio.to_thread(own_redis.start)
    app = await build(
        make_config(
            ChatConfig,
            instance="chat-0",
            redis_url=f"redis://{own_redis.address}/0",
            health_interval=0.1,
            redis_timeout=0.5,
        )
    )
    await app.start()
    device: Device | None = None
    try:
        await app.ring.wait_for(lambda r: "chat-0" in r.members, 10)
        group = (
            await Channels(app.store, app.records, app.delivery.ids, 500).create_group(1, "g", [2])
        ).channel_id
        device = Device(1, app.address)
        await device.open()
        await device.sent(device.send(group, "before"))
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _status(app.address) == serving

        await asyncio.to_thread(own_redis.kill)
        statuses: list[int] = []

        async def poll_until(want: int) -> None:
            for _ in range(100):
                statuses.append(await _status(app.address))
                if statuses[-1] == want:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"health never became {want}: {statuses[-5:]}")

        await poll_until(health_pb2.HealthCheckResponse.NOT_SERVING)
        device.send(group, "during", client_msg_id="during")
        await wait_until(lambda: bool(device.send_errors), 10, "refusal while Redis is down")
        error = device.send_errors[0]
        assert (error.client_msg_id, error.code) == ("during", "UNAVAILABLE")
        assert not [a for a in device.acks if a.client_msg_id == "during"]

        await asyncio.to_thread(own_redis.start)
        await poll_until(serving)
        # the retry (same client_msg_id) now succeeds, once
        device.send(group, "during", client_msg_id="during")
        await wait_until(
            lambda: any(a.client_msg_id == "during" for a in device.acks), 10, "ack of the retry"
        )
        ack = next(a for a in device.acks if a.client_msg_id == "during")
        assert ack.seq == 2 and not ack.duplicate and len(device.send_errors) == 1
    finally:
        if device is not None:
            await device.close()
        await app.stop()
        own_redis.stop()


async def test_lost_etcd_means_not_serving_then_recovery(
    tmp_path: Path, make_config: Callable[..., Any]
) -> None:
    own_etcd = etcd_server(tmp_path / "etcd")
    await asyncio.to_thread(own_etcd.start)
    app = await build(
        make_config(ChatConfig, instance="chat-0", etcd=own_etcd.address, health_interval=0.1)
    )
    await app.start()
    try:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _status(app.address) == serving
        await asyncio.to_thread(own_etcd.kill)
        await _poll_status(app.address, health_pb2.HealthCheckResponse.NOT_SERVING, 10)
        await asyncio.to_thread(own_etcd.start)
        await _poll_status(app.address, serving, 20)
    finally:
        await app.stop()
        own_etcd.stop()


async def _poll_status(address: str, want: int, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        seen = await _status(address)
        if seen == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health stayed {seen}, wanted {want}")


async def test_lost_postgres_means_not_serving_and_unavailable_then_recovery(
    make_config: Callable[..., Any], private_postgres: EmbeddedServer, redis: RedisClient
) -> None:
    app = await build(
        make_config(
            ChatConfig,
            instance="chat-0",
            postgres_url=postgres_url(private_postgres),
            health_interval=0.1,
        )
    )
    await app.start()
    device: Device | None = None
    try:
        await app.ring.wait_for(lambda r: "chat-0" in r.members, 10)
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            group = (
                await stub.CreateGroup(
                    chat_pb2.CreateGroupRequest(name="g", member_ids=[2]), metadata=auth(1)
                )
            ).channel
            device = Device(1, app.address)
            await device.open()
            await asyncio.to_thread(private_postgres.stop)
            await _poll_status(app.address, health_pb2.HealthCheckResponse.NOT_SERVING, 10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateGroup(
                    chat_pb2.CreateGroupRequest(name="h", member_ids=[2]), metadata=auth(1)
                )
            details = await error_details(caught.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
            )
            # The member set is cached: sends to the group go on without PostgreSQL.
            await device.sent(device.send(group.channel_id, "still sending"))

            await asyncio.to_thread(private_postgres.start)
            await _poll_status(app.address, health_pb2.HealthCheckResponse.SERVING, 20)
            listed = await stub.ListChannels(chat_pb2.ListChannelsRequest(), metadata=auth(1))
            assert [c.name for c in listed.channels] == ["g"]  # the failed one left nothing
    finally:
        if device is not None:
            await device.close()
        await app.stop()
