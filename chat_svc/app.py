"""The chat server process: wiring, start-up and shutdown.

``build(config)`` returns a :class:`ChatApp` whose host is opened and built but not
started (tests call ``start()``/``stop()``); ``serve(config)`` runs it until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc

from chat_svc.claims import FanoutClaims
from chat_svc.config import ChatConfig
from chat_svc.connections import ConnectionHub
from chat_svc.delivery import Delivery
from chat_svc.groups import Channels
from chat_svc.layout import move_to_bucket_layout
from chat_svc.model import EventLimits
from chat_svc.peer import PeerClient, PeerServicer
from chat_svc.poll_presence import PollPresence
from chat_svc.polling import UnaryChat
from chat_svc.servicer import ChatServicer
from chat_svc.sessions import Sessions
from chat_svc.stats import MessageStats
from chat_svc.store import ChatStore
from chat_svc.store_channels import ChannelRecords
from chat_svc.store_stats import StatsStore
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.pages import page_tokens
from feedchat_runtime.postgres import open_database
from feedchat_runtime.redis_client import RedisClient, connect_any
from feedchat_runtime.replicas import ReplicaAcks
from feedchat_runtime.ring import CHAT_SERVICE, Ring, RingWatch
from feedchat_runtime.server import ServiceHost, run_until_signal
from feedchat_runtime.snowflake import WorkerIdClaim
from presence_svc.client import PresenceClient

logger = logging.getLogger(__name__)

CHAT_SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name
PEER_SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatPeerService"].full_name
CONNECT_METHOD = f"/{CHAT_SERVICE_NAME}/Connect"
POLL_METHOD = f"/{CHAT_SERVICE_NAME}/PollInbox"


def policy(config: ChatConfig) -> AuthPolicy:
    return AuthPolicy(
        service_only=frozenset(
            {f"/{PEER_SERVICE_NAME}/Deliver", f"/{PEER_SERVICE_NAME}/DeliverStream"}
        ),
        stream_limits={CONNECT_METHOD: config.max_streams_per_user},
        shared_stream_limits={POLL_METHOD: CONNECT_METHOD},
    )


@dataclass
class ChatApp:
    """One chat server's parts (tests reach into them)."""

    config: ChatConfig
    host: ServiceHost
    redis: RedisClient
    store: ChatStore
    records: ChannelRecords
    ring: RingWatch
    hub: ConnectionHub
    sessions: Sessions
    delivery: Delivery
    poll_presence: PollPresence
    claims: FanoutClaims
    _drain_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return self.host.address

    async def start(self) -> None:
        await self.host.start()
        self.host.background(self.claims.run(), "fanout-claims")
        self._drain_task = asyncio.create_task(self._drain_on_stop())

    async def _drain_on_stop(self) -> None:
        await self.host.draining.wait()
        self.sessions.drain()

    async def stop(self) -> None:
        await self.host.stop()
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task


async def build(config: ChatConfig) -> ChatApp:
    """Connect to etcd and Redis, claim a worker id, watch the ring, build the server."""
    host = ServiceHost(config, CHAT_SERVICE)
    await host.open()
    redis = connect_any(
        config.redis_url,
        socket_timeout=config.redis_timeout,
        socket_connect_timeout=config.redis_timeout,
        health_check_interval=10,
    )
    try:
        db = await open_database(
            config.postgres_url, CHAT_SERVICE, "chat_svc", config.postgres_pool_size
        )
    except BaseException:
        await redis.aclose()
        await host.session.close(revoke=True)
        raise
    host.on_stop(db.close)
    host.dependencies.add("postgres", db.ping)
    await move_to_bucket_layout(redis)
    records = ChannelRecords(db)
    store = ChatStore(
        redis,
        config.inbox_cap,
        config.history_cap,
        config.dedup_ttl,
        stats_ttl=config.stats_days * 86_400,
        load_members=records.members,
        replication=ReplicaAcks.from_config(config),
        claim_ms=int(config.fanout_claim_idle * 1000),
        limits=EventLimits(
            int(config.edit_window * 1000),
            config.max_reactions,
            config.max_user_reactions,
            config.max_edits,
        ),
    )
    claim = WorkerIdClaim(host.session)
    await claim.acquire()
    ids = claim.generator()
    ring = RingWatch(host.session)
    await ring.start()
    hub = ConnectionHub()
    directory = ServiceDirectory(host.session, config, host.authority, CHAT_SERVICE)
    peers = PeerClient(directory, config.peer_timeout)
    delivery = Delivery(
        store=store,
        hub=hub,
        ring=ring,
        instance=config.instance,
        ids=ids,
        forward=peers.submit,
        max_message_chars=config.max_message_chars,
        send_rate=config.send_rate,
        send_burst=config.send_burst,
        retry_window=config.push_retry_window,
        group_owner=records.owner,
        stop_window=config.peer_timeout,
    )
    sessions = Sessions(
        store=store,
        hub=hub,
        ring=ring,
        delivery=delivery,
        instance=config.instance,
        queue_capacity=config.outbound_queue,
        draining=host.draining.is_set,
        ring_settle=config.ring_settle,
    )
    channels = Channels(store, records, ids, config.max_group_members)
    poll_presence = PollPresence(PresenceClient(directory).record_beats)
    unary = UnaryChat(sessions, delivery, poll_presence, config.poll_wait, config.poll_max_wait)
    stats = MessageStats(StatsStore(redis), records, config.stats_days)
    claims = FanoutClaims(store, delivery, config.fanout_claim_interval)

    def on_ring(old: Ring, new: Ring) -> None:
        sessions.rebalance()
        delivery.ring_changed(old, new)
        live = {member.address for member in new.members.values()}
        for member in old.members.values():
            if member.address not in live:  # a peer left: drop our channel to it
                peers.forget(member.address)

    ring.listeners.append(on_ring)

    host.dependencies.add("redis", store.ping)

    def add_services(server: grpc.aio.Server) -> list[str]:
        chat = ChatServicer(sessions, channels, page_tokens(config), unary, stats)
        chat_pb2_grpc.add_ChatServiceServicer_to_server(chat, server)
        chat_pb2_grpc.add_ChatPeerServiceServicer_to_server(PeerServicer(hub), server)
        return [CHAT_SERVICE_NAME, PEER_SERVICE_NAME]

    host.build(add_services, policy(config))
    host.on_stop(redis.aclose)
    host.on_stop(store.close)  # after delivery.close (hooks run in reverse order)
    host.on_stop(directory.close)
    host.on_stop(ring.stop)
    host.on_stop(delivery.close)
    poll_presence.start()
    host.on_stop(poll_presence.stop)
    return ChatApp(
        config, host, redis, store, records, ring, hub, sessions, delivery, poll_presence, claims
    )


async def serve(config: ChatConfig) -> None:
    app = await build(config)
    await run_until_signal(app.start, app.stop)
