"""The runtime's consumer-group worker: at least once, stalled entries claimed, a lost
group created again."""

from __future__ import annotations

from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.streams import ConsumerGroup, Fields, Handler, StreamWorker, WorkerSettings
from tests.waiting import wait_until

STREAM = "test:{jobs}"
QUICK = WorkerSettings(concurrency=4, read_block=0.05, claim_idle=0.3, claim_interval=0.1)


def _recorder(group: ConsumerGroup, done: list[bytes]) -> Handler:
    async def handle(entry_id: str, fields: Fields | None) -> None:
        if fields is not None:
            done.append(fields[b"n"])
        async with group.redis.pipeline(transaction=False) as pipe:
            group.queue_ack(pipe, entry_id)
            await pipe.execute()

    return handle


async def test_entries_a_dead_consumer_left_pending_are_claimed_and_done(
    redis: RedisClient,
) -> None:
    dead = ConsumerGroup(redis, STREAM, "workers", "dead")
    await dead.ensure()
    await dead.ensure()  # an existing group (BUSYGROUP) is fine
    for n in (b"1", b"2"):
        await redis.xadd(STREAM, {"n": n})
    assert len(await dead.read(10, 10)) == 2  # read, never acknowledged: the consumer died
    group = ConsumerGroup(redis, STREAM, "workers", "live")
    done: list[bytes] = []
    worker = StreamWorker(group, _recorder(group, done), QUICK, "test-worker")
    await worker.start()
    try:
        await wait_until(lambda: len(done) == 2, 10, "the claimed entries")
        assert sorted(done) == [b"1", b"2"]
        assert await redis.xlen(STREAM) == 0  # acknowledged entries leave the stream
    finally:
        await worker.stop(grace=1.0)


async def test_a_group_redis_lost_is_created_again(redis: RedisClient) -> None:
    group = ConsumerGroup(redis, STREAM, "workers", "live")
    done: list[bytes] = []
    worker = StreamWorker(group, _recorder(group, done), QUICK, "test-worker")
    await worker.start()
    try:
        await redis.xadd(STREAM, {"n": b"before"})
        await wait_until(lambda: done == [b"before"], 10, "the first entry")
        await redis.delete(STREAM)  # as after a restart without data
        await redis.xadd(STREAM, {"n": b"after"})
        await wait_until(lambda: done == [b"before", b"after"], 10, "the entry after the loss")
    finally:
        await worker.stop(grace=1.0)
