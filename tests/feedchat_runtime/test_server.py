"""The server bootstrap: registration, health, reflection, errors, graceful shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedchat_client.errors import error_details
from feedchat_runtime.registry import EtcdSession, list_members
from feedchat_runtime.server import ServiceHost
from tests.feedchat_runtime import demo_server
from tests.grpcurl import call, grpcurl


async def _started(make_config: Callable[..., Any], **overrides: Any) -> ServiceHost:
    host = ServiceHost(make_config(**overrides), "demo")
    await host.open()
    demo_server.build(host)
    await host.start()
    return host


async def _members(config: Any) -> list[tuple[str, str]]:
    session = EtcdSession(config.etcd, config.etcd_prefix)
    try:
        members = await list_members(session.client, config.etcd_prefix, "demo")
        return [(m.instance, m.address) for m in members]
    finally:
        await session.client.close()


async def test_started_host_is_registered_and_serving(make_config: Callable[..., Any]) -> None:
    host = await _started(make_config, instance="solo")
    try:
        assert await _members(host.config) == [("solo", host.address)]
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await host.stop()
    assert await _members(host.config) == []


async def test_graceful_shutdown_drains_open_stream(make_config: Callable[..., Any]) -> None:
    host = await _started(make_config, grace=5.0)
    channel = grpc.aio.insecure_channel(host.address)
    try:
        call = channel.stream_stream("/demo.Demo/Echo")()
        await call.write(b"hello")
        assert await call.read() == b"hello"
        stopping = asyncio.create_task(host.stop())
        # The open stream is told goodbye and ends with OK, not a cancellation.
        assert await call.read() == b"bye"
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        await stopping
        assert await _members(host.config) == []
    finally:
        await channel.close()


async def test_shutdown_marks_not_serving_before_stopping(make_config: Callable[..., Any]) -> None:
    host = await _started(make_config, grace=3.0)
    channel = grpc.aio.insecure_channel(host.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stream = channel.stream_stream("/demo.Demo/Echo")()
        await stream.write(b"x")
        await stream.read()
        stopping = asyncio.create_task(host.stop())
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
    finally:
        await channel.close()


@pytest.mark.parametrize(
    ("failure", "code", "reason"),
    [
        (b"invalid", grpc.StatusCode.INVALID_ARGUMENT, "TEXT_EMPTY"),
        (b"limited", grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        (b"redirect", grpc.StatusCode.FAILED_PRECONDITION, "WRONG_SERVER"),
        (b"redis", grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE"),
    ],
)
async def test_domain_errors_become_rich_statuses(
    make_config: Callable[..., Any], failure: bytes, code: grpc.StatusCode, reason: str
) -> None:
    host = await _started(make_config)
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary("/demo.Demo/Fail")(failure)
        details = await error_details(caught.value)
        assert details.code == code
        assert details.reason == reason
        if failure == b"limited":
            assert details.retry_after == 2.5
        if failure == b"invalid":
            assert details.field_violations == [("text", "must not be empty")]
        if failure == b"redirect":
            assert details.metadata == {"owner_address": "10.0.0.1:1"}
    finally:
        await host.stop()


async def test_unexpected_error_is_internal_without_leaking(
    make_config: Callable[..., Any],
) -> None:
    host = await _started(make_config)
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary("/demo.Demo/Fail")(b"bug")
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert caught.value.details() == "internal error"
    finally:
        await host.stop()


async def test_grpcurl_lists_by_reflection_and_checks_health(
    make_config: Callable[..., Any],
) -> None:
    host = await _started(make_config)
    try:
        listed = await grpcurl(host.address, "list")
        assert listed.code == 0, listed.err
        assert "grpc.health.v1.Health" in listed.out.split()
        described = await grpcurl(host.address, "describe", "grpc.health.v1.Health")
        assert "rpc Check" in described.out, described.err
        health = await call(host.address, "grpc.health.v1.Health/Check")
        assert health.json() == {"status": "SERVING"}
    finally:
        await host.stop()
