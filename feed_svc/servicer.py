"""FeedService over gRPC: protobuf in, domain calls, protobuf out. The caller comes only
from the authenticated credential (``require_user`` / the service caller)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from feed_svc.feed import FanoutStatus, Feed, Page, PostView
from feed_svc.live import LiveHub
from feed_svc.stream import (
    Checkpoint,
    FeedStream,
    Frame,
    Refreshed,
    Removed,
    Subscribed,
    second_subscribe,
)
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat.feed.v1 import feed_pb2_grpc
from feedchat_runtime.auth import current_caller, require_user
from feedchat_runtime.clock import timestamp
from feedchat_runtime.errors import FeedchatError, InvalidArgument
from feedchat_runtime.request_reader import RequestReader

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeedService"].full_name
SERVICE_ONLY = frozenset({f"/{SERVICE_NAME}/DeleteUserContent"})


def post_pb(view: PostView) -> pb.Post:
    return pb.Post(
        post_id=view.post_id,
        author=pb.Author(
            user_id=view.author.user_id,
            username=view.author.username,
            display_name=view.author.display_name,
        ),
        text=view.text,
        created_at=timestamp(view.created_ms),
    )


def _posts(page: Page) -> list[pb.Post]:
    return [post_pb(p) for p in page.posts]


def _status_pb(status: FanoutStatus) -> pb.GetFanoutStatusResponse:
    return pb.GetFanoutStatusResponse(
        state=pb.FanoutState.Value(f"FANOUT_STATE_{status.state}"),
        followers_total=status.total,
        followers_done=status.done,
        followers_pending=status.pending,
        followers_skipped_inactive=status.skipped,
        lag_ms=status.lag_ms,
        queue_pending_jobs=status.queue_pending,
        queue_waiting_jobs=status.queue_waiting,
        queue_oldest_pending_ms=status.queue_oldest_ms,
    )


def _user_or_service() -> int:
    """The calling user, or 0 for a feedchat service (no user of its own)."""
    caller = current_caller()
    if caller is not None and caller.is_service:
        return 0
    return require_user()


class FeedServicer(feed_pb2_grpc.FeedServiceServicer):
    def __init__(self, feed: Feed, hub: LiveHub, draining: asyncio.Event) -> None:
        self.feed = feed
        self.hub = hub
        self.draining = draining

    async def CreatePost(
        self, request: pb.CreatePostRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePostResponse:
        view = await self.feed.create_post(require_user(), request.text, request.request_id)
        return pb.CreatePostResponse(post=post_pb(view))

    async def DeletePost(
        self, request: pb.DeletePostRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePostResponse:
        await self.feed.delete_post(require_user(), request.post_id)
        return pb.DeletePostResponse()

    async def GetPost(
        self, request: pb.GetPostRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPostResponse:
        require_user()
        return pb.GetPostResponse(post=post_pb(await self.feed.get_post(request.post_id)))

    async def ListUserPosts(
        self, request: pb.ListUserPostsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUserPostsResponse:
        page = await self.feed.list_user_posts(
            require_user(), request.user_id, request.page_size, request.page_token
        )
        return pb.ListUserPostsResponse(posts=_posts(page), next_page_token=page.next_token)

    async def Follow(
        self, request: pb.FollowRequest, context: grpc.aio.ServicerContext
    ) -> pb.FollowResponse:
        return pb.FollowResponse(changed=await self.feed.follow(require_user(), request.user_id))

    async def Unfollow(
        self, request: pb.UnfollowRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnfollowResponse:
        changed = await self.feed.unfollow(require_user(), request.user_id)
        return pb.UnfollowResponse(changed=changed)

    async def SetPostAlerts(
        self, request: pb.SetPostAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPostAlertsResponse:
        await self.feed.set_post_alerts(require_user(), request.author_id, request.enabled)
        return pb.SetPostAlertsResponse()

    async def ListPostAlerts(
        self, request: pb.ListPostAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPostAlertsResponse:
        authors = await self.feed.list_post_alerts(require_user())
        return pb.ListPostAlertsResponse(author_ids=authors)

    async def ListFollowers(
        self, request: pb.ListFollowersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFollowersResponse:
        page = await self.feed.list_graph(
            _user_or_service(), request.user_id, True, request.page_size, request.page_token
        )
        return pb.ListFollowersResponse(
            user_ids=page.user_ids, next_page_token=page.next_token, total_count=page.total
        )

    async def ListFollowing(
        self, request: pb.ListFollowingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFollowingResponse:
        page = await self.feed.list_graph(
            _user_or_service(), request.user_id, False, request.page_size, request.page_token
        )
        return pb.ListFollowingResponse(
            user_ids=page.user_ids, next_page_token=page.next_token, total_count=page.total
        )

    async def GetFeed(
        self, request: pb.GetFeedRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFeedResponse:
        page = await self.feed.get_feed(require_user(), request.page_size, request.page_token)
        return pb.GetFeedResponse(posts=_posts(page), next_page_token=page.next_token)

    async def GetFanoutStatus(
        self, request: pb.GetFanoutStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFanoutStatusResponse:
        reader = _user_or_service()  # 0: a service, which may read any post's fanout
        return _status_pb(await self.feed.fanout_status(reader or None, request.post_id))

    async def DeleteUserContent(
        self, request: pb.DeleteUserContentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteUserContentResponse:
        removed = await self.feed.removal.remove(request.user_id)
        return pb.DeleteUserContentResponse(
            posts_deleted=removed.posts, followers_removed=removed.followers
        )

    async def StreamFeed(
        self,
        request_iterator: AsyncIterator[pb.StreamFeedRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.StreamFeedResponse]:
        user = require_user()
        # Headers at once: a client knows its stream is accepted before any item exists.
        await context.send_initial_metadata(())
        requests = aiter(request_iterator)
        first_frame = asyncio.ensure_future(anext(requests, None))
        drained = asyncio.ensure_future(self.draining.wait())
        await asyncio.wait({first_frame, drained}, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        if not first_frame.done():  # the server drains before the client subscribed
            # Not cancelled: cancelling a pending read would cancel the whole RPC; it
            # ends with the call.
            first_frame.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        first = first_frame.result()
        if first is None or first.WhichOneof("frame") != "subscribe":
            raise InvalidArgument.field(
                "subscribe", "the first frame must be a subscribe", reason="SUBSCRIBE_FIRST"
            )
        config = self.feed.config
        session = FeedStream(
            self.feed,
            self.hub,
            user,
            self.draining,
            config.stream_queue,
            config.stream_resume_max,
            touch_every=min(60.0, config.inactive_after / 4),
        )
        reader = RequestReader(requests)
        reader.start(lambda frames: self._pump(frames, session))
        try:
            await session.open(first.subscribe.resume_after_post_id, first.subscribe.resume_token)
            while True:
                frames = await session.next_frames()
                if frames is None:
                    return
                for frame, token in frames:
                    reply = self._frame_pb(frame)
                    reply.resume_token = token
                    yield reply
        finally:
            await reader.stop()
            await session.close()

    @staticmethod
    def _frame_pb(frame: Frame) -> pb.StreamFeedResponse:
        if isinstance(frame, Checkpoint):
            return pb.StreamFeedResponse(checkpoint=pb.StreamFeedResponse.Checkpoint())
        if isinstance(frame, Subscribed):
            return pb.StreamFeedResponse(
                subscribed=pb.StreamFeedResponse.Subscribed(
                    resumed_count=frame.resumed, resume_truncated=frame.truncated
                )
            )
        if isinstance(frame, Removed):
            return pb.StreamFeedResponse(
                removed=pb.StreamFeedResponse.Removed(
                    post_id=frame.post_id, author_id=frame.author_id
                )
            )
        if isinstance(frame, Refreshed):
            return pb.StreamFeedResponse(
                refreshed=pb.StreamFeedResponse.Refreshed(
                    posts=_posts(frame.page), next_page_token=frame.page.next_token
                )
            )
        return pb.StreamFeedResponse(item=post_pb(frame))

    @staticmethod
    async def _pump(requests: AsyncIterator[pb.StreamFeedRequest], session: FeedStream) -> None:
        """Client frames after the subscribe: acks and refreshes."""
        try:
            async for request in requests:
                kind = request.WhichOneof("frame")
                if kind == "ack":
                    await session.ack(request.ack.post_id)
                elif kind == "refresh":
                    await session.refresh(request.refresh.page_size)
                elif kind == "subscribe":
                    raise second_subscribe()
        except FeedchatError as exc:
            session.fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-read
            logger.debug("stream request reader ended", exc_info=True)
