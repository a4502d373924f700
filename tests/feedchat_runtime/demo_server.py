"""A minimal feedchat server for the runtime's tests, runnable in-process or as a process.

It serves ``/demo.Demo/Echo`` (bidirectional, raw bytes: each request is echoed back; the
stream ends cleanly when the server starts draining) and ``/demo.Demo/Fail`` (unary: raises
the error named in the request), through the real ServiceHost, guard and registry.

    python tests/feedchat_runtime/demo_server.py --etcd H:P --etcd-prefix P --dev
prints ``READY <address>`` once registered.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence

import grpc
import redis.exceptions

from feedchat_runtime import errors
from feedchat_runtime.config import ServiceConfig, load_config
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.logs import setup_logging
from feedchat_runtime.server import ServiceHost

FAILURES: dict[bytes, Exception] = {
    b"invalid": errors.InvalidArgument.field("text", "must not be empty", reason="TEXT_EMPTY"),
    b"limited": errors.ResourceExhausted("slow down", retry_after=2.5),
    b"redirect": errors.FailedPrecondition(
        "wrong server", reason="WRONG_SERVER", metadata={"owner_address": "10.0.0.1:1"}
    ),
    b"redis": redis.exceptions.ConnectionError("connection refused"),
    b"bug": KeyError("secret internal detail"),
}


def _identity(data: bytes) -> bytes:
    return data


def demo_services(host: ServiceHost) -> grpc.GenericRpcHandler:
    async def echo(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        pending: asyncio.Task[bytes] | None = None
        draining = asyncio.create_task(host.draining.wait())
        try:
            iterator = aiter(requests)
            while True:
                pending = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait(
                    {pending, draining}, return_when=asyncio.FIRST_COMPLETED
                )
                if pending in done:
                    try:
                        yield pending.result()
                    except StopAsyncIteration:
                        return
                else:
                    yield b"bye"  # drain: tell the client, then end the stream cleanly
                    return
        finally:
            draining.cancel()
            if pending is not None and not pending.done():
                pending.cancel()

    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise FAILURES[request]

    return grpc.method_handlers_generic_handler(
        "demo.Demo",
        {
            "Echo": grpc.stream_stream_rpc_method_handler(echo, _identity, _identity),
            "Fail": grpc.unary_unary_rpc_method_handler(fail, _identity, _identity),
        },
    )


def build(host: ServiceHost, public: bool = True) -> None:
    def add(server: grpc.aio.Server) -> Sequence[str]:
        server.add_generic_rpc_handlers([demo_services(host)])
        return []

    methods = {"/demo.Demo/Echo", "/demo.Demo/Fail"} if public else set()
    host.build(add, AuthPolicy(public=methods))


async def _serve(config: ServiceConfig) -> None:
    host = ServiceHost(config, "demo")
    await host.open()
    build(host)
    await host.start()
    print(f"READY {host.address}", flush=True)
    await host.run()  # start() again is a no-op; waits for SIGTERM/SIGINT, then stops


def main(argv: Sequence[str] | None = None) -> None:
    config = load_config(ServiceConfig, argv)
    setup_logging("demo", config.log_level, "text")
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main(sys.argv[1:])
