"""The router process: watch the chat ring, answer Route."""

from __future__ import annotations

import grpc

from feedchat.router.v1 import router_pb2, router_pb2_grpc
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.ring import RingWatch
from feedchat_runtime.server import ServiceHost
from router.config import RouterConfig
from router.servicer import RouterServicer

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


async def build(config: RouterConfig) -> ServiceHost:
    """An opened, built (not started) router host; tests call start()/stop() on it."""
    host = ServiceHost(config, "router")
    await host.open()
    ring = RingWatch(host.session)
    await ring.start()
    host.on_stop(ring.stop)

    def add_services(server: grpc.aio.Server) -> list[str]:
        router_pb2_grpc.add_RouterServiceServicer_to_server(RouterServicer(ring), server)
        return [SERVICE_NAME]

    host.build(add_services, AuthPolicy())
    return host


async def serve(config: RouterConfig) -> None:
    host = await build(config)
    await host.run()
