"""gRPC transport of AccountService: protobuf <-> plain values, caller from the guard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from account_svc.accounts import Accounts, Profile, Session
from feedchat.account.v1 import account_pb2 as pb
from feedchat.account.v1 import account_pb2_grpc
from feedchat_runtime.auth import require_user
from feedchat_runtime.clock import timestamp

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

SERVICE = "feedchat.account.v1.AccountService"
PUBLIC_METHODS = frozenset(f"/{SERVICE}/{name}" for name in ("SignUp", "Login", "RefreshToken"))


def peer_host(peer: str) -> str:
    """The address part of ``context.peer()`` ("ipv4:1.2.3.4:5" -> "1.2.3.4").

    Unix-socket peers (no address) share one bucket named after the transport.
    """
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]").lower()
    return kind or "unknown"


def user_pb(profile: Profile) -> pb.User:
    return pb.User(
        user_id=profile.user_id,
        username=profile.username,
        display_name=profile.display_name,
        bio=profile.bio,
        created_at=timestamp(profile.created_ms),
    )


def _session_fields(session: Session) -> dict[str, object]:
    return {
        "user_id": session.user_id,
        "access_token": session.access_token,
        "refresh_token": session.refresh_token,
        "access_token_expires_at": timestamp(session.access_expires_at * 1000),
        "refresh_token_expires_at": timestamp(session.refresh_expires_at * 1000),
    }


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    """Thin adapter: every rule lives in :class:`Accounts`."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    async def SignUp(self, request: pb.SignUpRequest, context: Context) -> pb.SignUpResponse:
        session = await self._accounts.sign_up(
            request.username,
            request.password,
            request.display_name,
            peer_host(context.peer()),
        )
        return pb.SignUpResponse(**_session_fields(session))  # type: ignore[arg-type]

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        session = await self._accounts.login(
            request.username, request.password, peer_host(context.peer())
        )
        return pb.LoginResponse(**_session_fields(session))  # type: ignore[arg-type]

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.RefreshTokenResponse:
        session = await self._accounts.refresh(request.refresh_token)
        return pb.RefreshTokenResponse(**_session_fields(session))  # type: ignore[arg-type]

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: Context
    ) -> pb.GetProfileResponse:
        # user_id 0 means the calling user: a service credential has none, so
        # require_user() answers UNAUTHENTICATED (USER_TOKEN_REQUIRED) for it.
        user_id = request.user_id or require_user()
        profile = await self._accounts.profile(user_id)
        return pb.GetProfileResponse(user=user_pb(profile))

    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: Context
    ) -> pb.UpdateProfileResponse:
        user_id = require_user()
        profile = await self._accounts.update_profile(
            user_id,
            request.display_name if request.HasField("display_name") else None,
            request.bio if request.HasField("bio") else None,
        )
        return pb.UpdateProfileResponse(user=user_pb(profile))

    async def GetUsers(self, request: pb.GetUsersRequest, context: Context) -> pb.GetUsersResponse:
        profiles = await self._accounts.users(list(request.user_ids))
        return pb.GetUsersResponse(users=[user_pb(p) for p in profiles])

    async def LookupUsername(
        self, request: pb.LookupUsernameRequest, context: Context
    ) -> pb.LookupUsernameResponse:
        profile = await self._accounts.lookup(request.username)
        return pb.LookupUsernameResponse(user=user_pb(profile))

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Context
    ) -> pb.ChangePasswordResponse:
        session = await self._accounts.change_password(
            require_user(), request.current_password, request.new_password
        )
        return pb.ChangePasswordResponse(**_session_fields(session))  # type: ignore[arg-type]

    async def SignOutEverywhere(
        self, request: pb.SignOutEverywhereRequest, context: Context
    ) -> pb.SignOutEverywhereResponse:
        revoked = await self._accounts.sign_out_everywhere(require_user())
        return pb.SignOutEverywhereResponse(revoked_refresh_tokens=revoked)

    async def DeleteAccount(
        self, request: pb.DeleteAccountRequest, context: Context
    ) -> pb.DeleteAccountResponse:
        free_at = await self._accounts.delete_account(require_user(), request.password)
        free_ms = round(free_at.timestamp() * 1000)
        return pb.DeleteAccountResponse(username_free_at=timestamp(free_ms))


def add_account_service(server: grpc.aio.Server, servicer: AccountServicer) -> list[str]:
    account_pb2_grpc.add_AccountServiceServicer_to_server(servicer, server)
    return [SERVICE]
