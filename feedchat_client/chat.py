"""Typed wrappers of RouterService and ChatService's unary RPCs; ``connect()`` opens a
:class:`~feedchat_client.chat_stream.ChatConnection`."""

from __future__ import annotations

from typing import Any

import grpc

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat.router.v1 import router_pb2, router_pb2_grpc
from feedchat_client.backoff import Backoff
from feedchat_client.chat_poll import ChatPoller
from feedchat_client.chat_stream import ChatConnection, StateCallback
from feedchat_client.cursors import CursorStore, MemoryCursorStore
from feedchat_client.models import Channel, ChatMessage, MessageStats, Route, SentMessage
from feedchat_client.rpc import ServiceClient


class RouterClient(ServiceClient):
    service = "router"

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        return router_pb2_grpc.RouterServiceStub(channel)

    async def route(self, user_id: int) -> Route:
        """The chat server that owns ``user_id`` right now."""
        reply = await self._call("Route", router_pb2.RouteRequest(user_id=user_id))
        return Route(reply.user_id, reply.address, reply.instance, reply.ring_version)

    async def chat_servers(self) -> list[tuple[str, str]]:
        """(instance, address) of every chat server on the ring."""
        reply = await self._call("ListChatServers", router_pb2.ListChatServersRequest())
        return [(s.instance, s.address) for s in reply.chat_servers]


