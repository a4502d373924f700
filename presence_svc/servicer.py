"""gRPC transport of PresenceService: protobuf <-> domain, nothing more."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from feedchat.presence.v1 import presence_pb2, presence_pb2_grpc
from feedchat_runtime.auth import require_service, require_user
from feedchat_runtime.clock import timestamp
from feedchat_runtime.errors import FeedchatError, InvalidArgument, Unavailable
from feedchat_runtime.request_reader import RequestReader
from feedchat_runtime.status import translate
from presence_svc.config import PresenceConfig
from presence_svc.following import FollowingSource
from presence_svc.hub import SubscriptionHub
from presence_svc.presence import (
    MAX_HELD_DEVICE_ID,
    Device,
    Presence,
    PresenceTracker,
    Status,
    held_device,
)
from presence_svc.session import ChangeFrame, EndFrame, SnapshotFrame, WatchSession

logger = logging.getLogger(__name__)

pb = presence_pb2

_TO_PB = {
    Status.ONLINE: pb.PRESENCE_STATUS_ONLINE,
    Status.AWAY: pb.PRESENCE_STATUS_AWAY,
    Status.OFFLINE: pb.PRESENCE_STATUS_OFFLINE,
}
_FROM_PB = {
    pb.PRESENCE_STATUS_UNSPECIFIED: None,
    pb.PRESENCE_STATUS_ONLINE: Status.ONLINE,
    pb.PRESENCE_STATUS_AWAY: Status.AWAY,
    pb.PRESENCE_STATUS_OFFLINE: Status.OFFLINE,
}


def _timestamp(ms: int | None) -> Timestamp | None:
    return None if ms is None else timestamp(ms)


def presence_to_pb(p: Presence) -> presence_pb2.Presence:
    return pb.Presence(
        user_id=p.user_id,
        status=_TO_PB[p.status],
        last_seen_time=_timestamp(p.last_seen_ms),
        status_change_time=_timestamp(p.since_ms),
        version=p.version,
    )


class PresenceServicer(presence_pb2_grpc.PresenceServiceServicer):
    """PresenceService over a tracker, this instance's hub, and a following source."""

    def __init__(
        self,
        config: PresenceConfig,
        tracker: PresenceTracker,
        hub: SubscriptionHub,
        following: FollowingSource,
    ) -> None:
        self._config = config
        self._tracker = tracker
        self._hub = hub
        self._following = following
        self._sessions: set[WatchSession] = set()
        self._draining = False

    @property
    def open_streams(self) -> int:
        return len(self._sessions)

    def drain(self) -> None:
        """End every stream (the server is shutting down). Devices are not removed: they
        reconnect elsewhere within the offline timeout without their users flapping offline."""
        self._draining = True
        for session in list(self._sessions):
            session.end(EndFrame())

    async def Connect(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[presence_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[presence_pb2.ConnectResponse]:
        user_id = require_user()
        if self._draining:
            raise Unavailable("server is shutting down; reconnect", reason="DRAINING")
        device = await self._tracker.connect(user_id)
        session = WatchSession(
            user_id,
            self._tracker,
            self._hub,
            self._config.max_watch,
            self._config.outbound_queue,
        )
        self._sessions.add(session)
        if self._draining:  # the drain began while this stream was being set up
            session.end(EndFrame())
        reader: RequestReader[presence_pb2.ConnectRequest] | None = None
        end = EndFrame()
        try:
            initial: list[int] = []
            if self._config.default_watch:
                initial = await self._following.following(user_id, self._config.max_watch)
            try:
                await session.open(initial)
            except Exception:
                end = EndFrame(client_closed=True)  # never served: take the device back now
                raise
            reader = RequestReader(aiter(request_iterator))
            reader.start(lambda frames: self._read(frames, session, device))
            while True:
                frame = await session.queue.get()
                if isinstance(frame, EndFrame):
                    end = frame
                    break
                yield self._frame_to_pb(frame, session)
        finally:
            self._sessions.discard(session)
            if reader is not None:
                await reader.stop()
            await session.close()
            if end.client_closed:
                # The client said goodbye: its device is gone now, not after the timeout.
                await self._tracker.disconnect(device)
        if end.error is not None:
            raise end.error

    async def _read(
        self,
        request_iterator: AsyncIterator[presence_pb2.ConnectRequest],
        session: WatchSession,
        device: Device,
    ) -> None:
        try:
            async for request in request_iterator:
                kind = request.WhichOneof("frame")
                if kind == "heartbeat":
                    status = _FROM_PB.get(request.heartbeat.status, Status.OFFLINE)
                    self._tracker.heartbeat(device, status)
                elif kind == "watch":
                    await session.watch(list(request.watch.user_ids), request.watch.replace)
                elif kind == "unwatch":
                    await session.unwatch(list(request.unwatch.user_ids))
                else:
                    raise InvalidArgument.field("frame", "set heartbeat, watch or unwatch")
        except FeedchatError as exc:
            session.end(EndFrame(error=exc, client_closed=isinstance(exc, InvalidArgument)))
            return
        except grpc.aio.AioRpcError:
            session.end(EndFrame())  # the transport broke: the deadline decides
            return
        except Exception as exc:  # e.g. Redis away mid-watch: end the stream, not its reader
            error = translate(exc)
            if error is None:
                logger.exception("reading presence frames failed")
            session.end(EndFrame(error=error or FeedchatError("internal error")))
            return
        session.end(EndFrame(client_closed=True))

    def _frame_to_pb(
        self, frame: SnapshotFrame | ChangeFrame, session: WatchSession
    ) -> presence_pb2.ConnectResponse:
        if isinstance(frame, ChangeFrame):
            change = pb.PresenceChange(presence=presence_to_pb(frame.presence))
            return pb.ConnectResponse(change=change)
        snapshot = pb.Snapshot(presences=[presence_to_pb(p) for p in frame.presences])
        if frame.first:
            snapshot.session.CopyFrom(
                pb.Session(
                    user_id=session.user_id,
                    heartbeat_interval_ms=int(self._config.heartbeat_interval * 1000),
                    offline_timeout_ms=int(self._config.offline_timeout * 1000),
                    watch_count=len(frame.presences),
                )
            )
        return pb.ConnectResponse(snapshot=snapshot)

    async def GetPresence(  # noqa: N802 - gRPC method name
        self, request: presence_pb2.GetPresenceRequest, context: grpc.aio.ServicerContext
    ) -> presence_pb2.GetPresenceResponse:
        ids = list(request.user_ids)
        if not ids:
            raise InvalidArgument.field("user_ids", "name at least one user")
        if len(ids) > self._config.max_batch:
            raise InvalidArgument.field(
                "user_ids",
                f"at most {self._config.max_batch} ids per call",
                reason="BATCH_TOO_LARGE",
            )
        if 0 in ids:
            raise InvalidArgument.field("user_ids", "ids must be positive")
        presences = await self._tracker.lookup(ids)
        return pb.GetPresenceResponse(presences=[presence_to_pb(p) for p in presences])

    async def RecordDeviceBeats(  # noqa: N802 - gRPC method name
        self, request: presence_pb2.RecordDeviceBeatsRequest, context: grpc.aio.ServicerContext
    ) -> presence_pb2.RecordDeviceBeatsResponse:
        require_service()
        beats = request.beats
        if not 0 < len(beats) <= self._config.max_batch:
            raise InvalidArgument.field(
                "beats", f"1 to {self._config.max_batch} beats per call", reason="BATCH_TOO_LARGE"
            )
        for beat in beats:
            if beat.user_id == 0 or not 0 < len(beat.device_id) <= MAX_HELD_DEVICE_ID:
                raise InvalidArgument.field(
                    "beats",
                    f"each needs a user_id and a 1..{MAX_HELD_DEVICE_ID} character device_id",
                )
        for beat in beats:
            self._tracker.heartbeat(held_device(beat.user_id, beat.device_id), Status.ONLINE)
        return pb.RecordDeviceBeatsResponse(
            heartbeat_interval_ms=int(self._config.heartbeat_interval * 1000),
            offline_timeout_ms=int(self._config.offline_timeout * 1000),
        )
