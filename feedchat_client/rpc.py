"""The shared unary-call path of the service wrappers: auth, retries, rich errors."""

from __future__ import annotations

from typing import Any

import grpc

from feedchat_client.auth import Session
from feedchat_client.errors import RpcError
from feedchat_client.transport import Transport


class ServiceClient:
    """Base of the typed wrappers: one registry name, one generated stub class."""

    service = ""
    """Registry name of the service the wrapper calls."""

    def __init__(self, transport: Transport, session: Session, timeout: float = 10.0) -> None:
        self._transport = transport
        self._session = session
        self.timeout = timeout

    @property
    def transport(self) -> Transport:
        """How this client reaches the services (shared by every client of a session)."""
        return self._transport

    @property
    def session(self) -> Session:
        """Whose tokens the calls carry."""
        return self._session

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        raise NotImplementedError

    async def _call(
        self, method: str, request: Any, *, auth: bool = True, address: str | None = None
    ) -> Any:
        """Call ``method``; refresh and retry once on an expired token, try another
        instance once when one is UNAVAILABLE and the registry names another; failures
        raise :class:`RpcError`."""
        refreshed = moved = False
        while True:
            target = address or await self._transport.address(self.service)
            stub = self._stub(self._transport.channel_to(target))
            metadata = await self._session.metadata() if auth else ()
            try:
                return await getattr(stub, method)(request, metadata=metadata, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                error = await RpcError.from_call(exc)
            if (
                error.code == grpc.StatusCode.UNAUTHENTICATED
                and error.reason == "TOKEN_EXPIRED"
                and auth
                and not refreshed
            ):
                refreshed = True
                await self._session.refresh(spent=metadata[0][1].removeprefix("Bearer "))
                continue
            if error.code == grpc.StatusCode.UNAVAILABLE and address is None and not moved:
                # The instance may be gone: ask the registry afresh and try once more when
                # it names another instance (a restarted server, or one of several).
                now = await self._transport.discovery.addresses(self.service, fresh=True)
                if len(now) > 1 or (now and now != [target]):
                    moved = True
                    continue
            raise error
