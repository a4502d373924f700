"""ChatService: protobuf in, chat domain calls, protobuf out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from chat_svc.convert import DraftPb, channel_pb, draft_from_pb, frames_pb, message_pb, send_ack_pb
from chat_svc.groups import Channels
from chat_svc.model import Draft, SendAck
from chat_svc.polling import UnaryChat
from chat_svc.sessions import MAX_SEND_BATCH, Session, Sessions
from chat_svc.stats import MessageStats
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_runtime.auth import require_user
from feedchat_runtime.errors import FeedchatError, InvalidArgument, PermissionDenied
from feedchat_runtime.pages import PageTokens
from feedchat_runtime.request_reader import RequestReader

logger = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
LIST_CHANNELS, GET_HISTORY = "chat.ListChannels", "chat.GetHistory"  # page token listings
BUCKETS = {
    chat_pb2.STATS_BUCKET_MINUTE: "minute",
    chat_pb2.STATS_BUCKET_HOUR: "hour",
    chat_pb2.STATS_BUCKET_DAY: "day",
}
BUCKET_PB = {name: value for value, name in BUCKETS.items()}
SEND_FRAMES = frozenset({"send", "edit", "delete", "react", "unreact"})
"""Client frames stored like a send (a message or a channel event), answered by
send_ack or send_error."""


def _drafts(batch: chat_pb2.SendBatch) -> list[Draft]:
    if not 0 < len(batch.sends) <= MAX_SEND_BATCH:
        raise InvalidArgument.field(
            "send_batch.sends", f"must hold 1..{MAX_SEND_BATCH} sends", reason="SEND_BATCH_SIZE"
        )
    return [draft_from_pb(send) for send in batch.sends]


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(
        self,
        sessions: Sessions,
        channels: Channels,
        tokens: PageTokens,
        unary: UnaryChat,
        stats: MessageStats,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._tokens = tokens
        self._unary = unary
        self._stats = stats

    async def Connect(
        self, request_iterator: AsyncIterator[chat_pb2.ConnectRequest], context: Context
    ) -> AsyncIterator[chat_pb2.ConnectResponse]:
        user_id = require_user()
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("frame") != "hello":
            raise InvalidArgument.field("hello", "the first frame must be hello")
        hello = first.hello
        session = await self._sessions.open(
            user_id,
            hello.device_id,
            hello.inbox_cursor,
            hello.ring_version,
            hello.batch_frames,
            hello.omit_own_echo,
        )
        reader = RequestReader(requests)
        reader.start(lambda frames: self._read(frames, session))
        try:
            async for frames in session.frames():
                yield frames_pb(frames)
            if session.error is not None:
                raise session.error
        finally:
            await reader.stop()
            session.close()

    async def _read(
        self, requests: AsyncIterator[chat_pb2.ConnectRequest], session: Session
    ) -> None:
        try:
            async for request in requests:
                which = request.WhichOneof("frame")
                try:
                    if which in SEND_FRAMES:
                        await session.send(draft_from_pb(getattr(request, which)))
                    elif which == "send_batch":
                        await session.send_many(_drafts(request.send_batch))
                    elif which == "ack":
                        await session.ack(request.ack.inbox_cursor)
                    elif which == "read":
                        await session.read(request.read.channel_id, request.read.seq)
                    elif which == "typing":
                        await session.typing(request.typing.channel_id)
                    elif which == "hello":
                        raise InvalidArgument.field("hello", "only the first frame may be hello")
                    else:
                        raise InvalidArgument.field("frame", "no frame was set")
                except PermissionDenied as exc:
                    logger.debug("ignored %s frame: %s", which, exc.message)
        except FeedchatError as exc:
            session.stream.close(exc)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            raise
        except Exception:
            logger.exception("reading client frames failed")
            session.stream.close(FeedchatError("internal error"))

    async def OpenDirectChannel(
        self, request: chat_pb2.OpenDirectChannelRequest, context: Context
    ) -> chat_pb2.OpenDirectChannelResponse:
        info = await self._channels.open_direct(require_user(), request.peer_user_id)
        return chat_pb2.OpenDirectChannelResponse(channel=channel_pb(info))

    async def CreateGroup(
        self, request: chat_pb2.CreateGroupRequest, context: Context
    ) -> chat_pb2.CreateGroupResponse:
        info = await self._channels.create_group(
            require_user(), request.name, list(request.member_ids)
        )
        return chat_pb2.CreateGroupResponse(channel=channel_pb(info))

    async def AddMembers(
        self, request: chat_pb2.AddMembersRequest, context: Context
    ) -> chat_pb2.AddMembersResponse:
        info = await self._channels.add_members(
            require_user(), request.channel_id, list(request.user_ids)
        )
        return chat_pb2.AddMembersResponse(channel=channel_pb(info))

    async def RemoveMembers(
        self, request: chat_pb2.RemoveMembersRequest, context: Context
    ) -> chat_pb2.RemoveMembersResponse:
        info = await self._channels.remove_members(
            require_user(), request.channel_id, list(request.user_ids)
        )
        return chat_pb2.RemoveMembersResponse(channel=channel_pb(info))

    async def ListChannels(
        self, request: chat_pb2.ListChannelsRequest, context: Context
    ) -> chat_pb2.ListChannelsResponse:
        caller = require_user()
        after = self._tokens.check(request.page_token, LIST_CHANNELS, caller)
        infos, next_after = await self._channels.list_channels(caller, request.page_size, after)
        token = "" if next_after is None else self._tokens.issue(LIST_CHANNELS, caller, next_after)
        return chat_pb2.ListChannelsResponse(
            channels=[channel_pb(i) for i in infos], next_page_token=token
        )

    async def GetHistory(
        self, request: chat_pb2.GetHistoryRequest, context: Context
    ) -> chat_pb2.GetHistoryResponse:
        caller, channel = require_user(), request.channel_id
        before = self._tokens.check(request.page_token, GET_HISTORY, caller, scope=channel)
        messages, next_before = await self._channels.history(
            caller, channel, request.page_size, before
        )
        token = (
            ""
            if next_before is None
            else self._tokens.issue(GET_HISTORY, caller, next_before, scope=channel)
        )
        return chat_pb2.GetHistoryResponse(
            messages=[message_pb(m) for m in messages], next_page_token=token
        )

    async def _store(self, request: DraftPb) -> chat_pb2.SendAck:
        """Store a send or a channel event (the stream's path); its ack."""
        outcome = await self._unary.send(require_user(), draft_from_pb(request))
        return send_ack_pb(SendAck.of(request.client_msg_id, outcome))

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: Context
    ) -> chat_pb2.SendMessageResponse:
        return chat_pb2.SendMessageResponse(ack=await self._store(request))

    async def EditMessage(
        self, request: chat_pb2.EditMessageRequest, context: Context
    ) -> chat_pb2.EditMessageResponse:
        return chat_pb2.EditMessageResponse(ack=await self._store(request))

    async def DeleteMessage(
        self, request: chat_pb2.DeleteMessageRequest, context: Context
    ) -> chat_pb2.DeleteMessageResponse:
        return chat_pb2.DeleteMessageResponse(ack=await self._store(request))

    async def AddReaction(
        self, request: chat_pb2.AddReactionRequest, context: Context
    ) -> chat_pb2.AddReactionResponse:
        return chat_pb2.AddReactionResponse(ack=await self._store(request))

    async def RemoveReaction(
        self, request: chat_pb2.RemoveReactionRequest, context: Context
    ) -> chat_pb2.RemoveReactionResponse:
        return chat_pb2.RemoveReactionResponse(ack=await self._store(request))

    async def PollInbox(
        self, request: chat_pb2.PollInboxRequest, context: Context
    ) -> chat_pb2.PollInboxResponse:
        wait = request.wait.ToTimedelta().total_seconds() if request.HasField("wait") else None
        page = await self._unary.poll(
            require_user(),
            request.device_id,
            request.inbox_cursor,
            wait,
            request.ring_version,
            request.max_messages,
        )
        return chat_pb2.PollInboxResponse(
            messages=[message_pb(m) for m in page.messages],
            inbox_cursor=page.cursor,
            more=page.more,
            instance=page.instance,
            ring_version=page.ring_version,
        )

    async def GetMessageStats(
        self, request: chat_pb2.GetMessageStatsRequest, context: Context
    ) -> chat_pb2.GetMessageStatsResponse:
        stats = await self._stats.counts(
            require_user(),
            request.channel_id,
            BUCKETS.get(request.bucket, ""),
            request.start_ms,
            request.end_ms,
        )
        return chat_pb2.GetMessageStatsResponse(
            counts=[
                chat_pb2.StatsCount(start_ms=start, count=count)
                for start, count in zip(stats.starts, stats.counts, strict=True)
            ],
            total=sum(stats.counts),
            bucket=BUCKET_PB[stats.bucket],
        )
