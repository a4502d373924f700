"""account_svc's storage, by composition: small stores over PostgreSQL (the record) and
Redis (a cache and counters). Only these modules talk to either.

- :class:`~account_svc.store_users.UserStore`: users, credentials, profiles (PostgreSQL),
  read through :class:`~account_svc.store_cache.UserCache` (Redis).
- :class:`~account_svc.store_tokens.RefreshTokenStore`: refresh-token families
  (PostgreSQL).
- :class:`~account_svc.store_limits.LoginLimitStore`: login attempt counters (Redis).
- :class:`~account_svc.store_deletions.DeletedAccountStore`: deleted accounts, their held
  usernames and the feed removals still owed (PostgreSQL).

Redis keys are built in :mod:`account_svc.keys`, Lua lives in :mod:`account_svc.scripts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from account_svc import scripts
from account_svc.store_cache import UserCache
from account_svc.store_deletions import DeletedAccountStore
from account_svc.store_limits import LoginLimitStore
from account_svc.store_tokens import RefreshTokenStore
from account_svc.store_users import UserStore
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.postgres import Database
from feedchat_runtime.redis_client import RedisClient

USER_CACHE_TTL_MS = 3_600_000
"""An hour: bounds how long a cache refilled by a reader racing a profile update can be
stale."""


@dataclass(frozen=True)
class AccountStore:
    users: UserStore
    tokens: RefreshTokenStore
    limits: LoginLimitStore
    deletions: DeletedAccountStore

    @classmethod
    def over(cls, db: Database, redis: RedisClient) -> AccountStore:
        lua = LuaScripts(redis, scripts.SOURCES)
        cache = UserCache(redis, lua, USER_CACHE_TTL_MS)
        return cls(
            users=UserStore(db, cache),
            tokens=RefreshTokenStore(db),
            limits=LoginLimitStore(lua),
            deletions=DeletedAccountStore(db, cache),
        )
