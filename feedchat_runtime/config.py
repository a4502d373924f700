"""Service configuration: frozen dataclasses filled from flags and FEEDCHAT_* variables.

Every service declares one frozen dataclass that extends :class:`ServiceConfig`. Each field
becomes a command-line flag (``redis_url`` -> ``--redis-url``) whose default comes from the
environment variable ``FEEDCHAT_REDIS_URL`` when set, else from the field default. The
field's ``help`` metadata is the flag's documentation. Nothing else in feedchat reads
``os.environ``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

ENV_PREFIX = "FEEDCHAT_"

C = TypeVar("C", bound="ServiceConfig")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; raised at start-up."""


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ServiceConfig:
    """Settings every feedchat server shares."""

    host: str = _opt("127.0.0.1", "Interface the gRPC server listens on.")
    port: int = _opt(0, "gRPC port; 0 picks a free one (the registry tells clients which).")
    advertise_host: str = _opt(
        "", "Host other processes use to reach this server; defaults to --host."
    )
    instance: str = field(
        default_factory=_default_instance,
        metadata={"help": "Instance name in the registry; defaults to <hostname>-<pid>."},
    )
    etcd: str = _opt(
        "127.0.0.1:2379", "etcd endpoint host:port, or a comma-separated list of ip:port."
    )
    etcd_prefix: str = _opt("/feedchat", "Root of every feedchat key in etcd.")
    lease_ttl: int = _opt(5, "Seconds a registration outlives its last keep-alive.")
    redis_url: str = _opt(
        "redis://127.0.0.1:6379/0",
        "Redis URL: one node (redis://, unix://) or a cluster "
        "(redis+cluster://host:port,host:port).",
    )
    replica_acks: int = _opt(
        0,
        "Redis replicas that must confirm a write (WAIT) before a post or a chat message is "
        "acknowledged; 0 turns the wait off.",
    )
    replica_wait_ms: int = _opt(
        500,
        "Milliseconds a write waits for --replica-acks replicas before the call fails "
        "UNAVAILABLE (REPLICA_ACK_TIMEOUT; retry with the same request id).",
    )
    postgres_url: str = _opt(
        "postgresql://postgres@127.0.0.1:5432/feedchat",
        "PostgreSQL URL of the record (users, graph, posts, channels).",
    )
    postgres_pool_size: int = _opt(10, "Most PostgreSQL connections this process opens.")
    grace: float = _opt(5.0, "Seconds open RPCs get to finish on shutdown.")
    health_interval: float = _opt(
        1.0, "Seconds between checks of every dependency (etcd, Redis, ...) for health."
    )
    health_timeout: float = _opt(
        2.0, "Seconds a dependency check may take before the server reports NOT_SERVING."
    )
    max_message_bytes: int = _opt(1 << 20, "Largest request message the server accepts.")
    log_level: str = _opt("INFO", "Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: str = _opt("json", "Log format: json (one object a line) or text.")
    auth_secret: str = _opt("", "HMAC key that signs user tokens; required unless --dev.")
    service_secret: str = _opt(
        "", "HMAC key that signs service-to-service credentials; required unless --dev."
    )
    dev: bool = _opt(False, "Development mode: built-in throwaway secrets are allowed.")
    cursor_secret: str = _opt(
        "",
        "HMAC key signing page tokens (same on every server); default: derived from --auth-secret.",
    )
    tls_cert: str = _opt("", "PEM server certificate; with --tls-key turns TLS on.")
    tls_key: str = _opt("", "PEM private key of --tls-cert.")
    tls_ca: str = _opt("", "PEM CA bundle to verify peers this process calls over TLS.")
    trace_exporter: str = _opt(
        "none", "Where spans go: none, console (JSON on stdout) or otlp (--otlp-endpoint)."
    )
    otlp_endpoint: str = _opt(
        "", "OTLP/gRPC collector for --trace-exporter otlp, e.g. http://127.0.0.1:4317."
    )
    metrics_port: int = _opt(
        0, "Port of the Prometheus /metrics HTTP endpoint (on --host); 0 picks a free one."
    )

    def validate(self) -> None:
        """Fail early on settings that cannot work. Subclasses extend this."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        if self.trace_exporter not in ("none", "console", "otlp"):
            raise ConfigError(
                f"trace_exporter {self.trace_exporter!r} is not none, console or otlp"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port {self.metrics_port} is out of range")
        if not 0 <= self.replica_acks <= 5:
            raise ConfigError("replica_acks must be between 0 and 5")
        if not 1 <= self.replica_wait_ms <= 60_000:
            raise ConfigError("replica_wait_ms must be between 1 and 60000")
        if self.postgres_pool_size < 1:
            raise ConfigError("postgres_pool_size must be at least 1")
        if self.lease_ttl < 2:
            raise ConfigError("lease_ttl must be at least 2 seconds")
        for endpoint in self.etcd.split(","):
            host, _, port = endpoint.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"etcd endpoint {endpoint!r} is not host:port")
        if self.health_interval <= 0 or self.health_timeout <= 0:
            raise ConfigError("health_interval and health_timeout must be positive")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"log_format {self.log_format!r} is not json or text")
        if not self.dev and not (self.auth_secret and self.service_secret):
            raise ConfigError(
                "auth_secret and service_secret are required outside --dev "
                "(FEEDCHAT_AUTH_SECRET, FEEDCHAT_SERVICE_SECRET)"
            )


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{text!r} is not a boolean")


def build_parser(cls: type[C], description: str = "") -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of ``cls``."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        help_text = f"{f.metadata.get('help', '')} [env {env}]"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, nargs="?", const="true", help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, help=help_text)
    return parser


def _convert(cls: type[C], name: str, raw: str) -> Any:
    typ = next(f.type for f in dataclasses.fields(cls) if f.name == name)
    try:
        if typ in (bool, "bool"):
            return _parse_bool(raw)
        if typ in (int, "int"):
            return int(raw)
        if typ in (float, "float"):
            return float(raw)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    except ValueError as exc:
        type_name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"{name}: {raw!r} is not a valid {type_name}") from exc
    return raw


def load_config(
    cls: type[C],
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> C:
    """Build ``cls`` from flags, then FEEDCHAT_* variables, then defaults; validate it.

    ``argv`` None means the process's own arguments (``sys.argv[1:]``).

    Keyword ``overrides`` win over everything (tests use them).
    """
    environ = os.environ if env is None else env
    args = build_parser(cls).parse_args(sys.argv[1:] if argv is None else list(argv))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name)
        if raw is None:
            raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _convert(cls, f.name, raw)
    values.update(overrides)
    config = cls(**values)
    config.validate()
    return config
