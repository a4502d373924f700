"""Typed wrapper of FeedService: posts, the follow graph, the paged feed, the live feed."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import grpc

from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat_client.backoff import Backoff
from feedchat_client.errors import (
    STATUS_LOST_TO_A_SEND,
    RpcError,
    ServiceNotFound,
    lost_to_a_send,
)
from feedchat_client.models import FanoutStatus, FeedPage, FollowPage, Post
from feedchat_client.rpc import ServiceClient

StateCallback = Callable[[str, str], None]
"""``on_state(state, detail)``: "connecting", "live", "reconnecting" — for progress output."""

FATAL_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
)


class FeedClient(ServiceClient):
    service = "feed"

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        return feed_pb2_grpc.FeedServiceStub(channel)

    async def post(self, text: str, request_id: str = "") -> Post:
        """Publish a post (RpcError RESOURCE_EXHAUSTED with ``retry_after`` when limited).

        Every call carries a request id (a fresh one unless ``request_id`` is given), so
        the retry on another instance after UNAVAILABLE never stores the post twice; to
        retry a call whose outcome you did not learn, call again with the same id."""
        reply = await self._call(
            "CreatePost",
            feed_pb2.CreatePostRequest(text=text, request_id=request_id or uuid.uuid4().hex),
        )
        return Post.from_pb(reply.post)

    async def delete_post(self, post_id: int) -> None:
        await self._call("DeletePost", feed_pb2.DeletePostRequest(post_id=post_id))

    async def get_post(self, post_id: int) -> Post:
        reply = await self._call("GetPost", feed_pb2.GetPostRequest(post_id=post_id))
        return Post.from_pb(reply.post)

    async def follow(self, user_id: int) -> bool:
        """Follow a user; True when this changed anything."""
        reply = await self._call("Follow", feed_pb2.FollowRequest(user_id=user_id))
        return bool(reply.changed)

    async def unfollow(self, user_id: int) -> bool:
        reply = await self._call("Unfollow", feed_pb2.UnfollowRequest(user_id=user_id))
        return bool(reply.changed)

    async def followers(
        self, user_id: int = 0, page_size: int = 0, page_token: str = ""
    ) -> FollowPage:
        reply = await self._call(
            "ListFollowers",
            feed_pb2.ListFollowersRequest(
                user_id=user_id, page_size=page_size, page_token=page_token
            ),
        )
        return FollowPage(list(reply.user_ids), reply.next_page_token, reply.total_count)

    async def following(
        self, user_id: int = 0, page_size: int = 0, page_token: str = ""
    ) -> FollowPage:
        reply = await self._call(
            "ListFollowing",
            feed_pb2.ListFollowingRequest(
                user_id=user_id, page_size=page_size, page_token=page_token
            ),
        )
        return FollowPage(list(reply.user_ids), reply.next_page_token, reply.total_count)

    async def user_posts(
        self, user_id: int = 0, page_size: int = 0, page_token: str = ""
    ) -> FeedPage:
        reply = await self._call(
            "ListUserPosts",
            feed_pb2.ListUserPostsRequest(
                user_id=user_id, page_size=page_size, page_token=page_token
            ),
        )
        return FeedPage([Post.from_pb(p) for p in reply.posts], reply.next_page_token)

    async def page(self, page_size: int = 0, page_token: str = "") -> FeedPage:
        """One page of the caller's home feed, newest first."""
        reply = await self._call(
            "GetFeed", feed_pb2.GetFeedRequest(page_size=page_size, page_token=page_token)
        )
        return FeedPage([Post.from_pb(p) for p in reply.posts], reply.next_page_token)

    async def iterate(
        self, page_size: int = 20, page_token: str = "", limit: int | None = None
    ) -> AsyncIterator[Post]:
        """Every post of the home feed, newest first, fetched page by page."""
        seen = 0
        while True:
            page = await self.page(page_size, page_token)
            for post in page.posts:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield post
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def fanout_status(self, post_id: int) -> FanoutStatus:
        reply = await self._call(
            "GetFanoutStatus", feed_pb2.GetFanoutStatusRequest(post_id=post_id)
        )
        return FanoutStatus(
            feed_pb2.FanoutState.Name(reply.state).removeprefix("FANOUT_STATE_").lower(),
            reply.followers_total,
            reply.followers_done,
            reply.followers_pending,
            reply.lag_ms,
            reply.queue_pending_jobs,
        )

    async def live(
        self,
        resume_after_post_id: int = 0,
        *,
        backoff: Backoff | None = None,
        on_state: StateCallback | None = None,
        on_removed: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[Post, None]:
        """New feed items as they land, forever; reconnects (backoff + jitter) after a
        drop or a server shutdown, resuming after the newest post it yielded with the last
        resume token received (items land out of id order: the token makes the server
        also replay older posts that landed meanwhile), and never yields a post twice.
        ``on_removed(post_id)`` is called when a followed author's post is deleted while
        the stream is open (drop it from what is shown)."""
        backoff = backoff or Backoff()
        last = resume_after_post_id
        token = ""
        seen: OrderedDict[int, None] = OrderedDict()
        notify = on_state or (lambda state, detail: None)
        while True:
            # None ends the request stream: a call that ended by itself never stops its
            # request reader, so the reader must not be left waiting on the queue.
            outbox: asyncio.Queue[feed_pb2.StreamFeedRequest | None] = asyncio.Queue()
            outbox.put_nowait(
                feed_pb2.StreamFeedRequest(
                    subscribe=feed_pb2.StreamFeedRequest.Subscribe(
                        resume_after_post_id=last, resume_token=token
                    )
                )
            )

            async def requests(queue: asyncio.Queue[Any] = outbox) -> AsyncIterator[Any]:
                while (request := await queue.get()) is not None:
                    yield request

            try:
                address = await self._transport.address(self.service)
                metadata = await self._session.metadata()
            except (ServiceNotFound, RpcError) as lookup:  # between instances; account down
                if isinstance(lookup, RpcError) and lookup.code == grpc.StatusCode.UNAUTHENTICATED:
                    raise
                delay = backoff.next_delay()
                notify("reconnecting", f"{lookup}; retrying in {delay:.1f}s")
                await asyncio.sleep(delay)
                continue
            notify("connecting", address)
            stub = self._stub(self._transport.channel_to(address))
            call = stub.StreamFeed(requests(), metadata=metadata)
            reason = "stream ended"
            try:
                async for frame in call:
                    if frame.resume_token:  # good once this frame is handled
                        token = frame.resume_token
                    which = frame.WhichOneof("frame")
                    if which == "subscribed":
                        backoff.reset()
                        notify("live", f"{frame.subscribed.resumed_count} missed item(s)")
                    elif which == "item":
                        post = Post.from_pb(frame.item)
                        if post.post_id in seen:
                            continue
                        seen[post.post_id] = None
                        if len(seen) > 10_000:
                            seen.popitem(last=False)
                        last = max(last, post.post_id)
                        outbox.put_nowait(
                            feed_pb2.StreamFeedRequest(
                                ack=feed_pb2.StreamFeedRequest.Ack(post_id=last)
                            )
                        )
                        yield post
                    elif which == "removed" and on_removed is not None:
                        on_removed(frame.removed.post_id)
            except grpc.aio.AioRpcError as exc:
                if lost_to_a_send(exc):  # an ack crossed the stream's end: reconnect
                    reason = STATUS_LOST_TO_A_SEND
                else:
                    error = await RpcError.from_call(exc)
                    if error.code in FATAL_CODES:
                        raise error from None
                    if error.code == grpc.StatusCode.UNAUTHENTICATED:
                        if error.reason != "TOKEN_EXPIRED":
                            raise error from None
                        await self._session.refresh()
                    reason = str(error)
            finally:
                outbox.put_nowait(None)
                call.cancel()
            delay = backoff.next_delay()
            notify("reconnecting", f"{reason}; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)
