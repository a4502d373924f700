"""feed_svc settings: one frozen dataclass, filled from flags and FEEDCHAT_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedchat_runtime.config import ConfigError, ServiceConfig


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


MAX_POST_CHARS = 2000
"""Longest post, in Unicode characters (documented in the proto)."""


@dataclass(frozen=True)
class FeedConfig(ServiceConfig):
    """Settings of a feed_svc process."""

    post_rate: float = _opt(1.0, "Sustained posts per second a user may publish.")
    post_burst: int = _opt(10, "Posts a user may publish at once before the rate applies.")
    feed_cache_size: int = _opt(800, "Newest entries kept in each user's feed cache.")
    celebrity_threshold: int = _opt(
        10_000, "Authors with more followers than this are merged at read time, not fanned out."
    )
    inactive_after: float = _opt(
        7 * 86400.0,
        "Seconds without a feed read after which fanout skips a user (feed rebuilt on return).",
    )
    fanout_workers: int = _opt(8, "Fanout worker tasks in this process (0: API only).")
    fanout_chunk: int = _opt(1000, "Followers per fanout job (a post's job is split in these).")
    fanout_batch: int = _opt(500, "Followers written per Redis round trip inside a job.")
    fanout_claim_idle: float = _opt(
        5.0,
        "Seconds a job may stay untouched before another worker claims it (a live "
        "worker touches its job every claim_idle/3, so only a dead worker's job waits this "
        "long).",
    )
    fanout_block: float = _opt(1.0, "Seconds a worker blocks waiting for a job per read.")
    fanout_consumer_expiry: float = _opt(
        3600.0,
        "Seconds after which an idle consumer without pending jobs (a dead worker's "
        "name) is removed from the group.",
    )
    author_cache_ttl: float = _opt(30.0, "Seconds author profiles are cached in process.")
    max_following: int = _opt(5000, "Accounts one user may follow.")
    max_post_alerts: int = _opt(1000, "Authors one user may turn post alerts on for.")
    max_alerted_followers: int = _opt(
        10_000, "Followers of one author who may turn post alerts on (read in one call per post)."
    )
    notify_queue_cap: int = _opt(
        1_000_000, "Approximate MAXLEN of notify_svc's queue stream when writing post alerts."
    )
    stream_queue: int = _opt(256, "Frames queued per StreamFeed before it is cut off as slow.")
    stream_resume_max: int = _opt(200, "Missed items replayed at most on StreamFeed resume.")
    stream_resume_window: float = _opt(
        600.0, "Seconds a StreamFeed resume token stays good (the landed log keeps this long)."
    )
    max_streams_per_user: int = _opt(
        16, "StreamFeed calls one user may have open at once on this server."
    )

    def validate(self) -> None:
        super().validate()
        if self.max_streams_per_user < 1:
            raise ConfigError("max_streams_per_user must be at least 1")
        if self.post_rate <= 0 or self.post_burst < 1:
            raise ConfigError("post_rate must be > 0 and post_burst >= 1")
        if not 10 <= self.feed_cache_size <= 100_000:
            raise ConfigError("feed_cache_size must be between 10 and 100000")
        if self.celebrity_threshold < 1:
            raise ConfigError("celebrity_threshold must be at least 1")
        if self.inactive_after <= 0:
            raise ConfigError("inactive_after must be positive")
        if self.fanout_workers < 0:
            raise ConfigError("fanout_workers must not be negative")
        if not 1 <= self.fanout_batch <= min(self.fanout_chunk, 5000):
            raise ConfigError("need 1 <= fanout_batch <= fanout_chunk and fanout_batch <= 5000")
        if self.fanout_chunk > 100_000:
            raise ConfigError("fanout_chunk must be at most 100000")
        if self.fanout_claim_idle <= 0 or self.fanout_block <= 0:
            raise ConfigError("fanout_claim_idle and fanout_block must be positive")
        if self.fanout_consumer_expiry <= self.fanout_block:
            raise ConfigError("fanout_consumer_expiry must exceed fanout_block")
        if self.max_following < 1 or self.stream_queue < 8 or self.stream_resume_max < 1:
            raise ConfigError("max_following, stream_queue and stream_resume_max are too small")
        if self.stream_resume_window < 10:
            raise ConfigError("stream_resume_window must be at least 10 seconds")
        if self.max_post_alerts < 1 or self.max_alerted_followers < 1:
            raise ConfigError("max_post_alerts and max_alerted_followers must be at least 1")
        if self.notify_queue_cap < 1000:
            raise ConfigError("notify_queue_cap must be at least 1000")
