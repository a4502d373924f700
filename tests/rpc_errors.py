"""Reading a failed call in tests: its status code and rich details, unary or streaming."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from feedchat_client.errors import ErrorDetails, error_details


async def failure(call: Any) -> ErrorDetails:
    """Await a unary call (or drain a streaming one); it must fail: its error details."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if isinstance(call, grpc.aio.UnaryUnaryCall):
            await call
        else:
            async for _ in call:
                pass
    return await error_details(raised.value)
