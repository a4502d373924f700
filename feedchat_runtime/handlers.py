"""Wrapping a gRPC method handler: the one way the server interceptors put code around a
call, whatever the call's kind.

grpc.aio hands an interceptor a ``RpcMethodHandler`` of one of four kinds, and a
streaming-response handler is either an async generator or a coroutine that writes with
``context.write``. :func:`wrap_handler` returns a handler of the same kind whose behaviour
runs inside ``around(request, context, streaming)``, an async context manager: it may
refuse the call (raise before yielding), observe or translate what the handler raises,
and clean up when the call ends.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Around = Callable[[Any, grpc.aio.ServicerContext, bool], AbstractAsyncContextManager[None]]
"""``around(request, context, streaming)``: what runs around one call."""


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    around: Around,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour inside ``around`` (and, if given, another request
    deserializer)."""
    deserializer = request_deserializer or handler.request_deserializer
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(request, context, False):
                return await inner(request, context)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    inner_stream = handler.unary_stream or handler.stream_stream
    behavior: Any
    if inspect.isasyncgenfunction(inner_stream):

        async def yielding(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(request, context, True):
                async for item in inner_stream(request, context):
                    yield item

        behavior = yielding
    else:

        async def writing(request: Any, context: grpc.aio.ServicerContext) -> None:
            async with around(request, context, True):
                await inner_stream(request, context)

        behavior = writing

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(
        behavior,
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that wraps every method's handler (:meth:`wrap` says how)."""

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED itself
            return None
        return self.wrap(handler_call_details.method, handler)
