"""Removing a deleted account's content elsewhere: the :class:`ContentRemover` the domain
depends on, and its feed_svc client (DeleteUserContent with this process's service
credential)."""

from __future__ import annotations

from typing import Protocol

import grpc

from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.errors import Unavailable

REMOVE_TIMEOUT = 30.0
"""Seconds one removal may take (an author with many posts and followers)."""


class ContentRemover(Protocol):
    async def remove(self, user_id: int) -> None:
        """Remove the user's posts and follows; Unavailable when that cannot be done now
        (it is idempotent, so the caller retries)."""
        ...


class FeedContent:
    """ContentRemover over feed_svc's DeleteUserContent."""

    def __init__(self, directory: ServiceDirectory) -> None:
        self._directory = directory

    async def remove(self, user_id: int) -> None:
        channel = await self._directory.channel("feed")
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        try:
            await stub.DeleteUserContent(
                feed_pb2.DeleteUserContentRequest(user_id=user_id),
                metadata=self._directory.metadata(),
                timeout=REMOVE_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"the feed service could not remove the user's posts: {exc.code().name}",
                reason="FEED_UNAVAILABLE",
            ) from exc
