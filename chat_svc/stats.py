"""Message statistics: counts per minute, hour or day of a channel, or of all the caller's
channels, read from the per-bucket counters the send script keeps
(:mod:`chat_svc.store_stats`), never from the history.

Ranges are UTC-bucket aligned (the start rounded down, the end rounded up), hold at most
``MAX_BUCKETS`` buckets, and may not start before the retention window (``stats_days``):
older counters have expired, and a zero there would be a wrong answer rather than a
count.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat_svc.store_channels import ChannelRecords
from chat_svc.store_stats import BUCKET_MS, DAY_MS, StatsStore
from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import FailedPrecondition, InvalidArgument, PermissionDenied

MAX_BUCKETS = 1440
"""Most buckets in one answer (a day of minutes, 60 days of hours)."""
DEFAULT_BUCKETS = 60
"""Buckets before the end when the request names no start."""
MAX_CHANNELS = 1000
"""Most channels the all-channels variant sums (each costs a read per day of range)."""


@dataclass(frozen=True)
class StatsRange:
    """A checked range: ``starts`` of each bucket, in order."""

    bucket: str
    starts: list[int]


@dataclass(frozen=True)
class Stats:
    bucket: str
    starts: list[int]
    counts: list[int]


def bucket_range(bucket: str, start_ms: int, end_ms: int, now_ms: int, days: int) -> StatsRange:
    """The buckets of [start_ms, end_ms) (0s filled in), or INVALID_ARGUMENT saying why."""
    if bucket not in BUCKET_MS:
        raise InvalidArgument.field("bucket", "must be minute, hour or day", reason="BAD_BUCKET")
    size = BUCKET_MS[bucket]
    if start_ms < 0 or end_ms < 0:
        raise InvalidArgument.field("start_ms", "times must not be negative", reason="BAD_RANGE")
    end = end_ms or now_ms
    end = -(-end // size) * size  # rounded up to a bucket boundary
    start = (start_ms or end - DEFAULT_BUCKETS * size) // size * size
    if start >= end:
        raise InvalidArgument.field(
            "end_ms", "must be after start_ms (the range is [start_ms, end_ms))", reason="BAD_RANGE"
        )
    buckets = (end - start) // size
    if buckets > MAX_BUCKETS:
        raise InvalidArgument.field(
            "end_ms",
            f"the range holds {buckets} {bucket} buckets; at most {MAX_BUCKETS} per call "
            f"({MAX_BUCKETS * size // 3_600_000} hours of {bucket}s): narrow it or use a "
            "larger bucket",
            reason="TOO_MANY_BUCKETS",
        )
    oldest = (now_ms // DAY_MS - days + 1) * DAY_MS
    if start < oldest:
        raise InvalidArgument.field(
            "start_ms",
            f"counts are kept {days} days: the range may not start before {oldest} "
            "(ms since the epoch, UTC midnight)",
            reason="BEFORE_RETENTION",
        )
    return StatsRange(bucket, list(range(start, end, size)))


class MessageStats:
    """GetMessageStats: members only; channel 0 sums the caller's channels."""

    def __init__(self, store: StatsStore, records: ChannelRecords, days: int) -> None:
        self._store = store
        self._records = records
        self._days = days

    async def counts(
        self, caller: int, channel_id: int, bucket: str, start_ms: int, end_ms: int
    ) -> Stats:
        span = bucket_range(bucket, start_ms, end_ms, wall_ms(), self._days)
        if channel_id:
            if not await self._records.is_member(channel_id, caller):
                raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
            channels = [channel_id]
        else:
            channels = await self._records.user_channel_ids(caller, None, MAX_CHANNELS + 1)
            if len(channels) > MAX_CHANNELS:
                raise FailedPrecondition(
                    f"the caller belongs to more than {MAX_CHANNELS} channels; ask per channel",
                    reason="TOO_MANY_CHANNELS",
                    metadata={"max_channels": str(MAX_CHANNELS)},
                )
        counts = await self._store.counts(channels, span.bucket, span.starts)
        return Stats(span.bucket, span.starts, counts)
