"""Attempt counters in Redis (fixed windows): logins per username and per client address,
sign-ups per client address."""

from __future__ import annotations

from typing import Literal

import redis.exceptions

from account_svc.keys import login_peer_key, login_user_key, signup_peer_key
from feedchat_runtime.lua import LuaScripts

Scope = Literal["user", "peer", "signup_peer"]
_KEYS = {"user": login_user_key, "peer": login_peer_key, "signup_peer": signup_peer_key}


def _key(scope: Scope, subject: str) -> str:
    return _KEYS[scope](subject)


class LoginLimitStore:
    """Counts attempts per (scope, subject) in a fixed window."""

    def __init__(self, scripts: LuaScripts) -> None:
        self._scripts = scripts

    async def hit(self, scope: Scope, subject: str, limit: int, window_ms: int) -> tuple[bool, int]:
        """Count one attempt: (counted, ms left in the window / until it frees)."""
        allowed, left_ms = await self._scripts.call(
            "hit_limit", [_key(scope, subject)], [limit, window_ms]
        )
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
        await self._scripts.call("refund_limit", [_key(scope, subject)])
