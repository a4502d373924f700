"""A device that only polls is online while it polls (its polls are its heartbeats, sent by
the chat server that holds them) and offline once its polls stop for the timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from feedchat.presence.v1 import presence_pb2, presence_pb2_grpc
from presence_svc.app import PresenceApp, build
from presence_svc.config import PresenceConfig
from presence_svc.following import StaticFollowing
from tests.chat_svc.chatkit import AUTHORITY, StartCluster, auth
from tests.chat_svc.pollkit import poll
from tests.waiting import wait_until

ONLINE, OFFLINE = presence_pb2.PRESENCE_STATUS_ONLINE, presence_pb2.PRESENCE_STATUS_OFFLINE


@pytest.fixture
async def presence(make_config: Callable[..., Any], redis: Any) -> AsyncIterator[PresenceApp]:
    config = make_config(
        PresenceConfig,
        instance="presence-0",
        heartbeat_interval=0.5,
        offline_timeout=1.5,
        sweep_interval=0.1,
        heartbeat_flush=0.005,
    )
    app = await build(config, following=StaticFollowing({}))
    await app.host.start()
    yield app
    await app.host.stop()


async def _status(app: PresenceApp, user_id: int) -> int:
    async with grpc.aio.insecure_channel(app.host.address) as channel:
        reply = await presence_pb2_grpc.PresenceServiceStub(channel).GetPresence(
            presence_pb2.GetPresenceRequest(user_ids=[user_id]),
            metadata=(("authorization", f"Bearer {AUTHORITY.issue_service('chat').token}"),),
        )
        return int(reply.presences[0].status)


async def test_a_poller_is_online_while_polling_and_offline_after_it_stops(
    chat_cluster: StartCluster, presence: PresenceApp
) -> None:
    (chat,) = await chat_cluster(1)
    held = asyncio.create_task(poll(chat.address, 5, "", wait=4))  # held past the timeout
    await wait_until(lambda: _online(presence, 5), what="online while the poll is held")
    await wait_until(lambda: held.done(), timeout=8, what="the held poll's end")
    assert await _status(presence, 5) == ONLINE  # beaten while held, not just at its start
    await wait_until(lambda: _offline(presence, 5), timeout=6, what="offline after the polls")


async def test_presence_refuses_device_beats_from_users(presence: PresenceApp) -> None:
    async with grpc.aio.insecure_channel(presence.host.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await presence_pb2_grpc.PresenceServiceStub(channel).RecordDeviceBeats(
                presence_pb2.RecordDeviceBeatsRequest(
                    beats=[presence_pb2.DeviceBeat(user_id=5, device_id="x")]
                ),
                metadata=auth(5),
            )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _online(app: PresenceApp, user_id: int) -> bool:
    return await _status(app, user_id) == ONLINE


async def _offline(app: PresenceApp, user_id: int) -> bool:
    return await _status(app, user_id) == OFFLINE
