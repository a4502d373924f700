"""The service directory: peers found through the registry, channels to the departed closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc

from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.registry import EtcdSession
from feedchat_runtime.server import ServiceHost
from tests.feedchat_runtime import demo_server


async def _host(make_config: Callable[..., Any], name: str) -> ServiceHost:
    host = ServiceHost(make_config(instance=name), "demo")
    await host.open()
    demo_server.build(host)
    await host.start()
    return host


async def test_calls_reach_registered_instances_and_departed_channels_close(
    make_config: Callable[..., Any],
) -> None:
    config = make_config()
    session = EtcdSession(config.etcd, config.etcd_prefix, ttl=2)
    await session.start()
    directory = ServiceDirectory(session, config, authority_from_config("", "", True), "test")
    hosts = [await _host(make_config, "a"), await _host(make_config, "b")]
    try:
        await (await directory.watch("demo")).wait_for(lambda m: len(m) == 2, timeout=5)
        for _ in range(2):  # round robin: both instances answer
            channel = await directory.channel("demo")
            echo = channel.stream_stream("/demo.Demo/Echo")()
            await echo.write(b"ping")
            assert await echo.read() == b"ping"
            await echo.done_writing()
        assert directory.open_addresses == {hosts[0].address, hosts[1].address}

        await hosts[0].stop()
        deadline = time.monotonic() + 5
        while hosts[0].address in directory.open_addresses:
            assert time.monotonic() < deadline, "channel to a departed instance stayed open"
            await asyncio.sleep(0.05)
        assert directory.open_addresses == {hosts[1].address}
        channel = await directory.channel("demo")
        assert channel.get_state() != grpc.ChannelConnectivity.SHUTDOWN
    finally:
        for host in hosts:
            await host.stop()
        await directory.close()
        await session.close()
