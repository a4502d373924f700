"""Signing up, logging in, and keeping the access token fresh.

A :class:`Session` holds the user's token pair in a :class:`~feedchat_client.tokens.TokenStore`
and hands out ``authorization: Bearer`` metadata. Before each call it checks the access
token's expiry: within ``refresh_margin`` seconds of it, it first exchanges the refresh
token (RefreshToken rotates the pair; an asyncio lock plus the store's lock make sure one
refresh token is spent once, even with many concurrent calls or processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from feedchat.account.v1 import account_pb2, account_pb2_grpc
from feedchat_client.errors import NotLoggedIn, RpcError
from feedchat_client.tokens import MemoryTokenStore, Tokens, TokenStore
from feedchat_client.transport import Transport

Metadata = tuple[tuple[str, str], ...]


class _TokenReply(Protocol):
    user_id: int
    access_token: str
    refresh_token: str

    @property
    def access_token_expires_at(self) -> object: ...

    @property
    def refresh_token_expires_at(self) -> object: ...


def _tokens(reply: _TokenReply, username: str) -> Tokens:
    access = reply.access_token_expires_at
    refresh = reply.refresh_token_expires_at
    return Tokens(
        user_id=reply.user_id,
        access_token=reply.access_token,
        refresh_token=reply.refresh_token,
        access_expires_at=access.ToNanoseconds() / 1e9,  # type: ignore[attr-defined]
        refresh_expires_at=refresh.ToNanoseconds() / 1e9,  # type: ignore[attr-defined]
        username=username,
    )


class Session:
    """One user's authentication, shared by every service wrapper of a client.

    Args:
        transport: finds and reaches account_svc.
        store: where the tokens live (memory by default; a file for the CLI).
        refresh_margin: refresh when the access token has fewer seconds than this left
            (capped at half its lifetime, so short-lived tokens are not refreshed on
            every call).
        clock: ``time.time``; tests pass a controllable one.
    """

    def __init__(
        self,
        transport: Transport,
        store: TokenStore | None = None,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        self._transport = transport
        self.store: TokenStore = store or MemoryTokenStore()
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._tokens = self.store.load()
        self._lifetime: float | None = None
        self.refreshes = 0
        """How many RefreshToken calls this session made."""

    @property
    def tokens(self) -> Tokens | None:
        return self._tokens

    @property
    def user_id(self) -> int:
        """The logged-in user's id; NotLoggedIn before sign-up/login."""
        if self._tokens is None:
            raise NotLoggedIn("sign up or log in first")
        return self._tokens.user_id

    async def _stub(self) -> account_pb2_grpc.AccountServiceAsyncStub:
        return account_pb2_grpc.AccountServiceStub(  # type: ignore[return-value]
            await self._transport.channel("account")
        )

    def _keep(self, tokens: Tokens) -> Tokens:
        self._lifetime = max(0.0, tokens.access_expires_at - self._clock())
        self._tokens = tokens
        self.store.save(tokens)
        return tokens

    async def sign_up(self, username: str, password: str, display_name: str = "") -> Tokens:
        """Create an account and log it in (ALREADY_EXISTS if the name is taken)."""
        stub = await self._stub()
        try:
            reply = await stub.SignUp(
                account_pb2.SignUpRequest(
                    username=username, password=password, display_name=display_name
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise await RpcError.from_call(exc) from None
        return self._keep(_tokens(reply, username.lower()))

    async def log_in(self, username: str, password: str) -> Tokens:
        """Exchange a username and password for tokens (UNAUTHENTICATED when wrong)."""
        stub = await self._stub()
        try:
            reply = await stub.Login(
                account_pb2.LoginRequest(username=username, password=password),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise await RpcError.from_call(exc) from None
        return self._keep(_tokens(reply, username.lower()))

    def log_out(self) -> None:
        """Forget the tokens (here and in the store)."""
        self._tokens = None
        self.store.save(None)

    def _fresh(self, tokens: Tokens) -> bool:
        margin = self.refresh_margin
        if self._lifetime is not None:
            margin = min(margin, self._lifetime / 2)
        return tokens.access_expires_at - self._clock() > margin

    async def access_token(self) -> str:
        """A valid access token, refreshed first when it is about to expire."""
        tokens = self._tokens
        if tokens is None:
            raise NotLoggedIn("sign up or log in first")
        if self._fresh(tokens):
            return tokens.access_token
        return (await self.refresh(spent=tokens.access_token)).access_token

    async def refresh(self, spent: str | None = None) -> Tokens:
        """Exchange the refresh token for a new pair.

        ``spent`` is the access token the caller found stale: when the session (or another
        process sharing the store) already moved past it, no second refresh happens.
        """
        async with self._lock:
            with self.store.locked():
                stored = self.store.load()
                if (
                    stored is not None
                    and self._tokens is not None
                    and (stored.user_id == self._tokens.user_id)
                ):
                    self._tokens = stored
                current = self._tokens
                if current is None:
                    raise NotLoggedIn("sign up or log in first")
                if spent is not None and current.access_token != spent:
                    return current
                stub = await self._stub()
                try:
                    reply = await stub.RefreshToken(
                        account_pb2.RefreshTokenRequest(refresh_token=current.refresh_token),
                        timeout=self._timeout,
                    )
                except grpc.aio.AioRpcError as exc:
                    raise await RpcError.from_call(exc) from None
                self.refreshes += 1
                return self._keep(_tokens(reply, current.username))

    async def metadata(self) -> Metadata:
        """Call metadata: ``authorization: Bearer <fresh access token>``."""
        return (("authorization", f"Bearer {await self.access_token()}"),)

    async def _authorized(self, method: str, request: object) -> Any:
        stub = await self._stub()
        try:
            return await getattr(stub, method)(
                request, metadata=await self.metadata(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise await RpcError.from_call(exc) from None

    async def change_password(self, current: str, new: str) -> Tokens:
        """Change the password. Every other device's refresh token is revoked; this
        session keeps the fresh pair the server hands back."""
        reply = await self._authorized(
            "ChangePassword",
            account_pb2.ChangePasswordRequest(current_password=current, new_password=new),
        )
        username = self._tokens.username if self._tokens is not None else ""
        return self._keep(_tokens(reply, username))

    async def sign_out_everywhere(self) -> int:
        """Revoke every refresh token of the user (this session's too, so it is
        forgotten here); how many were live."""
        reply = await self._authorized("SignOutEverywhere", account_pb2.SignOutEverywhereRequest())
        self.log_out()
        return int(reply.revoked_refresh_tokens)

    async def delete_account(self, password: str) -> datetime:
        """Delete the account (re-authenticated by ``password``) and forget the session;
        when the username becomes free again."""
        reply = await self._authorized(
            "DeleteAccount", account_pb2.DeleteAccountRequest(password=password)
        )
        self.log_out()
        free_at: datetime = reply.username_free_at.ToDatetime(tzinfo=UTC)
        return free_at
