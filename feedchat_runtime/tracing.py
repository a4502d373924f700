"""Distributed traces with OpenTelemetry: off by default, one flag turns an exporter on.

``--trace-exporter console`` prints finished spans as JSON on stdout (the process log
under ``feedchat up``); ``--trace-exporter otlp`` sends them to an OTLP/gRPC collector at
``--otlp-endpoint``. With ``none`` (the default) no tracer provider is installed and every
span below is OpenTelemetry's no-op span, so tracing costs nothing.

The context crosses processes three ways:

- into a server: the telemetry interceptor (:mod:`feedchat_runtime.metrics`) reads the
  W3C ``traceparent`` metadata and opens a SERVER span per RPC;
- out of a service: channels from :func:`feedchat_runtime.server.open_channel` carry
  OpenTelemetry's client interceptors, which write ``traceparent`` into the metadata;
- through a Redis queue: the producer stores :func:`carrier` in the job, the worker
  runs under :func:`continued` (fanout jobs and notify jobs do this).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

logger = logging.getLogger(__name__)

EXPORTERS = ("none", "console", "otlp")
FIELDS = ("traceparent", "tracestate")
"""The W3C trace-context fields a queued job carries beside its own."""
_enabled = False

tracer = trace.get_tracer("feedchat")


def configure(service: str, exporter: str, otlp_endpoint: str = "") -> bool:
    """Install this process's tracer provider (once); returns whether tracing is on."""
    global _enabled
    if exporter == "none" or _enabled:
        return _enabled
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    span_exporter: SpanExporter
    if exporter == "console":
        span_exporter = ConsoleSpanExporter(service_name=service)
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=otlp_endpoint or None, insecure=True)
    else:
        raise ValueError(f"trace exporter {exporter!r} is not one of {EXPORTERS}")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _enabled = True
    logger.info("tracing on", extra={"exporter": exporter, "service": service})
    return True


def enabled() -> bool:
    return _enabled


def shutdown() -> None:
    """Flush spans still buffered (called when the process stops)."""
    provider: Any = trace.get_tracer_provider()
    if _enabled and hasattr(provider, "shutdown"):
        provider.shutdown()


def client_interceptors() -> list[Any]:
    """Interceptors for a channel to another feedchat server (none while tracing is off)."""
    if not _enabled:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]


def server_span(method: str, metadata: Any) -> Span:
    """A started SERVER span for one RPC, child of the caller's ``traceparent`` if any."""
    carrier = {}
    for key, value in metadata or ():
        if key in FIELDS and isinstance(value, str):
            carrier[key] = value
    return tracer.start_span(
        method.lstrip("/"),
        context=propagate.extract(carrier),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.method": method},
    )


def carrier() -> dict[str, str]:
    """The current trace context as strings, to store beside a queued job."""
    found: dict[str, str] = {}
    if _enabled:
        propagate.inject(found)
    return found


@contextlib.contextmanager
def continued(name: str, stored: Mapping[str, str]) -> Iterator[Span]:
    """Work on a queued job as a span continuing the trace its producer stored."""
    with tracer.start_as_current_span(
        name, context=propagate.extract(dict(stored)), kind=SpanKind.CONSUMER
    ) as span:
        yield span
