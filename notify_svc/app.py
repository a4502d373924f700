"""Wiring of one notify_svc process: API server, queue worker, event hub, HTTP client."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import httpx

from feedchat.notify.v1 import notify_pb2_grpc
from feedchat_runtime import redis_client
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.server import ServiceHost
from notify_svc.allowlist import AllowList
from notify_svc.collapse import Collapser
from notify_svc.config import NotifyConfig
from notify_svc.delivery import Dispatcher
from notify_svc.events import EventHub
from notify_svc.service import NotifyService
from notify_svc.servicer import SERVICE_NAME, STREAM_METHOD, NotifyServicer
from notify_svc.store import NotifyStore
from notify_svc.webhook import WebhookSender, make_client
from notify_svc.worker import QueueWorker

REGISTRY_NAME = "notify"


@dataclass
class NotifyApp:
    """A built (not yet started) notify_svc process."""

    config: NotifyConfig
    host: ServiceHost
    redis: redis_client.RedisClient
    store: NotifyStore
    http: httpx.AsyncClient
    hub: EventHub
    worker: QueueWorker | None

    async def start(self) -> None:
        """Start serving and (if enabled) consuming the queue; tests call this."""
        await self.host.start()
        if self.worker is not None:
            await self.worker.start()

    async def stop(self) -> None:
        await self.host.stop()


async def build(config: NotifyConfig) -> NotifyApp:
    """Open the etcd session and Redis, build the server and the worker (not started)."""
    host = ServiceHost(config, REGISTRY_NAME)
    await host.open()
    redis = redis_client.connect_any(config.redis_url)
    host.dependencies.add("redis", redis.ping)
    host.on_stop(redis.aclose)
    http = make_client(config.webhook_timeout, config.webhook_max_connections)
    host.on_stop(http.aclose)
    hub = EventHub(redis, config.stream_buffer)
    host.on_stop(hub.close)
    try:
        store = NotifyStore(redis)
        allow = AllowList.parse(config.webhook_allow, config.webhook_allow_http)
        await hub.start()
        service = NotifyService(store, allow, config)
        servicer = NotifyServicer(service, hub, host.draining)

        def add_services(server: grpc.aio.Server) -> list[str]:
            notify_pb2_grpc.add_NotifyServiceServicer_to_server(servicer, server)
            return [SERVICE_NAME]

        host.build(add_services, AuthPolicy(service_only={STREAM_METHOD}))
        worker = None
        if config.worker:
            sender = WebhookSender(http, allow, config.signing_secret, config.webhook_timeout)
            collapser = Collapser(
                store, config.collapse_window, config.dedup_ttl, config.max_notifications
            )
            dispatcher = Dispatcher(store, collapser, sender, config.dedup_ttl)
            worker = QueueWorker(store, dispatcher, config, consumer=config.instance)
            host.on_stop(worker.stop)  # runs first: hooks run in reverse order
    except BaseException:
        # host.stop() does nothing before build() succeeded: close what we opened here
        # (e.g. the port was taken), so a failed build leaks no session or task.
        await hub.close()
        await http.aclose()
        await redis.aclose()
        await host.session.close(revoke=True)
        raise
    return NotifyApp(config, host, redis, store, http, hub, worker)


async def serve(config: NotifyConfig) -> None:
    """Run until SIGTERM/SIGINT: serve, consume, then shut down gracefully."""
    app = await build(config)
    if app.worker is not None:
        await app.worker.start()
    await app.host.run()
