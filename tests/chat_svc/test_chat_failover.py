"""A Redis Cluster master dies under chat load: with --replica-acks 1 the chat server
recovers by itself, and every acknowledged message is in the channel history and in the
recipient's sync exactly once.

The sender follows the client algorithm: a send refused with UNAVAILABLE is sent again
with the same client_msg_id after its retry_after, until it is acked. The master holding
the channel's slot is SIGKILLed mid-stream; its replica is promoted, and has no replica
of its own until the killed node is started again (it rejoins as one), so acks resume
only then -- as in production once the dead process is replaced.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter

import pytest

from chat_svc.keys import chan_seq_key, inbox_key
from feedchat_local.embedded_cluster import RedisClusterNodes
from tests.chat_svc.chatkit import Device, OpenDevice, StartCluster, open_direct, users_on
from tests.waiting import wait_until

RECOVERY_BOUND = 15.0
"""Seconds from the kill until a send is stored again (cluster-node-timeout 2 s + the
election + the client re-reading the slot map, with a margin for a loaded machine)."""


def _replied(device: Device, cmid: str, errors_before: int) -> bool:
    """An ack for ``cmid``, or one more refusal of it than ``errors_before``."""
    return any(a.client_msg_id == cmid for a in device.acks) or (
        sum(e.client_msg_id == cmid for e in device.send_errors) > errors_before
    )


async def _send_until_acked(
    device: Device, channel: int, text: str, cmid: str, stored: list[float]
) -> int:
    """Send (and re-send after each refusal) until acked; the attempts it took. Appends
    the time of each reply saying the message is stored (acked, or REPLICA_ACK_TIMEOUT)."""
    for attempt in range(1, 200):
        errors = sum(e.client_msg_id == cmid for e in device.send_errors)
        device.send(channel, text, client_msg_id=cmid)
        await wait_until(
            functools.partial(_replied, device, cmid, errors), 30, f"a reply to {cmid}"
        )
        if any(a.client_msg_id == cmid for a in device.acks):
            stored.append(time.monotonic())
            return attempt
        error = [e for e in device.send_errors if e.client_msg_id == cmid][-1]
        assert error.code == "UNAVAILABLE", error
        if error.reason == "REPLICA_ACK_TIMEOUT":
            stored.append(time.monotonic())
        await asyncio.sleep(max(0.05, error.retry_after.ToMilliseconds() / 1000))
    raise AssertionError(f"{cmid} never acked")


@pytest.mark.parametrize("redis_url", ["node"], indirect=True)  # unused: own cluster below
@pytest.mark.timeout(240)
async def test_killed_master_under_chat_load_loses_and_duplicates_no_acked_message(
    private_redis_cluster: RedisClusterNodes, chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    nodes = private_redis_cluster
    apps = await chat_cluster(
        1,
        redis_url=nodes.url,
        replica_acks=1,
        replica_wait_ms=300,
        redis_timeout=1.0,
        fanout_claim_idle=1.0,
        fanout_claim_interval=0.2,
        send_rate=1000.0,
        send_burst=1000,
    )
    app = apps[0]
    alice, bob = users_on(apps, "chat-0", 2)
    channel = await open_direct(app.address, alice, bob)
    victim = nodes.master_of(chan_seq_key(channel))
    a = await devices(alice, app.address)
    total, kill_at = 80, 30
    sent: dict[str, int] = {}  # text -> message id acked
    stored: list[float] = []
    killed_at = acked_again = 0.0

    async def replace_the_dead_node() -> None:
        """Once the replica took over, start the killed node again: it rejoins as the new
        master's replica, and replica acks resume."""
        await wait_until(
            lambda: asyncio.to_thread(nodes.master_of, chan_seq_key(channel)),
            what="a live master",
        )

        def promoted() -> bool:
            return nodes.master_of(chan_seq_key(channel)).port != victim.port

        await wait_until(lambda: asyncio.to_thread(promoted), RECOVERY_BOUND, "promotion")
        await asyncio.to_thread(victim.start)

    replacing: asyncio.Task[None] | None = None
    try:
        for i in range(total):
            if i == kill_at:
                victim.kill()
                killed_at = time.monotonic()
                replacing = asyncio.create_task(replace_the_dead_node())
            cmid = f"k{i}"
            attempts = await _send_until_acked(a, channel, f"m{i}", cmid, stored)
            if i == kill_at:
                acked_again = time.monotonic() - killed_at
            assert attempts == 1 or i >= kill_at
            sent[f"m{i}"] = next(x.message_id for x in a.acks if x.client_msg_id == cmid)
    finally:
        if replacing is not None:
            await replacing
    stored_again = min(t for t in stored if t > killed_at) - killed_at
    print(
        f"\nchat failover: kill -> first send stored again {stored_again:.2f} s, acked again "
        f"(the killed node back as a replica) {acked_again:.2f} s; "
        f"{len(a.send_errors)} refusals retried"
    )
    assert stored_again < RECOVERY_BOUND

    history = await app.store.history(channel, None, 200)
    assert Counter(m.text for m in history) == Counter(sent.keys())  # each acked text once
    assert {m.text: m.message_id for m in history} == sent
    assert sorted(m.seq for m in history) == list(range(1, total + 1))  # no gap either

    async def synced() -> bool:
        return len(await app.store.read_inbox(bob, "0-0", 500)) >= total

    await wait_until(synced, 30, "bob's inbox filled")
    b = await devices(bob, app.address)
    assert Counter(b.texts()) == Counter(sent.keys()), "bob's sync: every acked message, once"
    # (in inbox order: a send finished late, after a refusal, can land after a later seq)
    assert sorted(m.seq for m in b.messages) == list(range(1, total + 1))
    assert await app.redis.xlen(inbox_key(bob)) == total
