"""notify_svc settings: queue consumption, retries, webhook policy, collapsing, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedchat_runtime.config import ConfigError, ServiceConfig

DEV_WEBHOOK_SECRET = "feedchat-dev-only-webhook-secret-do-not-use-in-production"


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class NotifyConfig(ServiceConfig):
    """Settings of one notify_svc process (API server plus queue worker)."""

    webhook_allow: str = _opt(
        "",
        "Comma-separated hosts webhooks may go to, each 'host' (default port of the scheme)"
        " or 'host:port'; empty allows none. Checked at registration and before each POST.",
    )
    webhook_allow_http: bool = _opt(
        False, "Also allow plain http:// webhook URLs (tests, trusted internal networks)."
    )
    webhook_secret: str = _opt(
        "",
        "HMAC-SHA256 key that signs webhook bodies; required with --webhook-allow unless --dev.",
    )
    webhook_timeout: float = _opt(5.0, "Seconds one webhook POST may take in total.")
    webhook_max_connections: int = _opt(100, "Open HTTP connections the webhook client keeps.")
    worker: bool = _opt(True, "Run the queue worker in this process (off: API only).")
    consumer_group: str = _opt("notify-workers", "Consumer group on the notify:queue stream.")
    concurrency: int = _opt(32, "Queue entries one process works on at the same time.")
    read_block: float = _opt(1.0, "Seconds one XREADGROUP blocks waiting for new entries.")
    claim_idle: float = _opt(
        30.0,
        "Seconds a pending entry must sit untouched before another worker claims it "
        "(a live worker touches its entries every claim_idle/3).",
    )
    claim_interval: float = _opt(5.0, "Seconds between XAUTOCLAIM sweeps for stalled entries.")
    max_attempts: int = _opt(
        8, "Delivery attempts of one queue entry before it goes to the notify:dead stream."
    )
    retry_base: float = _opt(1.0, "First retry delay in seconds; doubles per attempt.")
    retry_max: float = _opt(60.0, "Longest retry delay in seconds (before jitter).")
    collapse_window: float = _opt(
        60.0,
        "Seconds after a push during which further messages in the same channel only "
        "raise the open notification's count (0: every message pushes).",
    )
    dedup_ttl: float = _opt(
        172800.0, "Seconds the per-(user, message) processed markers are kept (dedup horizon)."
    )
    max_devices: int = _opt(10, "Push targets one user may register.")
    max_muted_channels: int = _opt(1000, "Channels one user may mute.")
    max_notifications: int = _opt(500, "Newest notifications kept per user.")
    stream_buffer: int = _opt(
        1000, "Events a StreamNotifications client may fall behind before it is cut off."
    )

    def validate(self) -> None:
        super().validate()
        positive = {
            "webhook_timeout": self.webhook_timeout,
            "webhook_max_connections": self.webhook_max_connections,
            "concurrency": self.concurrency,
            "read_block": self.read_block,
            "claim_idle": self.claim_idle,
            "claim_interval": self.claim_interval,
            "max_attempts": self.max_attempts,
            "retry_base": self.retry_base,
            "retry_max": self.retry_max,
            "dedup_ttl": self.dedup_ttl,
            "max_devices": self.max_devices,
            "max_muted_channels": self.max_muted_channels,
            "max_notifications": self.max_notifications,
            "stream_buffer": self.stream_buffer,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.collapse_window < 0:
            raise ConfigError("collapse_window must not be negative")
        if self.retry_max < self.retry_base:
            raise ConfigError("retry_max must be at least retry_base")
        if not self.consumer_group:
            raise ConfigError("consumer_group must not be empty")
        if self.webhook_allow and not self.dev and not self.webhook_secret:
            # Without an allow-list no webhook can be registered, so no key is needed
            # (that is how `feedchat up` starts it); with one, a key is mandatory.
            raise ConfigError(
                "webhook_secret is required with --webhook-allow outside --dev "
                "(FEEDCHAT_WEBHOOK_SECRET)"
            )
        # Imported here: the allow-list parser lives with the URL policy it serves.
        from notify_svc.allowlist import AllowList

        try:
            AllowList.parse(self.webhook_allow, self.webhook_allow_http)
        except ValueError as exc:
            raise ConfigError(f"webhook_allow: {exc}") from exc

    @property
    def signing_secret(self) -> bytes:
        """The webhook HMAC key (the dev fallback only in --dev)."""
        return (self.webhook_secret or (DEV_WEBHOOK_SECRET if self.dev else "")).encode()
