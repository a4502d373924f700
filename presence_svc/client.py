"""Asking presence_svc who is online, and telling it of devices held for their users, from
another feedchat service (the chat path).

    presence = PresenceClient(directory)          # a ServiceDirectory of the caller
    online = await presence.online([alice, bob])  # {alice: True, bob: False}
    await presence.record_beats([(alice, "phone")])  # alice's poller is still there

Calls ``GetPresence`` (``RecordDeviceBeats``) on some registered presence instance with
the caller's service credential, in chunks of at most 1,000 ids. Raises
:class:`~feedchat_runtime.errors.Unavailable` when no presence instance answers in time;
the caller decides what that means (chat: push, to be safe).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import grpc

from feedchat.presence.v1 import presence_pb2, presence_pb2_grpc
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.errors import Unavailable

PRESENCE_SERVICE = "presence"
MAX_IDS_PER_CALL = 1000


class PresenceClient:
    """Online/offline lookups against presence_svc."""

    def __init__(self, directory: ServiceDirectory, timeout: float = 1.0) -> None:
        self._directory = directory
        self._timeout = timeout

    async def _call(self, method: str, request: Any) -> Any:
        stub = presence_pb2_grpc.PresenceServiceStub(
            await self._directory.channel(PRESENCE_SERVICE)
        )
        try:
            return await getattr(stub, method)(
                request, metadata=self._directory.metadata(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"presence {method} failed: {exc.code().name}", reason="PRESENCE_UNAVAILABLE"
            ) from exc

    async def lookup(self, user_ids: Collection[int]) -> dict[int, presence_pb2.Presence]:
        """The presence of each distinct id."""
        ids = sorted(set(user_ids))
        found: dict[int, presence_pb2.Presence] = {}
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            chunk = ids[start : start + MAX_IDS_PER_CALL]
            reply = await self._call("GetPresence", presence_pb2.GetPresenceRequest(user_ids=chunk))
            found.update((p.user_id, p) for p in reply.presences)
        return found

    async def record_beats(self, beats: Collection[tuple[int, str]]) -> float:
        """Heartbeats of devices this service holds, as (user id, device id), in chunks of
        at most 1,000; the heartbeat interval presence asks for, in seconds."""
        interval = 0.0
        listed = list(beats)
        for start in range(0, len(listed), MAX_IDS_PER_CALL):
            chunk = listed[start : start + MAX_IDS_PER_CALL]
            request = presence_pb2.RecordDeviceBeatsRequest(
                beats=[presence_pb2.DeviceBeat(user_id=u, device_id=d) for u, d in chunk]
            )
            reply = await self._call("RecordDeviceBeats", request)
            interval = reply.heartbeat_interval_ms / 1000
        return interval

    async def online(self, user_ids: Collection[int]) -> dict[int, bool]:
        """True for each user with a live device (online or away)."""
        offline = presence_pb2.PRESENCE_STATUS_OFFLINE
        return {uid: p.status != offline for uid, p in (await self.lookup(user_ids)).items()}
