"""Where a stream's default watch list comes from: the accounts its user follows.

Behind the small :class:`FollowingSource` protocol so the presence rules and their tests
do not depend on feed_svc. :class:`FeedFollowing` asks feed_svc's ``ListFollowing`` with
this process's service credential when a feed instance is registered; with none, or when
feed does not answer in time, a stream starts with an empty watch list (the client can
always send its own).

A feed_svc that accepts only user tokens on ``ListFollowing`` refuses the service
credential; then the stream's own access token is passed on instead (asking for the
caller's own list, ``user_id`` 0), and later calls go that way directly.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any, Protocol

import grpc

from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.errors import FeedchatError

logger = logging.getLogger(__name__)

FEED_SERVICE = "feed"


Metadata = tuple[tuple[str, str], ...]


class FollowingSource(Protocol):
    async def following(self, user_id: int, limit: int, user_credential: Metadata) -> list[int]:
        """Up to ``limit`` ids of the accounts ``user_id`` follows (may be empty).

        ``user_credential`` is the call metadata carrying the user's own access token.
        """
        ...


class NoFollowing:
    """No default watch list: every stream starts watching nobody."""

    async def following(self, user_id: int, limit: int, user_credential: Metadata) -> list[int]:
        return []


class StaticFollowing:
    """A fixed map user -> followed ids (tests, and deployments without feed_svc)."""

    def __init__(self, graph: dict[int, list[int]]) -> None:
        self.graph = graph

    async def following(self, user_id: int, limit: int, user_credential: Metadata) -> list[int]:
        return list(self.graph.get(user_id, []))[:limit]


class FeedFollowing:
    """The accounts a user follows, read from feed_svc's ListFollowing."""

    def __init__(self, directory: ServiceDirectory, timeout: float) -> None:
        self._directory = directory
        self._timeout = timeout
        self._as_user = False  # feed refused our service credential once
        self._pb: Any = None
        self._grpc: Any = None
        try:
            self._pb = importlib.import_module("feedchat.feed.v1.feed_pb2")
            self._grpc = importlib.import_module("feedchat.feed.v1.feed_pb2_grpc")
        except ImportError:
            logger.info("feed_svc stubs are not generated; default watch lists stay empty")

    async def following(self, user_id: int, limit: int, user_credential: Metadata) -> list[int]:
        if self._pb is None or not await self._directory.members(FEED_SERVICE):
            return []
        try:
            return await asyncio.wait_for(
                self._following(user_id, limit, user_credential), self._timeout)
        except (TimeoutError, grpc.aio.AioRpcError, FeedchatError) as exc:
            # A stream without its default list beats no stream: the client can watch.
            logger.warning("following list of %s unavailable: %s", user_id, exc)
            return []

    async def _following(self, user_id: int, limit: int, user_credential: Metadata) -> list[int]:
        if not self._as_user:
            try:
                return await self._pages(user_id, limit, self._directory.metadata())
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAUTHENTICATED,
                                      grpc.StatusCode.PERMISSION_DENIED):
                    raise
                logger.info("feed_svc wants user tokens on ListFollowing; passing them on")
                self._as_user = True
        return await self._pages(0, limit, user_credential)

    async def _pages(self, user_id: int, limit: int, metadata: Metadata) -> list[int]:
        stub = self._grpc.FeedServiceStub(await self._directory.channel(FEED_SERVICE))
        ids: list[int] = []
        token = ""
        while len(ids) < limit:
            reply = await stub.ListFollowing(
                self._pb.ListFollowingRequest(
                    user_id=user_id, page_size=min(1000, limit - len(ids)), page_token=token
                ),
                metadata=metadata,
            )
            ids.extend(int(uid) for uid in reply.user_ids)
            token = reply.next_page_token
            if not token:
                break
        return ids[:limit]
