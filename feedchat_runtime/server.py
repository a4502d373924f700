"""Server bootstrap: build a grpc.aio server, run it registered, shut it down gracefully.

:func:`create_server` builds and binds (servicers, health, reflection, the RPC guard) and
returns the server and its port. :class:`ServiceHost` owns one process's lifetime: its etcd
session, its dependency health (:mod:`feedchat_runtime.health`: SERVING only while etcd
and every dependency the service added is reachable), start-up (start, register after
start, report health), and shutdown on
SIGTERM/SIGINT in the order the architecture asks for — mark NOT_SERVING, deregister, let
streams drain (handlers watch :attr:`ServiceHost.draining`), then ``stop(grace)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from feedchat_runtime import tracing
from feedchat_runtime.auth import TokenAuthority, authority_from_config
from feedchat_runtime.config import ServiceConfig
from feedchat_runtime.health import DependencyHealth
from feedchat_runtime.interceptors import AuthPolicy, RpcGuard
from feedchat_runtime.metrics import MetricsServer, TelemetryInterceptor
from feedchat_runtime.registry import EtcdSession, Member, Registration

logger = logging.getLogger(__name__)

AddServices = Callable[[grpc.aio.Server], Sequence[str]]
"""Adds servicers to a server; returns their full service names (for health, reflection)."""


def package_version() -> str:
    try:
        return version("feedchat")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


@dataclass
class BuiltServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service_names: list[str]


def _server_credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


def create_server(
    config: ServiceConfig,
    add_services: AddServices,
    authority: TokenAuthority | None,
    policy: AuthPolicy | None = None,
) -> BuiltServer:
    """Build and bind a server with the feedchat guard, health and reflection."""
    server = grpc.aio.server(
        # Telemetry outermost: it sees the status the guard chose and times the whole call.
        interceptors=[TelemetryInterceptor(), RpcGuard(authority, policy)],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    names = list(add_services(server))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{config.host}:{config.port}"
    credentials = _server_credentials(config)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    return BuiltServer(server, port, health, names)


class ServiceHost:
    """One service process: etcd session, server, registration, graceful shutdown.

    Usage in a service's ``serve()``::

        host = ServiceHost(config, "account")
        await host.open()                  # etcd session (ids, watches need it)
        host.build(add_services, policy)   # create_server
        host.dependencies.add("redis", redis.ping)  # NOT_SERVING while Redis is gone
        host.on_stop(redis.aclose)
        await host.run()                   # start, register, wait for a signal, stop
    """

    def __init__(self, config: ServiceConfig, service: str) -> None:
        self.config = config
        self.service = service
        self.session = EtcdSession(config.etcd, config.etcd_prefix, config.lease_ttl)
        tracing.configure(service, config.trace_exporter, config.otlp_endpoint)
        self.authority = authority_from_config(
            config.auth_secret, config.service_secret, config.dev
        )
        self.draining = asyncio.Event()
        self.built: BuiltServer | None = None
        self.registration: Registration | None = None
        self.metrics: MetricsServer | None = None
        self._stop_hooks: list[Callable[[], Awaitable[object]]] = []
        self._stopped = False
        self.dependencies = DependencyHealth(
            self.set_serving, config.health_interval, config.health_timeout
        )

        async def etcd_lease_valid() -> bool:
            return self.session.valid

        self.dependencies.add("etcd", etcd_lease_valid)

    @property
    def port(self) -> int:
        assert self.built is not None, "build() first"
        return self.built.port

    @property
    def address(self) -> str:
        host = self.config.advertise_host or self.config.host
        return f"{host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where Prometheus scrapes this process ('' before start)."""
        if self.metrics is None:
            return ""
        host = self.config.advertise_host or self.config.host
        return f"http://{host}:{self.metrics.port}/metrics"

    async def open(self) -> None:
        await self.session.start()

    def build(self, add_services: AddServices, policy: AuthPolicy | None = None) -> BuiltServer:
        self.built = create_server(self.config, add_services, self.authority, policy)
        return self.built

    def on_stop(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run ``hook`` after the server has stopped (close pools, stop workers)."""
        self._stop_hooks.append(hook)

    def background(self, work: Awaitable[None], name: str) -> None:
        """Run ``work`` (a loop: sweeps, retries) as a task cancelled when the host stops."""
        task = asyncio.ensure_future(work)
        task.set_name(name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.on_stop(cancel)

    async def set_serving(self, serving: bool) -> None:
        """Report (NOT_)SERVING for the whole server and each of its services."""
        assert self.built is not None
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.built.service_names]:
            await self.built.health.set(name, status)

    async def start(self) -> None:
        """Start serving, register in etcd (after start), report health. Idempotent."""
        assert self.built is not None, "build() first"
        if self.registration is not None:
            return
        await self.built.server.start()
        self.metrics = MetricsServer(self.config.host, self.config.metrics_port)
        member = Member(
            service=self.service,
            instance=self.config.instance,
            address=self.address,
            version=package_version(),
            started_at=time.time(),
            pid=os.getpid(),
            metrics=self.metrics_url,
        )
        self.registration = Registration(self.session, member)
        await self.registration.register()
        await self.dependencies.start()
        logger.info("serving", extra={"address": self.address, "instance": self.config.instance})

    async def stop(self) -> None:
        """NOT_SERVING, deregister, drain streams within the grace period, stop."""
        if self._stopped or self.built is None:
            return
        self._stopped = True
        logger.info("shutting down", extra={"grace": self.config.grace})
        await self.dependencies.stop()
        await self.built.health.enter_graceful_shutdown()
        if self.registration is not None:
            await self.registration.deregister()
        self.draining.set()
        await self.built.server.stop(self.config.grace)
        for hook in reversed(self._stop_hooks):
            try:
                await hook()
            except Exception:
                logger.exception("stop hook failed")
        if self.metrics is not None:
            self.metrics.close()
        tracing.shutdown()
        await self.session.close(revoke=True)
        logger.info("stopped")

    async def run(self) -> None:
        """Start, then serve until SIGTERM or SIGINT, then stop."""
        await run_until_signal(self.start, self.stop)


async def run_until_signal(
    start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[object]]
) -> None:
    """``start()``, wait for SIGTERM or SIGINT, then ``stop()`` (also when start fails)."""
    loop = asyncio.get_running_loop()
    requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, requested.set)
    try:
        await start()
        await requested.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await stop()


def client_credentials(config: ServiceConfig) -> grpc.ChannelCredentials | None:
    """Channel credentials for calling another feedchat server (None: plaintext)."""
    if not config.tls_ca:
        return None
    with open(config.tls_ca, "rb") as ca:
        return grpc.ssl_channel_credentials(root_certificates=ca.read())


def open_channel(config: ServiceConfig, address: str) -> grpc.aio.Channel:
    """A channel to another feedchat server, TLS when the config names a CA.

    Each channel has its own subchannels (``grpc.use_local_subchannel_pool``): by default
    gRPC shares them between channels to the same target, so a channel opened to replace
    one whose server restarted would inherit its reconnect backoff instead of dialling.
    """
    credentials = client_credentials(config)
    options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    interceptors = tracing.client_interceptors()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
