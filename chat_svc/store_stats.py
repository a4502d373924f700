"""Message counts per channel and time bucket in Redis (read side; the send script writes).

Key family (in the channel's hash slot, next to its seq counter; built by
:func:`chat_svc.keys.chan_stats_key`):

- ``chat:chan:{cb:<b>}:<id>:stats:<day>``  hash of the channel's message counts on UTC day
  ``<day>`` (days since the Unix epoch) of each message id's Snowflake time: ``d`` the
  day's count, ``h<0..23>`` per hour, ``m<0..1439>`` per minute of the day. The send
  script (``chat_svc.scripts.SEND_MANY``) increments them in the same atomic step that
  assigns the message's seq, so every stored message counts exactly once (a retried
  client_msg_id is a duplicate and counts nothing). Each key expires ``stats_days`` after
  its last write, which bounds memory: at most 1,465 fields per channel and active day.

Reading one bucket range costs one HMGET per channel and day in the range, whatever the
number of messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chat_svc.keys import chan_stats_key
from feedchat_runtime.redis_client import RedisClient

DAY_MS = 86_400_000
BUCKET_MS = {"minute": 60_000, "hour": 3_600_000, "day": DAY_MS}
_FIELD_PREFIX = {"minute": "m", "hour": "h", "day": "d"}


def day_of(ms: int) -> int:
    return ms // DAY_MS


def bucket_field(bucket: str, start_ms: int) -> str:
    """The hash field holding the count of the ``bucket`` starting at ``start_ms``."""
    if bucket == "day":
        return "d"
    of_day = start_ms % DAY_MS
    return f"{_FIELD_PREFIX[bucket]}{of_day // BUCKET_MS[bucket]}"


class StatsStore:
    """Reads of the per-bucket message counters."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def counts(
        self, channel_ids: Sequence[int], bucket: str, starts: Sequence[int]
    ) -> list[int]:
        """The summed count over ``channel_ids`` of each ``bucket`` starting at ``starts``
        (bucket-aligned ms), in order: one HMGET per channel and day, pipelined."""
        by_day: dict[int, list[int]] = {}
        for i, start in enumerate(starts):
            by_day.setdefault(day_of(start), []).append(i)
        pipe: Any = self.redis.pipeline(transaction=False)
        plan: list[list[int]] = []
        for channel_id in channel_ids:
            for day, indexes in by_day.items():
                pipe.hmget(
                    chan_stats_key(channel_id, day),
                    [bucket_field(bucket, starts[i]) for i in indexes],
                )
                plan.append(indexes)
        totals = [0] * len(starts)
        if not plan:
            return totals
        for indexes, values in zip(plan, await pipe.execute(), strict=True):
            for i, value in zip(indexes, values, strict=True):
                if value is not None:
                    totals[i] += int(value)
        return totals
