"""StreamFeed resume never skips: items land out of id order (a celebrity's post at once, an
older ordinary post after its fanout), and a stream broken between such a pair resumes
with the resume token and nothing is missed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from feed_svc.fanout import FanoutSettings, FanoutWorker
from feed_svc.store_queue import Job
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat_client import Backoff, EtcdDiscovery, FeedchatClient
from feedchat_client.errors import STATUS_LOST_TO_A_SEND, error_details
from tests.feed_svc.conftest import Client, StartSystem, System
from tests.waiting import eventually

Req = pb.StreamFeedRequest


class ResumingReader:
    """A client doing what the proto asks: remember the newest post id and the last
    resume_token received, resubscribe with both, de-duplicate by post id."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.last = 0
        self.token = ""
        self.seen: list[int] = []
        self.call: Any = None
        self.truncated = False

    async def connect(self) -> None:
        self.call = self.client.stub.StreamFeed(metadata=self.client.md)
        await self.call.write(
            Req(subscribe=Req.Subscribe(resume_after_post_id=self.last, resume_token=self.token))
        )

    def drop(self) -> None:
        self.call.cancel()

    async def read_until(self, wanted: set[int], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not wanted <= set(self.seen):
                frame = await self.call.read()
                assert frame is not grpc.aio.EOF, "stream ended"
                if frame.resume_token:
                    self.token = frame.resume_token
                which = frame.WhichOneof("frame")
                if which == "subscribed":
                    self.truncated |= frame.subscribed.resume_truncated
                elif which == "item":
                    post_id = frame.item.post_id
                    if post_id not in self.seen:
                        self.seen.append(post_id)
                    self.last = max(self.last, post_id)


async def out_of_order_system(
    start_system: StartSystem,
    on_batch: Callable[[Job, int], Awaitable[None]] | None = None,
) -> tuple[System, Client, Client, Client, FanoutWorker]:
    """No fanout workers of its own (the test runs one step by step); a celebrity and an
    ordinary author, both followed by the reader."""
    system = await start_system(fanout_workers=0, celebrity_threshold=1)
    star, author, reader = [await system.sign_up() for _ in range(3)]
    await system.reader(9_000_001).follow(star.user_id)
    for followed in (star, author):
        await reader.follow(followed.user_id)
    await reader.feed()  # active: fanout writes the reader's cache
    await system.feed_app.feed.timeline.wait_rebuilds()
    await star.post("promoted by this post")  # two followers: over the threshold
    worker = FanoutWorker(
        system.feed_app.store,
        FanoutSettings.from_config(system.config),
        "stepper",
        on_batch=on_batch,
    )
    return system, star, author, reader, worker


async def land_all(worker: FanoutWorker) -> None:
    while await worker.step():
        pass


async def test_broken_between_an_out_of_order_pair_the_resume_misses_nothing(
    start_system: StartSystem,
) -> None:
    system, star, author, reader, worker = await out_of_order_system(start_system)
    await land_all(worker)
    client = ResumingReader(reader)
    await client.connect()
    expected: list[int] = []
    for round_ in range(24):
        older = await author.post(f"ordinary {round_}")  # fanout waits for the worker
        newer = await star.post(f"celebrity {round_}")  # lands at once
        assert older.post_id < newer.post_id
        expected += [older.post_id, newer.post_id]
        await client.read_until({newer.post_id})  # seen first: the newest id seen
        variant = round_ % 3
        if variant == 0:  # the older one lands while the client is away
            client.drop()
            await land_all(worker)
            await client.connect()
        elif variant == 1:  # it lands while connected; the client drops before reading it
            await land_all(worker)
            client.drop()
            await client.connect()
        else:  # it lands while the client resubscribes
            client.drop()
            landing = asyncio.create_task(land_all(worker))
            await client.connect()
            await landing
        await client.read_until({older.post_id})
    assert set(expected) <= set(client.seen)
    assert not client.truncated
    client.drop()


async def test_resume_sends_a_post_whose_fanout_is_still_running(
    start_system: StartSystem,
) -> None:
    written = asyncio.Event()
    release = asyncio.Event()

    async def hold_before_ack(job: Job, size: int) -> None:
        written.set()
        await release.wait()

    system, star, author, reader, worker = await out_of_order_system(
        start_system, on_batch=hold_before_ack
    )
    release.set()
    await land_all(worker)
    client = ResumingReader(reader)
    await client.connect()
    for round_ in range(8):
        written.clear()
        release.clear()
        older = await author.post(f"ordinary {round_}")
        newer = await star.post(f"celebrity {round_}")
        await client.read_until({newer.post_id})
        client.drop()
        stepping = asyncio.create_task(worker.step())
        await asyncio.wait_for(written.wait(), 5)  # in the reader's cache, not acknowledged
        await client.connect()
        try:
            await client.read_until({older.post_id})
        finally:
            release.set()
            await stepping
    assert not client.truncated
    client.drop()


async def test_every_frame_carries_a_token_and_quiet_streams_get_checkpoints(
    start_system: StartSystem,
) -> None:
    system = await start_system(inactive_after=0.4)  # keep-alive every 0.1 s
    author, reader = await system.sign_up(), await system.sign_up()
    await reader.follow(author.user_id)
    await reader.feed()
    call = reader.stub.StreamFeed(metadata=reader.md)
    await call.write(Req(subscribe=Req.Subscribe()))
    first = await asyncio.wait_for(call.read(), 5)
    assert first.WhichOneof("frame") == "subscribed" and first.resume_token.startswith("v1:")
    post = await author.post("moves the log")
    item = await asyncio.wait_for(call.read(), 5)
    assert item.item.post_id == post.post_id and item.resume_token
    await system.stub.CreatePost(
        pb.CreatePostRequest(text="not followed"), metadata=(await system.sign_up()).md
    )  # lands elsewhere

    async def checkpoint() -> bool:
        frame = await asyncio.wait_for(call.read(), 5)
        return frame.WhichOneof("frame") == "checkpoint" and bool(frame.resume_token)

    await eventually(checkpoint, 5, "a checkpoint frame")
    call.cancel()


@pytest.mark.parametrize(
    "token",
    [
        "v2:1-0",
        "v1:abc",
        "v1:1-0-0",
        "v1:" + "9" * 21 + "-0",
        "v1:18446744073709551616-0",
        "x" * 100,
    ],
)
async def test_a_resume_token_the_server_did_not_issue_is_invalid(
    system: System,
    token: str,
) -> None:
    reader = await system.sign_up()
    call = reader.stub.StreamFeed(metadata=reader.md)
    await call.write(Req(subscribe=Req.Subscribe(resume_after_post_id=5, resume_token=token)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 5)
    details = await error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "RESUME_TOKEN_INVALID",
    )
    with contextlib.suppress(Exception):
        call.cancel()


async def test_a_token_older_than_the_resume_window_says_truncated(system: System) -> None:
    reader = await system.sign_up()
    call = reader.stub.StreamFeed(metadata=reader.md)
    await call.write(Req(subscribe=Req.Subscribe(resume_after_post_id=5, resume_token="v1:1000-0")))
    frame = await asyncio.wait_for(call.read(), 5)
    assert frame.WhichOneof("frame") == "subscribed"
    assert frame.subscribed.resume_truncated
    call.cancel()


async def test_python_client_live_feed_resumes_across_cuts_without_skipping(
    start_system: StartSystem,
) -> None:
    system = await start_system(fanout_workers=0, celebrity_threshold=1)
    star, author = await system.sign_up(), await system.sign_up()
    await system.reader(9_000_002).follow(star.user_id)
    client = FeedchatClient(EtcdDiscovery(system.config.etcd, system.config.etcd_prefix))
    try:
        await client.session.sign_up("resumer", "correct horse battery")
        for followed in (star, author):
            await client.feed.follow(followed.user_id)
        await client.feed.page()
        await system.feed_app.feed.timeline.wait_rebuilds()
        await star.post("promoted by this post")
        worker = FanoutWorker(
            system.feed_app.store, FanoutSettings.from_config(system.config), "stepper"
        )
        await land_all(worker)
        subscribed = asyncio.Event()
        cuts: list[str] = []

        def on_state(state: str, detail: str) -> None:
            if state == "live":
                subscribed.set()
            elif state == "reconnecting":
                cuts.append(detail)

        live = client.feed.live(backoff=Backoff(base=0.02, cap=0.1), on_state=on_state)
        got: list[int] = []
        pending = asyncio.ensure_future(anext(live))
        await asyncio.wait_for(subscribed.wait(), 10)

        async def until(post_id: int) -> None:
            nonlocal pending
            while post_id not in got:
                got.append((await asyncio.wait_for(pending, 10)).post_id)
                pending = asyncio.ensure_future(anext(live))

        for round_ in range(6):
            older = await author.post(f"ordinary {round_}")
            newer = await star.post(f"celebrity {round_}")
            await until(newer.post_id)
            # Cut every open stream: the server loses its pub/sub connection (STREAM_RESET).
            await system.feed_app.redis.client_kill_filter(_type="pubsub")
            await land_all(worker)
            await until(older.post_id)
        assert len(got) == len(set(got)) == 12
        # Each cut is the server's reset, unless an ack crossed it (gRPC then loses it).
        assert len(cuts) >= 6
        assert all("STREAM_RESET" in c or STATUS_LOST_TO_A_SEND in c for c in cuts), cuts
        assert any("STREAM_RESET" in c for c in cuts)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await live.aclose()
    finally:
        await client.close()


async def test_a_reset_reaches_clients_whether_or_not_they_are_sending(system: System) -> None:
    # A reset must end every stream with its status at once: a stream whose client sends
    # nothing (the server waits for its next frame) as well as one whose client acks.
    reader = await system.sign_up()
    for round_ in range(6):
        await asyncio.sleep(1.0)  # the server back on pub/sub (reopen after 0.5 s, gap reset)
        calls = [reader.stub.StreamFeed(metadata=reader.md) for _ in range(2)]
        for call in calls:
            await call.write(Req(subscribe=Req.Subscribe()))
            frame = await asyncio.wait_for(call.read(), 5)
            assert frame.WhichOneof("frame") == "subscribed"
        await calls[1].write(Req(ack=Req.Ack(post_id=round_ + 1)))
        await system.feed_app.redis.client_kill_filter(_type="pubsub")
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                while True:  # checkpoints may come first
                    await asyncio.wait_for(call.read(), 5)
            details = await error_details(caught.value)
            # INTERNAL: the ack crossed the stream's end and gRPC lost the status (#36066).
            assert details.reason == "STREAM_RESET" or details.code == grpc.StatusCode.INTERNAL
