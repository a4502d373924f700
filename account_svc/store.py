"""The only module of account_svc that talks to Redis: key layout, scripts, records.

Key families (hash tags in braces, so Redis Cluster keeps multi-key operations in a slot)::

    account:{u:<user_id>}:user          hash   username, display_name, bio, created_ms, password
    account:{u:<user_id>}:rt:<jti>      string refresh token state: "live:<epoch>" or "used"
    account:{u:<user_id>}:repoch        string the user's refresh epoch (bumped on token theft)
    account:uname:{<username>}          string user id owning the (lowercase) username
    account:login:user:{<username>}     string login attempts in the current window
    account:login:peer:{<host>}         string login attempts from one client address

Sign-up touches the username index and the user hash, which live in different slots (one
is found by name, the other by id, and neither can carry the other's tag). Rather than a
cross-slot transaction we claim the name first with ``SET NX PX`` (a short-lived claim),
write the user hash, then make the claim permanent only if it is still ours. A process
that dies half-way leaves at most an orphan claim that expires by itself (``signup_claim_ttl``)
and an unreachable user hash, never a name pointing at a half-written user forever.
Everything keyed by one user (profile, refresh tokens, refresh epoch) shares the
``{u:<user_id>}`` tag, so the refresh rotation script may touch all of it atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import redis.asyncio as aioredis

PUBLIC_FIELDS = ("username", "display_name", "bio", "created_ms")


def user_key(user_id: int) -> str:
    return f"account:{{u:{user_id}}}:user"


def refresh_key(user_id: int, token_id: str) -> str:
    return f"account:{{u:{user_id}}}:rt:{token_id}"


def refresh_epoch_key(user_id: int) -> str:
    return f"account:{{u:{user_id}}}:repoch"


def username_key(username: str) -> str:
    return f"account:uname:{{{username}}}"


def login_user_key(username: str) -> str:
    return f"account:login:user:{{{username}}}"


def login_peer_key(host: str) -> str:
    return f"account:login:peer:{{{host}}}"


# KEYS[1] username claim. ARGV[1] user id that should own it.
# Makes the claim permanent if it is still held by ARGV[1]; returns 1 if so, else 0.
CONFIRM_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PERSIST', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] username claim. ARGV[1] user id. Deletes the claim only if ARGV[1] holds it.
RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] user hash. ARGV: field, value, field, value, ...
# Sets the fields only if the user exists (never creates a partial user); 1 if done.
UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] new refresh token's key, KEYS[2] the user's refresh epoch. ARGV[1] TTL in ms.
# Records a live refresh token bound to the current epoch.
STORE_REFRESH = """
local epoch = redis.call('GET', KEYS[2]) or '0'
redis.call('SET', KEYS[1], 'live:' .. epoch, 'PX', ARGV[1])
return 1
"""

# KEYS[1] presented refresh token's key, KEYS[2] the user's refresh epoch,
# KEYS[3] the replacement token's key. ARGV[1] TTL of the replacement in ms.
# Returns 'ok' (presented token spent, replacement live), 'unknown' (never issued or
# expired), 'revoked' (issued before the epoch was bumped) or 'reused' (already spent:
# the token leaked, so the epoch is bumped, which revokes every outstanding token).
# The spent marker keeps the token's own TTL so reuse is recognised until it expires.
ROTATE_REFRESH = """
local state = redis.call('GET', KEYS[1])
if not state then return 'unknown' end
if state == 'used' then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  return 'reused'
end
local epoch = redis.call('GET', KEYS[2]) or '0'
if state ~= 'live:' .. epoch then return 'revoked' end
redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
redis.call('SET', KEYS[3], 'live:' .. epoch, 'PX', ARGV[1])
return 'ok'
"""

# KEYS[1] attempt counter. ARGV[1] limit, ARGV[2] window in ms.
# Fixed window: counts one attempt unless the limit is reached. Returns
# {1, ms left in window} when counted, {0, ms until the window frees} when refused.
HIT_LIMIT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('PTTL', KEYS[1])}
"""

