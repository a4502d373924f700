"""Where a stream's default watch list comes from: the accounts its user follows.

Behind the small :class:`FollowingSource` protocol so the presence rules and their tests
do not depend on feed_svc. :class:`FeedFollowing` asks feed_svc's ``ListFollowing`` with
this process's service credential when a feed instance is registered; with none, or when
feed does not answer in time, a stream starts with an empty watch list (the client can
always send its own).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import grpc

from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.errors import FeedchatError

logger = logging.getLogger(__name__)

FEED_SERVICE = "feed"


class FollowingSource(Protocol):
    async def following(self, user_id: int, limit: int) -> list[int]:
        """Up to ``limit`` ids of the accounts ``user_id`` follows (may be empty)."""
        ...


class NoFollowing:
    """No default watch list: every stream starts watching nobody."""

    async def following(self, user_id: int, limit: int) -> list[int]:
        return []


class StaticFollowing:
    """A fixed map user -> followed ids (tests, and deployments without feed_svc)."""

    def __init__(self, graph: dict[int, list[int]]) -> None:
        self.graph = graph

    async def following(self, user_id: int, limit: int) -> list[int]:
        return list(self.graph.get(user_id, []))[:limit]


class FeedFollowing:
    """The accounts a user follows, read from feed_svc's ListFollowing."""

    def __init__(self, directory: ServiceDirectory, timeout: float) -> None:
        self._directory = directory
        self._timeout = timeout

    async def following(self, user_id: int, limit: int) -> list[int]:
        if not await self._directory.members(FEED_SERVICE):
            return []
        try:
            return await asyncio.wait_for(self._pages(user_id, limit), self._timeout)
        except (TimeoutError, grpc.aio.AioRpcError, FeedchatError) as exc:
            # A stream without its default list beats no stream: the client can watch.
            logger.warning("following list of %s unavailable: %s", user_id, exc)
            return []

    async def _pages(self, user_id: int, limit: int) -> list[int]:
        stub = feed_pb2_grpc.FeedServiceStub(await self._directory.channel(FEED_SERVICE))
        ids: list[int] = []
        token = ""
        while len(ids) < limit:
            reply = await stub.ListFollowing(
                feed_pb2.ListFollowingRequest(
                    user_id=user_id, page_size=min(1000, limit - len(ids)), page_token=token
                ),
                metadata=self._directory.metadata(),
            )
            ids.extend(int(uid) for uid in reply.user_ids)
            token = reply.next_page_token
            if not token:
                break
        return ids[:limit]
