"""Every server serves Prometheus metrics at the URL it registers in etcd."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from feedchat_runtime.registry import EtcdSession, list_members
from feedchat_runtime.server import ServiceHost
from tests.feedchat_runtime import demo_server
from tests.metrics import sample, scrape
from tests.waiting import wait_until


async def test_registered_metrics_url_counts_rpcs_by_code_and_open_streams(
    make_config: Callable[..., Any],
) -> None:
    host = ServiceHost(make_config(instance="scraped"), "demo")
    await host.open()
    demo_server.build(host)
    await host.start()
    try:
        session = EtcdSession(host.config.etcd, host.config.etcd_prefix)
        try:
            [member] = await list_members(session.client, host.config.etcd_prefix, "demo")
        finally:
            await session.client.close()
        assert member.metrics == host.metrics_url
        assert member.metrics.startswith("http://127.0.0.1:")
        assert member.metrics.endswith("/metrics")

        before = await scrape(member.metrics)
        method = "/demo.Demo/Fail"
        invalid_before = (
            sample(before, "feedchat_rpc_requests_total", method=method, code="INVALID_ARGUMENT")
            or 0.0
        )
        async with grpc.aio.insecure_channel(host.address) as channel:
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError):
                    await channel.unary_unary(method)(b"invalid")
            stream = channel.stream_stream("/demo.Demo/Echo")()
            await stream.write(b"hi")
            assert await stream.read() == b"hi"
            during = await scrape(member.metrics)
            assert sample(during, "feedchat_open_streams", method="/demo.Demo/Echo") == 1.0
            await stream.done_writing()
            while await stream.read() != grpc.aio.EOF:
                pass

        after = await scrape(member.metrics)
        assert (
            sample(after, "feedchat_rpc_requests_total", method=method, code="INVALID_ARGUMENT")
            == invalid_before + 3
        )
        assert (sample(after, "feedchat_rpc_duration_seconds_count", method=method) or 0) >= 3
        assert 'feedchat_rpc_duration_seconds_bucket{le="0.005",method="/demo.Demo/Fail"}' in after

        async def stream_closed() -> str | None:
            text = await scrape(member.metrics)
            gauge = sample(text, "feedchat_open_streams", method="/demo.Demo/Echo")
            return text if gauge == 0.0 else None

        after = await wait_until(stream_closed, what="the Echo stream to be counted closed")
        assert sample(after, "feedchat_rpc_requests_total", method="/demo.Demo/Echo", code="OK")
        assert sample(after, "feedchat_dependency_up", dependency="etcd") is not None
    finally:
        await host.stop()
