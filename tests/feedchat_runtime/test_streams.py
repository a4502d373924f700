"""The runtime's consumer-group worker: at least once, stalled entries claimed, only owned
entries touched, dead consumers' names forgotten (none of a wiped stream), a lost group
created again, a round by hand."""

from __future__ import annotations

from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from feedchat_runtime.streams import ConsumerGroup, Fields, Handler, StreamWorker, WorkerSettings
from tests.waiting import wait_until

STREAM = "test:{jobs}"
QUICK = WorkerSettings(concurrency=4, read_block=0.05, claim_idle=0.3, claim_interval=0.1)


async def _emptied(redis: RedisClient) -> bool:
    return await redis.xlen(STREAM) == 0


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
        # Acknowledged entries leave the stream (the handler records before it acks).
        await wait_until(lambda: _emptied(redis), 5, "the acknowledged entries deleted")
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


async def test_touch_keeps_only_the_entries_the_consumer_still_owns(redis: RedisClient) -> None:
    mine = ConsumerGroup(redis, STREAM, "workers", "mine")
    other = ConsumerGroup(redis, STREAM, "workers", "other")
    await mine.ensure()
    kept, taken = [text(await redis.xadd(STREAM, {"n": n})) for n in (b"1", b"2")]
    await mine.read(10, 10)
    await redis.xclaim(STREAM, "workers", "other", 0, [taken], justid=True)  # claimed away
    assert await mine.touch([kept, taken]) == {kept}
    assert await other.touch([kept]) == set()


async def test_forgetting_consumers_of_a_wiped_stream_finds_none(redis: RedisClient) -> None:
    live = ConsumerGroup(redis, STREAM, "workers", "live")
    await live.ensure()
    entry_id = text(await redis.xadd(STREAM, {"n": b"1"}))
    assert await ConsumerGroup(redis, STREAM, "workers", "dead").read(1, 10)
    await redis.xack(STREAM, "workers", entry_id)  # done, then the consumer died
    assert await live.forget_idle(0) == ["dead"]
    await redis.flushall()  # Redis lost everything: no stream, no group, no consumers
    assert await live.forget_idle(0) == []


async def test_a_step_claims_reads_and_works_entries_by_hand(redis: RedisClient) -> None:
    group = ConsumerGroup(redis, STREAM, "workers", "stepper")
    done: list[bytes] = []
    worker = StreamWorker(group, _recorder(group, done), QUICK, "test-worker")
    assert await worker.step() == 0  # the sweep created the group; nothing to read
    await redis.xadd(STREAM, {"n": b"1"})
    assert (await worker.step(), done) == (1, [b"1"])
    await redis.flushall()
    assert await worker.step() == 0  # a wiped stream: the sweep creates the group again
