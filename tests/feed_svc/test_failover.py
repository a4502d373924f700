"""The Redis Cluster master holding the fanout queue dies while an author posts: with
--replica-acks 1 every acknowledged post reaches its follower's feed, exactly once.

The author posts one post after another, each retried with its request id while the call
is UNAVAILABLE (the master's slots during the failover, then REPLICA_ACK_TIMEOUT while the
promoted master has no replica). The master of ``{fanout}`` is SIGKILLed mid-stream; its
replica is promoted; the killed node is started again once posts fail for want of a
replica, as the dead process would be replaced in production, and rejoins as the new
master's replica. Measured: kill -> first post acknowledged again.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from feed_svc.keys import JOBS_KEY
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_local.embedded_cluster import RedisClusterNodes
from tests.feed_svc.conftest import Client, StartSystem, fanout_done
from tests.rpc_errors import failure

POSTS = 24
KILL_AFTER = 6
RECOVERY_BOUND = 30.0
"""Seconds from the kill until posts are acknowledged again: cluster-node-timeout (2 s),
the election, the clients re-reading the slot map and the killed node rejoining as a
replica, with a wide margin for a loaded CI machine."""


async def post_until_acknowledged(author: Client, text: str, request_id: str) -> tuple[int, float]:
    """Retry on UNAVAILABLE with the same request id; (post id, when acknowledged)."""
    deadline = time.monotonic() + RECOVERY_BOUND
    request = pb.CreatePostRequest(text=text, request_id=request_id)
    while True:
        try:
            reply = await author.stub.CreatePost(request, metadata=author.md, timeout=5)
            return reply.post.post_id, time.monotonic()
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            assert time.monotonic() < deadline, f"post {request_id} never acknowledged"
            await asyncio.sleep(0.1)


async def test_acknowledged_posts_survive_the_fanout_masters_death(
    start_system: StartSystem, private_redis_cluster: RedisClusterNodes
) -> None:
    nodes = private_redis_cluster
    url = nodes.url
    # A job whose acknowledgement failed with the master is claimed again after the claim
    # idle (a worker's ack on the dead master fails; the job stays pending to it).
    system = await start_system(
        redis_url=url,
        replica_acks=1,
        replica_wait_ms=300,
        fanout_claim_idle=2.0,
        account={"redis_url": url},
    )
    author = await system.sign_up()
    reader = system.reader(9_000_003)
    await reader.follow(author.user_id)
    await reader.feed()  # active: fanout writes the reader's cache
    victim = nodes.master_of(JOBS_KEY)
    acknowledged: list[int] = []
    killed_at = 0.0
    back_at = 0.0
    for i in range(POSTS):
        if i == KILL_AFTER:
            victim.kill()
            killed_at = time.monotonic()
            # While the master is gone or has no replica, the post is refused, precisely.
            refused = author.stub.CreatePost(
                pb.CreatePostRequest(text=f"post {i}", request_id=f"req-{i}"),
                metadata=author.md,
                timeout=10,
            )
            details = await failure(refused)
            assert details.code == grpc.StatusCode.UNAVAILABLE
            victim.start()  # replaced, as in production: it rejoins as a replica
        post_id, at = await post_until_acknowledged(author, f"post {i}", f"req-{i}")
        acknowledged.append(post_id)
        if i == KILL_AFTER:
            back_at = at
    print(f"\nfeed failover: kill -> first post acknowledged again {back_at - killed_at:.2f} s")
    assert len(set(acknowledged)) == POSTS
    for post_id in acknowledged:
        await fanout_done(system, post_id, timeout=2 * RECOVERY_BOUND)
    shown = await reader.feed_ids()
    assert sorted(shown) == sorted(acknowledged)  # every acknowledged post, exactly once