# KEYS[1] attempt counter. Gives one attempt back (a login that succeeded or was never
# tried); the window keeps its expiry.
REFUND_LIMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
"""

RotateResult = Literal["ok", "unknown", "revoked", "reused"]


@dataclass(frozen=True)
class UserRecord:
    """A stored user. ``password_hash`` is empty when read through the public fields."""

    user_id: int
    username: str
    display_name: str
    bio: str
    created_ms: int
    password_hash: str = ""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _record(user_id: int, fields: Mapping[str, bytes | str | None]) -> UserRecord | None:
    if not fields.get("username"):
        return None
    return UserRecord(
        user_id=user_id,
        username=_text(fields.get("username")),
        display_name=_text(fields.get("display_name")),
        bio=_text(fields.get("bio")),
        created_ms=int(_text(fields.get("created_ms")) or 0),
        password_hash=_text(fields.get("password")),
    )


class AccountStore:
    """Users, username claims, refresh tokens and login counters in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._confirm = redis.register_script(CONFIRM_CLAIM)
        self._release = redis.register_script(RELEASE_CLAIM)
        self._update = redis.register_script(UPDATE_IF_EXISTS)
        self._store_refresh = redis.register_script(STORE_REFRESH)
        self._rotate = redis.register_script(ROTATE_REFRESH)
        self._hit = redis.register_script(HIT_LIMIT)
        self._refund = redis.register_script(REFUND_LIMIT)

    # --- users -------------------------------------------------------------------------

    async def claim_username(self, username: str, user_id: int, ttl_ms: int) -> bool:
        """Claim a free username for ``user_id`` for ``ttl_ms``; False if taken."""
        return bool(await self.redis.set(username_key(username), user_id, nx=True, px=ttl_ms))

    async def confirm_username(self, username: str, user_id: int) -> bool:
        """Make a claim permanent; False if it expired (and maybe went to someone else)."""
        return bool(await self._confirm(keys=[username_key(username)], args=[user_id]))

    async def release_username(self, username: str, user_id: int) -> None:
        await self._release(keys=[username_key(username)], args=[user_id])

    async def write_user(self, record: UserRecord) -> None:
        await self.redis.hset(
            user_key(record.user_id),
            mapping={
                "username": record.username,
                "display_name": record.display_name,
                "bio": record.bio,
                "created_ms": record.created_ms,
                "password": record.password_hash,
            },
        )

    async def delete_user(self, user_id: int) -> None:
        await self.redis.delete(user_key(user_id))

    async def user_id_for(self, username: str) -> int | None:
        raw = await self.redis.get(username_key(username))
        return int(raw) if raw is not None else None

    async def get_user(self, user_id: int) -> UserRecord | None:
        """The full record, password hash included."""
        raw = await self.redis.hgetall(user_key(user_id))
        return _record(user_id, {_text(k): v for k, v in raw.items()})

    async def get_users(self, user_ids: Sequence[int]) -> list[UserRecord | None]:
        """Public fields of many users in one round trip, None where unknown."""
        pipe = self.redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(user_key(user_id), list(PUBLIC_FIELDS))
        replies = await pipe.execute()
        return [
            _record(user_id, dict(zip(PUBLIC_FIELDS, reply, strict=True)))
            for user_id, reply in zip(user_ids, replies, strict=True)
        ]

    async def update_user(self, user_id: int, fields: Mapping[str, str]) -> bool:
        """Set some fields of an existing user; False if there is no such user."""
        args: list[str] = []
        for name, value in fields.items():
            args += [name, value]
        if not args:
            return await self.redis.exists(user_key(user_id)) == 1
        return bool(await self._update(keys=[user_key(user_id)], args=args))

    # --- refresh tokens ----------------------------------------------------------------

    async def store_refresh(self, user_id: int, token_id: str, ttl_ms: int) -> None:
        await self._store_refresh(
            keys=[refresh_key(user_id, token_id), refresh_epoch_key(user_id)], args=[ttl_ms]
        )

    async def rotate_refresh(
        self, user_id: int, token_id: str, new_token_id: str, ttl_ms: int
    ) -> RotateResult:
        result = await self._rotate(
            keys=[
                refresh_key(user_id, token_id),
                refresh_epoch_key(user_id),
                refresh_key(user_id, new_token_id),
            ],
            args=[ttl_ms],
        )
        return cast(RotateResult, _text(result))

    # --- login rate limits -------------------------------------------------------------

    async def hit_limit(self, key: str, limit: int, window_ms: int) -> tuple[bool, int]:
        """Count one attempt against ``key``: (counted, ms left in / until the window)."""
        allowed, left_ms = await self._hit(keys=[key], args=[limit, window_ms])
        return bool(allowed), int(left_ms)

    async def refund_limit(self, key: str) -> None:
        await self._refund(keys=[key])
