"""Attempt counters in Redis (fixed windows): logins per username and per client address,
sign-ups per client address."""

from __future__ import annotations

from typing import Literal

import redis.exceptions

from account_svc.keys import login_peer_key, login_user_key, signup_peer_key
from account_svc.scripts import HIT_LIMIT, REFUND_LIMIT
from feedchat_runtime.redis_client import RedisClient

Scope = Literal["user", "peer", "signup_peer"]
_KEYS = {"user": login_user_key, "peer": login_peer_key, "signup_peer": signup_peer_key}


def _key(scope: Scope, subject: str) -> str:
    return _KEYS[scope](subject)


class LoginLimitStore:
    """Counts attempts per (scope, subject) in a fixed window."""

    def __init__(self, redis: RedisClient) -> None:
        self._hit = redis.register_script(HIT_LIMIT)
        self._refund = redis.register_script(REFUND_LIMIT)

    async def hit(self, scope: Scope, subject: str, limit: int, window_ms: int) -> tuple[bool, int]:
        """Count one attempt: (counted, ms left in the window / until it frees)."""
        allowed, left_ms = await self._hit(keys=[_key(scope, subject)], args=[limit, window_ms])
        return bool(allowed), int(left_ms)

    async def hit_if_reachable(
        self, scope: Scope, subject: str, limit: int, window_ms: int
    ) -> tuple[bool, int] | None:
        """Like :meth:`hit`, but None (nothing counted) when Redis cannot be reached."""
        try:
            return await self.hit(scope, subject, limit, window_ms)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return None

    async def refund(self, scope: Scope, subject: str) -> None:
        """Give one attempt back (it succeeded, or was refused before it was tried)."""
        await self._refund(keys=[_key(scope, subject)])
