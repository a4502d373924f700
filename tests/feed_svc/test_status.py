"""GetFanoutStatus: who may read it, and what it shows while a fanout is stuck."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from feed_svc.fanout import FanoutSettings, FanoutWorker
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client.errors import error_details
from tests.feed_svc.conftest import StartSystem, System, fanout_done, service_metadata
from tests.metrics import sample, scrape


async def test_only_the_author_or_a_service_reads_a_posts_fanout(system: System) -> None:
    author, other = await system.sign_up(), await system.sign_up()
    await other.follow(author.user_id)
    post = await author.post("counted")
    await fanout_done(system, post.post_id)
    mine = await system.stub.GetFanoutStatus(
        pb.GetFanoutStatusRequest(post_id=post.post_id), metadata=author.md
    )
    assert (mine.state, mine.followers_total) == (pb.FANOUT_STATE_DONE, 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.GetFanoutStatus(
            pb.GetFanoutStatusRequest(post_id=post.post_id), metadata=other.md
        )
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_POST_AUTHOR")
    unknown = await system.stub.GetFanoutStatus(
        pb.GetFanoutStatusRequest(post_id=123), metadata=service_metadata()
    )
    assert unknown.state == pb.FANOUT_STATE_UNKNOWN


async def test_a_backlog_shows_before_any_worker_runs(start_system: StartSystem) -> None:
    system = await start_system(fanout_workers=0)
    author = await system.sign_up()
    for fan in range(300, 310):
        await system.reader(fan).follow(author.user_id)
    post = await author.post("nobody works the queue")
    status = await system.stub.GetFanoutStatus(
        pb.GetFanoutStatusRequest(post_id=post.post_id), metadata=service_metadata()
    )
    assert status.state == pb.FANOUT_STATE_RUNNING
    assert (status.followers_total, status.followers_done, status.followers_pending) == (10, 0, 10)
    assert status.queue_waiting_jobs == 1
    assert status.queue_pending_jobs == 0
    queue = await system.stub.GetFanoutStatus(
        pb.GetFanoutStatusRequest(), metadata=service_metadata()
    )
    assert (queue.state, queue.queue_waiting_jobs) == (pb.FANOUT_STATE_UNKNOWN, 1)


async def test_fanout_backlog_and_lag_are_exported_as_metrics(
    start_system: StartSystem,
) -> None:
    system = await start_system(fanout_workers=0)
    author = await system.sign_up()
    await system.reader(311).follow(author.user_id)
    await author.post("waits in the queue")
    await asyncio.sleep(0.05)  # the job's age when it is reported
    settings = FanoutSettings.from_config(system.config)
    await FanoutWorker(system.feed_app.store, settings, "probe").step()  # reports, then works
    # One scrape: the two gauges are set together, so they are read together.
    page = await scrape(system.feed_app.host.metrics_url)
    assert sample(page, "feedchat_fanout_queue_jobs") == 1
    assert (sample(page, "feedchat_fanout_queue_lag_seconds") or 0) >= 0.05
