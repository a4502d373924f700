"""End to end: a post alert written by feed_svc reaches the follower's webhook through a
real notify_svc worker (in process, same Redis and etcd)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from feedchat.feed.v1 import feed_pb2 as pb
from notify_svc.app import NotifyApp
from tests.feed_svc.conftest import System
from tests.notify_svc.conftest import (  # noqa: F401 - fixtures used by name
    StubFor,
    channel_to,
    notify_config,
    receiver,
    register_webhook,
    start_notify,
)
from tests.notify_svc.receiver import Receiver
from tests.waiting import wait_until


async def test_post_alert_reaches_the_opted_in_followers_webhook(
    system: System,
    start_notify: Callable[..., Awaitable[NotifyApp]],  # noqa: F811
    channel_to: StubFor,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    notify = channel_to(await start_notify())
    author, fan, quiet = await system.sign_up(), await system.sign_up(), await system.sign_up()
    await register_webhook(notify, fan.user_id, receiver.url, device_id="fan-phone")
    await register_webhook(notify, quiet.user_id, receiver.url, device_id="quiet-phone")
    await fan.follow(author.user_id)
    await quiet.follow(author.user_id)
    await fan.stub.SetPostAlerts(
        pb.SetPostAlertsRequest(author_id=author.user_id, enabled=True), metadata=fan.md
    )
    post = await author.post("a post worth an alert")

    def pushes() -> list[dict[str, object]]:
        return [
            r.json()
            for r in receiver.delivered
            if r.json()["notification"]["id"] == str(post.post_id)
        ]

    (push,) = await wait_until(pushes)
    assert push["user_id"] == str(fan.user_id)
    assert push["device_id"] == "fan-phone"
    note = push["notification"]
    assert isinstance(note, dict)
    assert (note["kind"], note["sender_id"], note["channel_id"], note["preview"]) == (
        "feed_post",
        str(author.user_id),
        str(author.user_id),
        "a post worth an alert",
    )
