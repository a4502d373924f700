"""The feedchat services `feedchat up` knows how to start, and their local ports.

Each service is a package runnable as ``python -m <module>`` whose flags come from its
config dataclass (see :mod:`feedchat_runtime.config`). A service whose package is not
installed yet is simply skipped, so this list can name the whole design.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one kind of service locally."""

    name: str
    """Registry name: ``<prefix>/services/<name>/<instance>``."""
    module: str
    """Package run with ``python -m``."""
    base_port: int
    """Local port of the first instance; instance i listens on ``base_port + i``."""
    default_instances: int = 1
    redis_cluster: bool = True
    """Runs on a Redis Cluster (every script and MULTI in one hash slot); `feedchat up`
    with a cluster starts only these."""

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("account", "account_svc", 50051),
    ServiceSpec("feed", "feed_svc", 50052),
    ServiceSpec("presence", "presence_svc", 50053),
    ServiceSpec("router", "router", 50054),
    ServiceSpec("notify", "notify_svc", 50055),
    ServiceSpec("chat", "chat_svc", 50061, default_instances=3),
)
