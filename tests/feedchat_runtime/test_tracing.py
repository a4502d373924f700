"""With --trace-exporter on, one post is one trace across service processes: feed_svc's
CreatePost, account_svc's GetUsers it calls, the fanout job it queues, and notify_svc's
work on the post alert the job writes."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedchat_local.embedded import free_port
from feedchat_runtime.config import ServiceConfig
from tests.grpcurl import call, json_objects
from tests.waiting import wait_until

FEED = "feedchat.feed.v1.FeedService"


async def test_a_post_is_one_trace_across_feed_account_and_notify(
    make_config: Callable[..., Any], repo_root: Path, tmp_path: Path
) -> None:
    config = make_config(ServiceConfig)
    ports = {"account": free_port(), "feed": free_port(), "notify": free_port()}
    extra = {"feed": ["--author-cache-ttl", "0"], "account": [], "notify": []}
    processes = {}
    for service, port in ports.items():
        out = open(tmp_path / f"{service}.out", "wb")  # noqa: ASYNC230 - handed to the child
        processes[service] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"{service}_svc",
            "--port",
            str(port),
            "--etcd",
            config.etcd,
            "--etcd-prefix",
            config.etcd_prefix,
            "--redis-url",
            config.redis_url,
            "--postgres-url",
            config.postgres_url,
            "--dev",
            "--grace",
            "1",
            *extra[service],
            cwd=repo_root,
            stdout=out,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "FEEDCHAT_TRACE_EXPORTER": "console"},
        )
        out.close()
    address = {s: f"127.0.0.1:{p}" for s, p in ports.items()}
    try:

        async def serving(where: str) -> bool:
            reply = await call(where, "grpc.health.v1.Health/Check")
            return reply.code == 0 and reply.json() == {"status": "SERVING"}

        for where in address.values():
            await wait_until(functools.partial(serving, where), timeout=30, what=f"{where} up")
        users = {}
        for name in ("tracy", "fan"):
            signed = await call(
                address["account"],
                "feedchat.account.v1.AccountService/SignUp",
                {"username": name, "password": "correct horse battery"},
            )
            users[name] = signed.json()
        fan, tracy = str(users["fan"]["access_token"]), str(users["tracy"]["access_token"])
        author = users["tracy"]["user_id"]
        for method in ("Follow", "SetPostAlerts"):
            body = (
                {"user_id": author}
                if method == "Follow"
                else {"author_id": author, "enabled": True}
            )
            done = await call(address["feed"], f"{FEED}/{method}", body, fan)
            assert done.code == 0, done.err
        posted = await call(address["feed"], f"{FEED}/CreatePost", {"text": "traced"}, tracy)
        assert posted.code == 0, posted.err

        async def alerted() -> bool:
            listed = await call(
                address["notify"], "feedchat.notify.v1.NotifyService/ListNotifications", {}, fan
            )
            return bool(listed.json().get("notifications"))

        await wait_until(alerted, timeout=30, what="the post alert in notify_svc")
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)  # flushes the buffered spans
        for process in processes.values():
            await asyncio.wait_for(process.wait(), 20)

    spans = {s: json_objects((tmp_path / f"{s}.out").read_text()) for s in ports}
    [create] = [s for s in spans["feed"] if s["name"] == f"{FEED}/CreatePost"]
    trace_id = create["context"]["trace_id"]

    def in_trace(service: str) -> list[str]:
        return sorted(s["name"] for s in spans[service] if s["context"]["trace_id"] == trace_id)

    assert "fanout alerts" in in_trace("feed")
    assert "feedchat.account.v1.AccountService/GetUsers" in in_trace("account")
    assert in_trace("notify") == ["notify job"]
    services = {
        s["resource"]["attributes"]["service.name"]
        for found in spans.values()
        for s in found
        if s["context"]["trace_id"] == trace_id
    }
    assert services == {"feed", "account", "notify"}
