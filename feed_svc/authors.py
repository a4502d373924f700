"""Who wrote a post: the AuthorDirectory the domain depends on, and its account_svc client.

The domain only needs a batch lookup (ids -> public author info, to hydrate a page) and an
existence check (Follow of an unknown user is NOT_FOUND). Production asks account_svc's
GetUsers with this process's service credential and caches answers briefly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import grpc

from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.errors import Unavailable

logger = logging.getLogger(__name__)

GET_USERS_MAX = 500
"""account_svc's GetUsers reads at most this many ids per call."""


@dataclass(frozen=True)
class Author:
    user_id: int
    username: str = ""
    display_name: str = ""


class AuthorDirectory(Protocol):
    """Looks up authors; implementations must answer many ids in one round trip."""

    async def get_authors(self, user_ids: Collection[int]) -> dict[int, Author]:
        """The known users among ``user_ids``; unknown ids are absent."""
        ...

    async def exists(self, user_id: int) -> bool:
        """True when the user exists; raises Unavailable when that cannot be told."""
        ...


class AccountAuthors:
    """AuthorDirectory over account_svc's GetUsers, with a short in-process cache."""

    def __init__(
        self,
        directory: ServiceDirectory,
        ttl: float = 30.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._cache: dict[int, tuple[float, Author | None]] = {}

    async def _fetch(self, user_ids: list[int]) -> dict[int, Author]:
        from feedchat.account.v1 import account_pb2, account_pb2_grpc

        found: dict[int, Author] = {}
        channel = await self._directory.channel("account")
        stub = account_pb2_grpc.AccountServiceStub(channel)
        for start in range(0, len(user_ids), GET_USERS_MAX):
            batch = user_ids[start : start + GET_USERS_MAX]
            try:
                reply = await stub.GetUsers(
                    account_pb2.GetUsersRequest(user_ids=batch),
                    metadata=self._directory.metadata(),
                    timeout=2.0,
                )
            except grpc.aio.AioRpcError as exc:
                raise Unavailable(
                    "the account service is unavailable", reason="ACCOUNT_UNAVAILABLE"
                ) from exc
            for user in reply.users:
                found[user.user_id] = Author(user.user_id, user.username, user.display_name)
        return found

    async def get_authors(self, user_ids: Collection[int]) -> dict[int, Author]:
        now = self._clock()
        result: dict[int, Author] = {}
        missing: list[int] = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._cache.get(user_id)
            if cached is not None and cached[0] > now:
                if cached[1] is not None:
                    result[user_id] = cached[1]
            else:
                missing.append(user_id)
        if missing:
            fetched = await self._fetch(missing)
            if len(self._cache) + len(missing) > self._max:
                self._cache.clear()
            for user_id in missing:
                author = fetched.get(user_id)
                # Unknown ids are remembered briefly only: a user who signs up right
                # after a failed lookup can be followed a second later.
                ttl = self._ttl if author is not None else min(self._ttl, 1.0)
                self._cache[user_id] = (now + ttl, author)
                if author is not None:
                    result[user_id] = author
        return result

    async def exists(self, user_id: int) -> bool:
        return user_id in await self.get_authors([user_id])
