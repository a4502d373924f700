"""presence_svc settings (flags and FEEDCHAT_* variables, see feedchat_runtime.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedchat_runtime.config import ConfigError, ServiceConfig


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PresenceConfig(ServiceConfig):
    """Settings of one presence_svc instance."""

    heartbeat_interval: float = _opt(
        10.0, "Seconds between a device's heartbeats (told to clients in the first snapshot)."
    )
    offline_timeout: float = _opt(
        30.0, "Seconds without a heartbeat after which a device counts as gone."
    )
    sweep_interval: float = _opt(
        1.0, "Seconds between sweeps for devices whose heartbeat deadline has passed."
    )
    sweep_batch: int = _opt(500, "Users a sweep examines per index bucket and round trip.")
    max_watch: int = _opt(1000, "Largest watch list of one stream, and largest watch frame.")
    max_batch: int = _opt(1000, "Most user ids one GetPresence call may ask for.")
    max_devices: int = _opt(
        16, "Most simultaneous Connect streams of one user (more: RESOURCE_EXHAUSTED)."
    )
    outbound_queue: int = _opt(
        1024, "Frames a stream may have waiting to be sent; overflow ends the stream."
    )
    heartbeat_flush: float = _opt(
        0.02, "Seconds heartbeats wait to be written to Redis together in one pipeline."
    )
    redis_pool: int = _opt(
        32, "Most Redis connections this process opens (callers beyond it wait their turn)."
    )
    default_watch: bool = _opt(
        True, "Start each stream watching the accounts its user follows (from feed_svc)."
    )
    feed_timeout: float = _opt(
        1.0, "Seconds a stream's opening waits for feed_svc's following list."
    )

    def validate(self) -> None:
        super().validate()
        if self.heartbeat_interval <= 0:
            raise ConfigError("heartbeat_interval must be positive")
        if self.offline_timeout <= self.heartbeat_interval:
            raise ConfigError("offline_timeout must exceed heartbeat_interval")
        if self.sweep_interval <= 0 or self.sweep_interval > self.offline_timeout:
            raise ConfigError("sweep_interval must be positive and at most offline_timeout")
        if not 1 <= self.max_watch <= 100_000:
            raise ConfigError("max_watch must be between 1 and 100000")
        if not 1 <= self.max_batch <= 100_000:
            raise ConfigError("max_batch must be between 1 and 100000")
        if self.max_devices < 1:
            raise ConfigError("max_devices must be at least 1")
        if self.outbound_queue < 16:
            raise ConfigError("outbound_queue must be at least 16")
        if self.redis_pool < 2:
            raise ConfigError("redis_pool must be at least 2 (one is the pub/sub connection)")
        if self.sweep_batch < 1:
            raise ConfigError("sweep_batch must be at least 1")
        if not 0 <= self.heartbeat_flush <= 1:
            raise ConfigError("heartbeat_flush must be between 0 and 1 second")
