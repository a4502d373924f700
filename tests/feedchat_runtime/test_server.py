"""The server bootstrap: registration, health, reflection, graceful shutdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedchat_runtime.registry import EtcdSession, list_members
from feedchat_runtime.server import ServiceHost


async def test_started_host_is_registered_and_serving(make_config: Callable[..., Any]) -> None:
    config = make_config(instance="solo")
    host = ServiceHost(config, "demo")
    await host.open()
    host.build(lambda server: [])
    await host.start()
    try:
        members = await list_members(host.session.client, config.etcd_prefix, "demo")
        assert [(m.instance, m.address) for m in members] == [("solo", host.address)]
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await host.stop()
    watcher = EtcdSession(config.etcd, config.etcd_prefix)
    await watcher.start()
    try:
        assert await list_members(watcher.client, config.etcd_prefix, "demo") == []
    finally:
        await watcher.close()
