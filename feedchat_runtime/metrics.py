"""Prometheus metrics (one registry per process, served over HTTP beside the gRPC port)
and, when tracing is on, one OpenTelemetry SERVER span per RPC.

Every server installs :class:`TelemetryInterceptor` outside the RPC guard, so it sees the
final status of each call (including the ones the guard turned into a precise status) and
times the whole handler. Services add their own gauges and counters with the constructors
re-exported here (``Counter``, ``Gauge``, ``Histogram``); they all land in the default
registry that :func:`start_metrics_server` serves at ``/metrics``.

Label sets are bounded: ``method`` is the full gRPC method path (a fixed set per server:
unknown methods never reach an interceptor's handler) and ``code`` a gRPC status name.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from feedchat_runtime import tracing
from feedchat_runtime.handlers import WrappingInterceptor, wrap_handler

RPCS = Counter(
    "feedchat_rpc_requests",
    "Finished RPCs by full method name and gRPC status code.",
    ["method", "code"],
)
RPC_SECONDS = Histogram(
    "feedchat_rpc_duration_seconds",
    "Time from a unary RPC's arrival to its response (streams are not timed here).",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OPEN_STREAMS = Gauge(
    "feedchat_open_streams",
    "Server-streaming and bidirectional RPCs in progress, by method.",
    ["method"],
)
DEPENDENCY_UP = Gauge(
    "feedchat_dependency_up",
    "1 while this process reaches the dependency (redis, etcd, postgres), else 0.",
    ["dependency"],
)


def set_dependency_up(name: str, up: bool) -> None:
    """Record whether dependency ``name`` answered this process's last probe."""
    DEPENDENCY_UP.labels(name).set(1 if up else 0)


def _code_name(context: grpc.aio.ServicerContext, failed: bool) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):  # grpc.aio reports an int when a handler set it by number
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return str(candidate.name)
    return "UNKNOWN" if failed else "OK"


def _span(method: str, context: grpc.aio.ServicerContext) -> Span | None:
    if not tracing.enabled():
        return None
    return tracing.server_span(method, context.invocation_metadata())


def _finish(
    method: str, context: grpc.aio.ServicerContext, failed: bool, span: Span | None
) -> None:
    code = _code_name(context, failed)
    RPCS.labels(method, code).inc()
    if span is not None:
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "OK":
            span.set_status(StatusCode.ERROR, code)
        span.end()


class TelemetryInterceptor(WrappingInterceptor):
    """Counts every RPC by method and status; times unary RPCs; gauges open streams;
    opens a SERVER span per RPC while tracing is on (:mod:`feedchat_runtime.tracing`)."""

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:

        @contextlib.asynccontextmanager
        async def observed(
            request: Any, context: grpc.aio.ServicerContext, streaming: bool
        ) -> AsyncIterator[None]:
            started = time.perf_counter()
            gauge = OPEN_STREAMS.labels(method) if streaming else None
            if gauge is not None:
                gauge.inc()
            span = _span(method, context)
            failed = True
            try:
                if span is None or streaming:  # a stream's span is not made current
                    yield
                else:
                    with trace.use_span(span, end_on_exit=False):
                        yield
                failed = False
            finally:
                if gauge is None:
                    RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
                else:
                    gauge.dec()
                _finish(method, context, failed, span)

        return wrap_handler(handler, observed)


class MetricsServer:
    """The process's ``/metrics`` HTTP endpoint (prometheus-client's threaded server)."""

    def __init__(self, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


__all__ = [
    "Counter",
    "DEPENDENCY_UP",
    "Gauge",
    "Histogram",
    "TelemetryInterceptor",
    "MetricsServer",
    "set_dependency_up",
]
