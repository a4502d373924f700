"""Router settings."""

from __future__ import annotations

from dataclasses import dataclass

from feedchat_runtime.config import ServiceConfig


@dataclass(frozen=True)
class RouterConfig(ServiceConfig):
    """Settings of the router (it needs only the shared ones: etcd above all)."""
