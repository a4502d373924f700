"""Typed wrapper of AccountService (profiles and lookups; sign-up/login live in Session)."""

from __future__ import annotations

from typing import Any

import grpc

from feedchat.account.v1 import account_pb2, account_pb2_grpc
from feedchat_client.models import User
from feedchat_client.rpc import ServiceClient


class AccountClient(ServiceClient):
    service = "account"

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        return account_pb2_grpc.AccountServiceStub(channel)

    async def me(self) -> User:
        """The calling user's profile."""
        reply = await self._call("GetProfile", account_pb2.GetProfileRequest(user_id=0))
        return User.from_pb(reply.user)

    async def profile(self, user_id: int) -> User:
        reply = await self._call("GetProfile", account_pb2.GetProfileRequest(user_id=user_id))
        return User.from_pb(reply.user)

    async def update_profile(
        self, *, display_name: str | None = None, bio: str | None = None
    ) -> User:
        request = account_pb2.UpdateProfileRequest()
        if display_name is not None:
            request.display_name = display_name
        if bio is not None:
            request.bio = bio
        reply = await self._call("UpdateProfile", request)
        return User.from_pb(reply.user)

    async def users(self, user_ids: list[int]) -> list[User]:
        """Profiles of up to 500 users; unknown ids are simply absent."""
        reply = await self._call("GetUsers", account_pb2.GetUsersRequest(user_ids=user_ids))
        return [User.from_pb(u) for u in reply.users]

    async def lookup(self, username: str) -> User:
        """The user with this username (case-insensitive); RpcError NOT_FOUND if none."""
        reply = await self._call(
            "LookupUsername", account_pb2.LookupUsernameRequest(username=username)
        )
        return User.from_pb(reply.user)
