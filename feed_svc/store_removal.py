"""What removing a deleted account reads and marks in Redis: the account's removed mark,
and its posts and follow edges in batches (the removal deletes each batch before reading
the next)."""

from __future__ import annotations

from typing import Any

from feed_svc import keys
from feedchat_runtime.redis_client import RedisClient


class RemovalStore:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def mark(self, user: int) -> None:
        """Mark the account removed (kept for good: the id is never reused)."""
        await self.redis.set(keys.removed_key(user), 1)

    async def is_removed(self, user: int) -> bool:
        return bool(await self.redis.exists(keys.removed_key(user)))

    async def _first(self, key: str, n: int) -> list[int]:
        members: Any = await self.redis.zrange(key, 0, n - 1)
        return [int(m) for m in members]

    async def post_ids(self, user: int, n: int) -> list[int]:
        """Up to ``n`` ids of the user's posts still stored (oldest first)."""
        return await self._first(keys.user_posts_key(user), n)

    async def followers(self, user: int, n: int) -> list[int]:
        """Up to ``n`` users still following ``user``."""
        return await self._first(keys.followers_key(user), n)

    async def following(self, user: int, n: int) -> list[int]:
        """Up to ``n`` users ``user`` still follows."""
        return await self._first(keys.following_key(user), n)
