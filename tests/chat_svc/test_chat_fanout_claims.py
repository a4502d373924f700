"""A send whose inbox fanout its chat server never finished (it died right after the
channel step) is finished by another chat server's claim: every recipient gets the
message exactly once, also when the first server's fanout comes back late. With replica
acks, a send is acked only once a replica has it."""

from __future__ import annotations

import functools

import pytest

from chat_svc.app import ChatApp
from chat_svc.model import SendOutcome
from tests.chat_svc.chatkit import (
    Device,
    OpenDevice,
    StartCluster,
    fan_out_nothing,
    open_direct,
    pair_across,
    users_on,
)
from tests.waiting import wait_until

FAST_CLAIMS = {"fanout_claim_idle": 0.5, "fanout_claim_interval": 0.1}


async def _no_pending_fanout(app: ChatApp) -> bool:
    pending: int = await app.store.pending_fanouts()
    return pending == 0


async def test_fanout_left_by_a_dead_server_is_finished_by_another_exactly_once(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, **FAST_CLAIMS)
    dead, alive = apps
    alice, bob, channel, a, b = await pair_across(apps, devices)
    # chat-0 stops right after each channel step (as if killed there): its sends are
    # stored and acked, but neither it nor its claim loop appends anything to an inbox
    dropped: list[SendOutcome] = []
    fan_out_nothing(dead, dropped)

    ack = await a.sent(a.send(channel, "survives", client_msg_id="c1"))
    await wait_until(lambda: b.texts() == ["survives"], what="bob's message, via chat-1's claim")
    await wait_until(lambda: a.texts() == ["survives"], what="alice's other-device copy")
    assert alive.claims.claimed >= 1
    await wait_until(lambda: _no_pending_fanout(alive), what="the record removed")

    # the first server's fanout comes back late (a stalled process resuming): still once
    original = dropped[0]
    assert original.message.message_id == ack.message_id
    late = type(alive.delivery).dispatch(dead.delivery, original)
    assert late is not None
    fanned = await late
    assert fanned.error is None and {e.user_id for e in fanned.entries} == {alice, bob}
    for uid in (alice, bob):
        inbox = await alive.store.read_inbox(uid, "0-0", 10)
        assert [m.message_id for m in inbox] == [ack.message_id], uid
    again = await devices(bob, alive.address, device_id="laptop")  # a fresh sync
    assert again.texts() == ["survives"]
    assert b.texts() == ["survives"]


@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)
async def test_replica_acks_on_a_cluster_ack_after_a_replica_has_the_send(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, replica_acks=1, replica_wait_ms=2000)
    _, _, channel, a, b = await pair_across(apps, devices)
    for i in range(5):
        await a.sent(a.send(channel, f"m{i}"))
    await wait_until(lambda: len(b.texts()) == 5, what="bob's messages")
    assert b.texts() == [f"m{i}" for i in range(5)]
    await wait_until(lambda: _no_pending_fanout(apps[0]), what="every record removed")


@pytest.mark.parametrize("redis_url", ["node"], indirect=True)
async def test_replica_acks_without_a_replica_refuse_the_send_and_never_deliver_it(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1, replica_acks=1, replica_wait_ms=50, **FAST_CLAIMS)
    alice, bob = users_on(apps, "chat-0", 2)
    channel = await open_direct(apps[0].address, alice, bob)
    a = await devices(alice, apps[0].address)
    b = await devices(bob, apps[0].address)
    for attempt in range(2):  # the client's retry with the same id: refused the same way
        a.send(channel, "stored, not replicated", client_msg_id="c1")
        await wait_until(functools.partial(_refused_more_than, a, attempt), what="send_error")
        error = a.send_errors[attempt]
        assert (error.code, error.reason) == ("UNAVAILABLE", "REPLICA_ACK_TIMEOUT")
        assert error.retry_after.ToMilliseconds() > 0
    assert not a.acks
    # On the primary only, it could still vanish with it (and the retry store it anew), so
    # it reaches no inbox: the claims keep finding its record and leave it for later.
    rounds = apps[0].claims.rounds
    await wait_until(lambda: apps[0].claims.rounds >= rounds + 10, what="claim rounds")
    assert [m.text for m in await apps[0].store.history(channel, None, 10)] == [
        "stored, not replicated"
    ]
    for uid in (alice, bob):
        assert await apps[0].store.read_inbox(uid, "0-0", 10) == []
    assert not b.messages and apps[0].claims.claimed == 0
    assert await apps[0].store.pending_fanouts() == 1


def _refused_more_than(device: Device, count: int) -> bool:
    return len(device.send_errors) > count
