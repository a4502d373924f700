"""A user may hold at most --max-streams-per-user StreamFeed calls on a feed server; one
more is refused with RESOURCE_EXHAUSTED TOO_MANY_STREAMS, other users are unaffected."""

from __future__ import annotations

import grpc

from tests.feed_svc.conftest import StartSystem
from tests.feed_svc.test_stream import open_stream, subscribe
from tests.rpc_errors import failure
from tests.waiting import wait_until


async def test_one_stream_past_the_bound_is_refused_and_others_are_unaffected(
    start_system: StartSystem,
) -> None:
    system = await start_system(max_streams_per_user=2)
    reader, other = system.reader(5), system.reader(6)
    first, _, _ = await open_stream(reader)
    await open_stream(reader)
    # frames from an iterator: the server may refuse before the client has written one
    details = await failure(reader.stub.StreamFeed(iter([subscribe()]), metadata=reader.md))
    assert (details.code, details.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS",
    )
    assert details.metadata["limit"] == "2"
    await open_stream(other)  # another user is unaffected
    first.cancel()  # a closed stream frees its slot (once the server sees it end)

    async def reopened() -> bool:
        try:
            await open_stream(reader)
        except grpc.aio.AioRpcError:
            return False
        return True

    await wait_until(reopened, what="a stream in the freed slot")
