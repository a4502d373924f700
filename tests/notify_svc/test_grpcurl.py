"""The docs' grpcurl recipes work against a real notify_svc (reflection, JSON, errors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from notify_svc.app import NotifyApp
from tests.grpcurl import call
from tests.notify_svc.conftest import AUTHORITY
from tests.notify_svc.receiver import Receiver

SERVICE = "feedchat.notify.v1.NotifyService"


async def test_grpcurl_register_list_and_refused_url(
    start_notify: Callable[..., Awaitable[NotifyApp]], receiver: Receiver
) -> None:
    app = await start_notify(worker=False)
    token = AUTHORITY.issue_access(42).token
    address = app.host.address
    body = {"device_id": "phone", "kind": "DEVICE_KIND_WEBHOOK", "webhook_url": receiver.url}
    registered = await call(address, f"{SERVICE}/RegisterDevice", body, token)
    device = registered.json()["device"]
    assert isinstance(device, dict)
    assert (device["device_id"], device["webhook_url"]) == ("phone", receiver.url)

    devices = (await call(address, f"{SERVICE}/ListDevices", {}, token)).json()["devices"]
    assert isinstance(devices, list) and [d["device_id"] for d in devices] == ["phone"]

    evil = {**body, "webhook_url": "https://evil.example.com/hook"}
    refused = await call(address, f"{SERVICE}/RegisterDevice", evil, token)
    assert refused.code != 0
    assert "InvalidArgument" in refused.err and "WEBHOOK_URL_NOT_ALLOWED" in refused.err
