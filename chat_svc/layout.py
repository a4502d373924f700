"""Moving a Redis written by chat servers before the Redis Cluster layout to it.

Before, a channel's keys were tagged by the channel (``chat:chan:{c:<id>}:seq``, ``:hist``,
``:members``); now by its bucket (:mod:`chat_svc.keys`). Such a Redis was always one node
(chat refused a cluster), where a key can be renamed to any name: at start-up, before
serving, a chat server renames every old channel key to its new name, once (a marker key
says the layout is current, so later starts do not scan). Several servers starting
together are safe: RENAMENX moves each key once, and a name taken meanwhile is kept (an
old member set is then dropped: it is a copy of PostgreSQL's).
The old layout's dedup records and rate buckets are left to expire (24 h at most): a send
retried across the upgrade may be stored twice.
"""

from __future__ import annotations

import logging
import re

from redis.exceptions import RedisError, ResponseError

from chat_svc.keys import (
    LAYOUT_KEY,
    chan_history_key,
    chan_members_key,
    chan_seq_key,
    chan_stats_key,
)
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text

logger = logging.getLogger(__name__)

LAYOUT = "2"
"""The value of LAYOUT_KEY for this layout (channel keys by bucket)."""
_OLD = re.compile(r"^chat:chan:\{c:(\d+)\}:(seq|hist|members|stats:(\d+))$")
_NEW = {"seq": chan_seq_key, "hist": chan_history_key, "members": chan_members_key}


async def move_to_bucket_layout(redis: RedisClient) -> int:
    """Rename the old layout's channel keys (once per Redis); how many were moved. A Redis
    that cannot be reached is left for the next start (the server starts NOT_SERVING)."""
    try:
        return await _move(redis)
    except (ConnectionError, TimeoutError, RedisError) as exc:
        logger.warning("could not check the chat key layout (next start will): %s", exc)
        return 0


async def _move(redis: RedisClient) -> int:
    if await redis.get(LAYOUT_KEY) is not None:
        return 0
    moved = 0
    async for raw in redis.scan_iter(match="chat:chan:{c:*", count=1000):
        key = text(raw)
        found = _OLD.match(key)
        if found is None:
            continue
        try:
            channel, family = int(found[1]), found[2]
            if found[3] is not None:
                new = chan_stats_key(channel, int(found[3]))
            else:
                new = _NEW[family](channel)
            renamed = int(await redis.renamenx(key, new))
        except ResponseError:  # renamed by another server starting at the same time
            continue
        moved += renamed
        if not renamed and found[2] == "members":  # a copy of PostgreSQL's, cached anew
            await redis.delete(key)
    await redis.set(LAYOUT_KEY, LAYOUT)
    if moved:
        logger.info("moved %s chat channel keys to the bucket layout", moved)
    return moved
