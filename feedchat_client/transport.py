"""Channels to feedchat servers, one per address, found through a :class:`Discovery`."""

from __future__ import annotations

import contextlib
import itertools

import grpc

from feedchat_client.discovery import Discovery
from feedchat_client.errors import ServiceNotFound

MAX_MESSAGE_BYTES = 4 << 20


class Transport:
    """Discovery plus a cache of channels (plaintext, or TLS with a CA bundle).

    ``channel(service)`` picks the instances of a service round robin; ``channel_to``
    reaches one address (a chat server named by the router or a redirect).
    """

    def __init__(self, discovery: Discovery, tls_ca: bytes | None = None) -> None:
        self.discovery = discovery
        self._credentials = (
            grpc.ssl_channel_credentials(root_certificates=tls_ca) if tls_ca else None
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._turns: dict[str, itertools.count[int]] = {}

    def channel_to(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=options)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials, options=options)
            self._channels[address] = channel
        return channel

    async def address(self, service: str) -> str:
        """One live address of ``service`` (round robin); ServiceNotFound if none."""
        addresses = await self.discovery.addresses(service)
        if not addresses:
            raise ServiceNotFound(f"no {service} server is registered")
        turn = next(self._turns.setdefault(service, itertools.count()))
        return addresses[turn % len(addresses)]

    async def channel(self, service: str) -> grpc.aio.Channel:
        return self.channel_to(await self.address(service))

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels.clear()
        await self.discovery.close()
