"""A user may hold at most --max-streams-per-user Connect streams; one more is refused
with RESOURCE_EXHAUSTED TOO_MANY_STREAMS while other users connect as usual."""

from __future__ import annotations

import grpc

from feedchat_client.errors import error_details
from tests.chat_svc.chatkit import OpenDevice, StartCluster
from tests.waiting import wait_until


async def test_one_stream_past_the_bound_is_refused_and_others_are_unaffected(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    (app,) = await chat_cluster(1, max_streams_per_user=2)
    first = await devices(1, app.address, device_id="a")
    await devices(1, app.address, device_id="b")
    third = await devices(1, app.address, device_id="c", synced=False)
    await wait_until(lambda: third.ended, what="the third stream refused")
    assert third.error is not None
    details = await error_details(third.error)
    assert (details.code, details.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS",
    )
    assert details.metadata["limit"] == "2"
    assert (await devices(2, app.address)).synced  # another user is unaffected
    await first.close()  # a closed stream frees its slot (once the server sees it end)

    async def reopened() -> bool:
        device = await devices(1, app.address, device_id="d", synced=False)
        await wait_until(lambda: device.synced or device.ended, what="an answer")
        if device.synced:
            return True
        await device.close()
        return False

    await wait_until(reopened, what="a stream in the freed slot")
