"""--replica-acks: CreatePost is acknowledged only once Redis replicas confirmed its Redis
part (WAIT); short of them it is UNAVAILABLE REPLICA_ACK_TIMEOUT, and the retry with the
same request id is the same post, fanned out once."""

from __future__ import annotations

import grpc
import pytest

from feedchat.feed.v1 import feed_pb2 as pb
from tests.feed_svc.conftest import Client, StartSystem, fanout_done
from tests.rpc_errors import failure

REPLICAS_PER_MASTER = {"node": 0, "cluster": 1}
"""Replicas of each master in the test topologies (see tests/conftest.py)."""


def request(text: str, request_id: str) -> pb.CreatePostRequest:
    return pb.CreatePostRequest(text=text, request_id=request_id)


async def test_a_post_short_of_replicas_is_unavailable_and_its_retry_is_the_same_post(
    start_system: StartSystem, redis_url: str
) -> None:
    topology = "cluster" if redis_url.startswith("redis+cluster://") else "node"
    wanted = REPLICAS_PER_MASTER[topology] + 1  # one more than exist
    strict = await start_system(replica_acks=wanted, replica_wait_ms=100)
    author = await strict.sign_up()
    reader = strict.reader(9_000_001)
    await reader.follow(author.user_id)
    await reader.feed()  # active: fanout writes the reader's cache
    call = author.stub.CreatePost(request("needs a copy", "req-1"), metadata=author.md)
    details = await failure(call)
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.reason == "REPLICA_ACK_TIMEOUT"
    assert details.metadata["replicas_wanted"] == str(wanted)
    assert int(details.metadata["replicas_confirmed"]) < wanted
    # The client retries; a server asking for the replicas that exist acknowledges it.
    relaxed = await start_system(replica_acks=REPLICAS_PER_MASTER[topology])
    again = Client(author.user_id, relaxed.stub)
    first = (await again.stub.CreatePost(request("needs a copy", "req-1"), metadata=again.md)).post
    second = (await again.stub.CreatePost(request("needs a copy", "req-1"), metadata=again.md)).post
    assert first.post_id == second.post_id
    await fanout_done(relaxed, first.post_id)
    assert [p.post_id for p in (await Client(reader.user_id, relaxed.stub).feed()).posts] == [
        first.post_id
    ]


@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)  # the one with replicas
async def test_with_a_replica_per_master_posts_are_acknowledged(
    start_system: StartSystem, redis_url: str
) -> None:
    system = await start_system(replica_acks=1, replica_wait_ms=2000)
    author = await system.sign_up()
    reader = system.reader(9_000_002)
    await reader.follow(author.user_id)
    await reader.feed()
    posts = [await author.post(f"replicated {i}") for i in range(5)]
    for post in posts:
        await fanout_done(system, post.post_id)
    assert [p.post_id for p in (await reader.feed()).posts] == [p.post_id for p in reversed(posts)]
