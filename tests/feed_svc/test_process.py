"""feed_svc as `feedchat up` runs it: `python -m feed_svc` with the shared flags, found in
the registry, driven with grpcurl (reflection), stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feed_svc.config import FeedConfig
from feedchat_local.embedded import free_port
from feedchat_runtime.config import ConfigError, load_config
from feedchat_runtime.registry import EtcdSession, list_members
from tests.feed_svc.conftest import System, user_metadata
from tests.grpcurl import call

SERVICE = "feedchat.feed.v1.FeedService"


async def test_module_runs_with_feedchat_up_flags_and_answers_grpcurl(
    system: System, make_config: Callable[..., Any], repo_root: Path
) -> None:
    config = make_config(FeedConfig)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "feed_svc",
        "--port",
        str(port),
        "--instance",
        "feed-7",
        "--etcd",
        config.etcd,
        "--etcd-prefix",
        config.etcd_prefix,
        "--redis-url",
        config.redis_url,
        "--postgres-url",
        config.postgres_url,
        "--dev",
        "--lease-ttl",
        "2",
        "--grace",
        "1",
    ]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=repo_root,
        env=dict(os.environ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    session = EtcdSession(config.etcd, config.etcd_prefix)
    await session.start()
    try:
        for _ in range(200):
            members = await list_members(session.client, config.etcd_prefix, "feed")
            if any(m.instance == "feed-7" for m in members):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("feed-7 never registered")
        address = f"127.0.0.1:{port}"
        author = await system.sign_up("grpcurly")
        token = user_metadata(author.user_id)[0][1].removeprefix("Bearer ")
        post = (
            await call(address, f"{SERVICE}/CreatePost", {"text": "via grpcurl"}, token)
        ).json()["post"]
        assert isinstance(post, dict) and post["text"] == "via grpcurl"
        bad = await call(address, f"{SERVICE}/GetFeed", {"page_token": "nope"}, token)
        assert bad.code != 0 and "InvalidArgument" in bad.err
        anonymous = await call(address, f"{SERVICE}/GetFeed", {})
        assert anonymous.code != 0 and "Unauthenticated" in anonymous.err
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert not [
            m
            for m in await list_members(session.client, config.etcd_prefix, "feed")
            if m.instance == "feed-7"
        ]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await session.close()


def test_config_refuses_settings_that_cannot_work() -> None:
    for bad in (
        {"post_rate": 0.0},
        {"feed_cache_size": 5},
        {"fanout_batch": 0},
        {"fanout_batch": 2000, "fanout_chunk": 1000},
        {"celebrity_threshold": 0},
        {"stream_queue": 1},
        {"inactive_after": 0.0},
    ):
        try:
            load_config(FeedConfig, [], env={}, dev=True, **bad)
        except ConfigError:
            continue
        raise AssertionError(f"{bad} was accepted")
    config = load_config(
        FeedConfig, ["--fanout-workers", "3", "--dev"], env={"FEEDCHAT_FEED_CACHE_SIZE": "500"}
    )
    assert (config.fanout_workers, config.feed_cache_size) == (3, 500)
