"""The Redis cache of users' public fields in front of PostgreSQL (GetUsers, GetProfile).

Filled by readers after a miss, with a TTL; dropped by writers after PostgreSQL committed
(a reader racing a writer can refill an old value, which the TTL bounds). The cache is
best effort: when Redis fails, readers go to PostgreSQL and writers' drops are skipped
(the TTL bounds that too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.exceptions

from account_svc.keys import user_cache_key
from account_svc.models import UserRecord
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text_or

logger = logging.getLogger(__name__)

FIELDS = ("username", "display_name", "bio", "created_ms")


class UserCache:
    """Public user fields by id, in Redis hashes with a TTL."""

    def __init__(self, redis: RedisClient, scripts: LuaScripts, ttl_ms: int) -> None:
        self._redis = redis
        self._scripts = scripts
        self._ttl_ms = ttl_ms

    async def get_many(self, user_ids: Sequence[int]) -> list[UserRecord | None]:
        """The cached users, None where not cached (or when Redis fails)."""
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(user_cache_key(user_id), list(FIELDS))
        try:
            replies = await pipe.execute()
        except redis.exceptions.RedisError as exc:
            logger.warning("user cache unreadable, reading PostgreSQL: %s", exc)
            return [None] * len(user_ids)
        found: list[UserRecord | None] = []
        for user_id, reply in zip(user_ids, replies, strict=True):
            username, display_name, bio, created_ms = reply
            if username is None:
                found.append(None)
            else:
                found.append(
                    UserRecord(
                        user_id,
                        text_or(username),
                        text_or(display_name),
                        text_or(bio),
                        int(text_or(created_ms) or 0),
                    )
                )
        return found

    async def put_many(self, records: Sequence[UserRecord]) -> None:
        """Cache each record whole with the TTL (one script per key: Cluster-safe)."""

        def args(r: UserRecord) -> list[str | int]:
            values: list[str | int] = [r.username, r.display_name, r.bio, r.created_ms]
            flat: list[str | int] = [self._ttl_ms]
            for name, value in zip(FIELDS, values, strict=True):
                flat += [name, value]
            return flat

        fills = [
            self._scripts.call("fill_cache", [user_cache_key(r.user_id)], args(r)) for r in records
        ]
        for result in await asyncio.gather(*fills, return_exceptions=True):
            if isinstance(result, redis.exceptions.RedisError):
                logger.warning("user cache not filled: %s", result)
            elif isinstance(result, BaseException):
                raise result

    async def drop(self, user_id: int) -> None:
        try:
            await self._redis.delete(user_cache_key(user_id))
        except redis.exceptions.RedisError as exc:
            logger.warning("user cache entry %s not dropped: %s", user_id, exc)