class ChatClient(ServiceClient):
    """Channels and history (any chat server answers these), and live connections."""

    service = "chat"

    def __init__(self, *args: Any, router: RouterClient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.router = router

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        return chat_pb2_grpc.ChatServiceStub(channel)

    async def open_direct(self, peer_user_id: int) -> Channel:
        """The 1:1 channel with a peer (the same id for both users)."""
        reply = await self._call(
            "OpenDirectChannel", chat_pb2.OpenDirectChannelRequest(peer_user_id=peer_user_id)
        )
        return Channel.from_pb(reply.channel)

    async def create_group(self, name: str, member_ids: list[int]) -> Channel:
        reply = await self._call(
            "CreateGroup", chat_pb2.CreateGroupRequest(name=name, member_ids=member_ids)
        )
        return Channel.from_pb(reply.channel)

    async def add_members(self, channel_id: int, user_ids: list[int]) -> Channel:
        reply = await self._call(
            "AddMembers", chat_pb2.AddMembersRequest(channel_id=channel_id, user_ids=user_ids)
        )
        return Channel.from_pb(reply.channel)

    async def remove_members(self, channel_id: int, user_ids: list[int]) -> Channel:
        reply = await self._call(
            "RemoveMembers", chat_pb2.RemoveMembersRequest(channel_id=channel_id, user_ids=user_ids)
        )
        return Channel.from_pb(reply.channel)

    async def channels(self, page_size: int = 0, page_token: str = "") -> tuple[list[Channel], str]:
        reply = await self._call(
            "ListChannels", chat_pb2.ListChannelsRequest(page_size=page_size, page_token=page_token)
        )
        return [Channel.from_pb(c) for c in reply.channels], reply.next_page_token

    async def history(
        self, channel_id: int, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[ChatMessage], str]:
        """One page of a channel's messages, newest first, and the next (older) token."""
        reply = await self._call(
            "GetHistory",
            chat_pb2.GetHistoryRequest(
                channel_id=channel_id, page_size=page_size, page_token=page_token
            ),
        )
        return [ChatMessage.from_pb(m) for m in reply.messages], reply.next_page_token

    async def _stored(self, rpc: str, request: Any) -> SentMessage:
        """A unary send or channel event (any chat server); its ack."""
        a = (await self._call(rpc, request)).ack
        return SentMessage(a.client_msg_id, a.message_id, a.channel_id, a.seq, a.duplicate)

    async def send_message(
        self, channel_id: int, text: str, *, client_msg_id: str, reply_to: int = 0
    ) -> SentMessage:
        """One unary ``SendMessage`` (any chat server): stored once per client_msg_id.
        ``reply_to``: the message_id of an earlier message of the channel it answers."""
        return await self._stored(
            "SendMessage",
            chat_pb2.SendMessageRequest(
                client_msg_id=client_msg_id, channel_id=channel_id, text=text, reply_to=reply_to
            ),
        )

    async def edit_message(
        self, channel_id: int, message_id: int, text: str, *, client_msg_id: str
    ) -> SentMessage:
        """``EditMessage``: new text for a message you sent (within the edit window)."""
        request = chat_pb2.EditMessageRequest(
            client_msg_id=client_msg_id, channel_id=channel_id, message_id=message_id, text=text
        )
        return await self._stored("EditMessage", request)

    async def delete_message(
        self, channel_id: int, message_id: int, *, client_msg_id: str
    ) -> SentMessage:
        """``DeleteMessage``: delete a message you sent (or, as a group's owner, any)."""
        request = chat_pb2.DeleteMessageRequest(
            client_msg_id=client_msg_id, channel_id=channel_id, message_id=message_id
        )
        return await self._stored("DeleteMessage", request)

    async def add_reaction(
        self, channel_id: int, message_id: int, emoji: str, *, client_msg_id: str
    ) -> SentMessage:
        """``AddReaction``: react to a message with ``emoji``."""
        request = chat_pb2.AddReactionRequest(
            client_msg_id=client_msg_id, channel_id=channel_id, message_id=message_id, emoji=emoji
        )
        return await self._stored("AddReaction", request)

    async def remove_reaction(
        self, channel_id: int, message_id: int, emoji: str, *, client_msg_id: str
    ) -> SentMessage:
        """``RemoveReaction``: take back one of your reactions."""
        request = chat_pb2.RemoveReactionRequest(
            client_msg_id=client_msg_id, channel_id=channel_id, message_id=message_id, emoji=emoji
        )
        return await self._stored("RemoveReaction", request)

    async def stats(
        self, channel_id: int, bucket: str = "hour", start_ms: int = 0, end_ms: int = 0
    ) -> MessageStats:
        """Message counts per ``bucket`` (minute, hour, day) of a channel (0: all yours)."""
        reply = await self._call(
            "GetMessageStats",
            chat_pb2.GetMessageStatsRequest(
                channel_id=channel_id,
                bucket=chat_pb2.StatsBucket.Value(f"STATS_BUCKET_{bucket.upper()}"),
                start_ms=start_ms,
                end_ms=end_ms,
            ),
        )
        return MessageStats(bucket, [(c.start_ms, c.count) for c in reply.counts], reply.total)

    def poller(
        self,
        device_id: str,
        *,
        cursors: CursorStore | None = None,
        backoff: Backoff | None = None,
        on_state: StateCallback | None = None,
        wait: float = 25.0,
        address: str | None = None,
    ) -> ChatPoller:
        """A (not yet started) long-poll device on unary calls only; use ``async with``.

        ``wait``: seconds each poll may be held; ``address`` skips the router for the first
        poll (a redirect is followed)."""
        return ChatPoller(
            self,
            device_id,
            cursors=cursors or MemoryCursorStore(),
            backoff=backoff or Backoff(),
            on_state=on_state,
            wait=wait,
            first_address=address,
        )

    def connection(
        self,
        device_id: str,
        *,
        cursors: CursorStore | None = None,
        backoff: Backoff | None = None,
        on_state: StateCallback | None = None,
        address: str | None = None,
    ) -> ChatConnection:
        """A (not yet started) live connection for this device; use ``async with``.

        ``address`` skips the router for the first attempt (redirects are followed).
        """
        return ChatConnection(
            self.router,
            device_id,
            cursors=cursors or MemoryCursorStore(),
            backoff=backoff or Backoff(),
            on_state=on_state,
            first_address=address,
        )
