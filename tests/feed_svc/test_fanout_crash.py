"""At-least-once fanout: a worker that dies mid-job leaves its jobs to another worker,
and every follower still gets the post exactly once (and is counted once)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from feed_svc.fanout import FanoutSettings, FanoutWorker
from feed_svc.keys import GROUP, JOBS_KEY, feed_key
from feed_svc.store_queue import Job
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_runtime.replies import text
from tests.feed_svc.conftest import StartSystem, System, fanout_done
from tests.waiting import eventually


async def entries_of(system: System, user: int) -> list[str]:
    return [text(m) for m in await system.feed_app.redis.zrange(feed_key(user), 0, -1)]


async def followers(system: System, author: int, count: int, first: int) -> list[int]:
    fans = list(range(first, first + count))
    now = system.feed_app.feed.clock()
    for fan in fans:
        await system.feed_app.store.graph.follow(fan, author)
        await system.feed_app.store.timelines.touch_seen(fan, now)
    return fans


async def test_killed_worker_job_completes_once(start_system: StartSystem) -> None:
    system = await start_system(fanout_workers=0, fanout_claim_idle=0.3)
    settings = FanoutSettings.from_config(system.config)
    store = system.feed_app.store
    author = await system.sign_up()
    fans = await followers(system, author.user_id, 95, 9000)

    mid_job = asyncio.Event()
    batches_before_death: list[int] = []

    async def die_after_first_batch(job: Job, size: int) -> None:
        batches_before_death.append(size)
        mid_job.set()
        await asyncio.Event().wait()  # hang here until cancelled: never acknowledges

    doomed = FanoutWorker(store, settings, "doomed", on_batch=die_after_first_batch)
    doomed_task = asyncio.create_task(doomed.run())
    post = await author.post("survives a crash")
    await asyncio.wait_for(mid_job.wait(), 5)
    doomed_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doomed_task
    pending = await system.feed_app.redis.xpending(JOBS_KEY, GROUP)
    assert pending["pending"] >= 1  # the job it was writing is still unacknowledged
    written_early = [f for f in fans if await entries_of(system, f)]
    assert len(written_early) == batches_before_death[0] == settings.batch

    rescuer = FanoutWorker(store, settings, "rescuer")
    rescue_task = asyncio.create_task(rescuer.run())
    try:
        status = await fanout_done(system, post.post_id)
    finally:
        rescue_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rescue_task
    assert (status.followers_total, status.followers_done, status.followers_pending) == (95, 95, 0)
    member = f"{post.post_id:020d}:{author.user_id}"
    for fan in fans:
        assert await entries_of(system, fan) == [member]
    assert (await system.feed_app.redis.xpending(JOBS_KEY, GROUP))["pending"] == 0
    # the queue figures are queue-wide: when the post turned DONE another job of the post
    # (its alerts job, read by the doomed worker too) could still wait for its claim
    assert (await fanout_done(system, post.post_id)).queue_pending_jobs == 0


async def test_sigkilled_worker_process_job_is_claimed_and_finished(
    start_system: StartSystem, repo_root: Path
) -> None:
    system = await start_system(fanout_workers=0, fanout_claim_idle=0.5, fanout_chunk=400)
    author = await system.sign_up()
    fans = await followers(system, author.user_id, 1200, 20000)
    config = system.config
    argv = [
        sys.executable,
        "-m",
        "feed_svc.worker",
        "--redis-url",
        config.redis_url,
        "--postgres-url",
        config.postgres_url,
        "--etcd",
        config.etcd,
        "--dev",
        "--instance",
        "victim",
        "--fanout-workers",
        "1",
        "--fanout-chunk",
        "400",
        "--fanout-batch",
        "1",
        "--fanout-block",
        "0.2",
        "--fanout-claim-idle",
        "30",
        "--log-format",
        "text",
    ]
    victim = await asyncio.create_subprocess_exec(
        *argv,
        cwd=repo_root,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        post = await author.post("one follower per round trip: slow enough to kill")

        async def mid_job() -> bool:
            progress = await system.feed_app.store.queue.progress(post.post_id)
            written = await system.feed_app.redis.exists(*[feed_key(f) for f in fans])
            return "chunks" in progress and 0 < written < 1000 and "finished_ms" not in progress

        await eventually(mid_job, 20, "the worker process to be mid-job")
        victim.send_signal(signal.SIGKILL)
        await asyncio.wait_for(victim.wait(), 5)
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
    progress = await system.feed_app.store.queue.progress(post.post_id)
    assert "finished_ms" not in progress

    rescuer = FanoutWorker(
        system.feed_app.store, FanoutSettings.from_config(system.config), "rescuer"
    )
    rescue_task = asyncio.create_task(rescuer.run())
    try:
        status = await fanout_done(system, post.post_id, timeout=30)
    finally:
        rescue_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rescue_task
    assert (status.state, status.followers_total, status.followers_done) == (
        pb.FANOUT_STATE_DONE,
        1200,
        1200,
    )
    member = f"{post.post_id:020d}:{author.user_id}"
    pipe = system.feed_app.redis.pipeline(transaction=False)
    for fan in fans:
        pipe.zrange(feed_key(fan), 0, -1)
    assert all(found == [member.encode()] for found in await pipe.execute())


async def test_workers_recreate_a_lost_queue(system: System) -> None:
    author = await system.sign_up()
    fans = await followers(system, author.user_id, 5, 40000)
    await system.feed_app.redis.delete(JOBS_KEY)  # as after a Redis restart without data
    post = await author.post("after the queue was lost")
    status = await fanout_done(system, post.post_id)
    assert (status.followers_total, status.followers_done) == (5, 5)
    assert all([await entries_of(system, f) for f in fans])


async def test_dead_workers_names_leave_the_group(start_system: StartSystem) -> None:
    system = await start_system(fanout_workers=0, fanout_claim_idle=0.3, fanout_consumer_expiry=0.5)
    settings = FanoutSettings.from_config(system.config)
    store = system.feed_app.store
    author = await system.sign_up()
    await followers(system, author.user_id, 1, 50000)
    post = await author.post("worked by a worker that then dies")
    ghost = FanoutWorker(store, settings, "ghost")
    while not await ghost.step():  # it works the job (the group now knows its name)...
        pass
    assert (await fanout_done(system, post.post_id)).followers_done == 1  # ...then "dies"
    names = [c["name"] for c in await store.redis.xinfo_consumers(JOBS_KEY, GROUP)]
    assert names == [b"ghost"]
    survivor = FanoutWorker(store, settings, "survivor")
    task = asyncio.create_task(survivor.run())
    try:

        async def ghost_gone() -> bool:
            consumers = await store.redis.xinfo_consumers(JOBS_KEY, GROUP)
            return b"ghost" not in [c["name"] for c in consumers]

        await eventually(ghost_gone, 10, "the idle ghost consumer removed")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_slow_job_of_a_live_worker_is_not_claimed(start_system: StartSystem) -> None:
    system = await start_system(fanout_workers=0, fanout_claim_idle=0.3)
    settings = FanoutSettings.from_config(system.config)
    store = system.feed_app.store
    author = await system.sign_up()
    await followers(system, author.user_id, 40, 60000)  # 4 batches of 10
    started = asyncio.Event()

    async def slow_batches(job: Job, size: int) -> None:
        started.set()
        await asyncio.sleep(0.4)  # each batch outlasts the claim idle time: 1.6 s in all

    slow = FanoutWorker(store, settings, "slow", on_batch=slow_batches)
    other = FanoutWorker(store, settings, "other")
    tasks = [asyncio.create_task(slow.run())]
    try:
        post = await author.post("slow but alive")
        await asyncio.wait_for(started.wait(), 5)
        tasks.append(asyncio.create_task(other.run()))  # claims anything idle 0.3 s
        status = await fanout_done(system, post.post_id)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert (status.followers_total, status.followers_done) == (40, 40)
    assert (slow.jobs_done, other.jobs_done) == (1, 0)  # never claimed from the live worker
