"""With --trace-exporter on, one request is one trace across service processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedchat_runtime.config import ServiceConfig
from feedchat_runtime.embedded import free_port
from tests.grpcurl import call, json_objects
from tests.waiting import wait_until


async def test_a_post_is_one_trace_across_feed_and_account(
    make_config: Callable[..., Any], repo_root: Path, tmp_path: Path
) -> None:
    config = make_config(ServiceConfig)
    ports = {"account": free_port(), "feed": free_port()}
    processes = {}
    for service, port in ports.items():
        out = open(tmp_path / f"{service}.out", "wb")  # noqa: ASYNC230 - handed to the child
        processes[service] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"{service}_svc", "--port", str(port),
            "--etcd", config.etcd, "--etcd-prefix", config.etcd_prefix,
            "--redis-url", config.redis_url, "--postgres-url", config.postgres_url,
            "--dev", "--grace", "1",
            cwd=repo_root, stdout=out, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "FEEDCHAT_TRACE_EXPORTER": "console"},
        )
        out.close()
    try:
        account, feed = (f"127.0.0.1:{ports[s]}" for s in ("account", "feed"))

        async def serving(address: str) -> bool:
            reply = await call(address, "grpc.health.v1.Health/Check")
            return reply.code == 0 and reply.json() == {"status": "SERVING"}

        for address in (account, feed):
            await wait_until(lambda a=address: serving(a), timeout=30, what=f"{address} up")
        signed = await call(account, "feedchat.account.v1.AccountService/SignUp",
                            {"username": "tracy", "password": "correct horse battery"})
        token = signed.json()["access_token"]
        posted = await call(feed, "feedchat.feed.v1.FeedService/CreatePost",
                            {"text": "traced"}, str(token))
        assert posted.code == 0, posted.err
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)  # flushes the buffered spans
        for process in processes.values():
            await asyncio.wait_for(process.wait(), 20)

    by_service = {s: json_objects((tmp_path / f"{s}.out").read_text()) for s in ports}
    [create] = [s for s in by_service["feed"]
                if s["name"] == "feedchat.feed.v1.FeedService/CreatePost"]
    trace_id = create["context"]["trace_id"]
    assert create["resource"]["attributes"]["service.name"] == "feed"
    in_trace = [s for s in by_service["account"] if s["context"]["trace_id"] == trace_id]
    assert [s["name"] for s in in_trace] == ["feedchat.account.v1.AccountService/GetUsers"]
    assert in_trace[0]["kind"] == "SpanKind.SERVER"
    assert in_trace[0]["resource"]["attributes"]["service.name"] == "account"
