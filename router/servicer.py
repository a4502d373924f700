"""RouterService: protobuf in, ring lookup, protobuf out."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from feedchat.router.v1 import router_pb2, router_pb2_grpc
from feedchat_runtime.auth import current_caller
from feedchat_runtime.errors import InvalidArgument, Unauthenticated, Unavailable
from feedchat_runtime.ids import is_valid_id
from feedchat_runtime.ring import RingWatch

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _require_caller() -> None:
    # Users and services alike may route; the guard has already verified the credential.
    if current_caller() is None:
        raise Unauthenticated("a token is required", reason="TOKEN_MISSING")


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, ring: RingWatch) -> None:
        self._ring = ring

    async def Route(
        self, request: router_pb2.RouteRequest, context: Context
    ) -> router_pb2.RouteResponse:
        _require_caller()
        if not is_valid_id(request.user_id):
            raise InvalidArgument.field("user_id", "must be between 1 and 2^63-1")
        ring = self._ring.ring
        owner = ring.owner(request.user_id)
        if owner is None:
            raise Unavailable("no chat server is registered", reason="NO_CHAT_SERVER")
        return router_pb2.RouteResponse(
            user_id=request.user_id,
            address=owner.address,
            instance=owner.instance,
            ring_version=ring.version,
        )

    async def ListChatServers(
        self, request: router_pb2.ListChatServersRequest, context: Context
    ) -> router_pb2.ListChatServersResponse:
        _require_caller()
        ring = self._ring.ring
        return router_pb2.ListChatServersResponse(
            chat_servers=[
                router_pb2.ChatServer(instance=m.instance, address=m.address)
                for m in ring.members.values()
            ],
            ring_version=ring.version,
        )
