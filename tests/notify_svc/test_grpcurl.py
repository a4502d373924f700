"""The docs' grpcurl recipes work against a real notify_svc (reflection, JSON, errors)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from notify_svc.app import NotifyApp
from tests.notify_svc.conftest import AUTHORITY
from tests.notify_svc.receiver import Receiver

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SERVICE = "feedchat.notify.v1.NotifyService"


async def grpcurl(address: str, token: str, method: str, body: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", "-H", f"authorization: Bearer {token}", "-d", body,
        address, f"{SERVICE}/{method}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_grpcurl_register_list_and_refused_url(
    start_notify: Callable[..., Awaitable[NotifyApp]], receiver: Receiver
) -> None:
    app = await start_notify(worker=False)
    token = AUTHORITY.issue_access(42).token
    body = json.dumps({"device_id": "phone", "kind": "DEVICE_KIND_WEBHOOK",
                       "webhook_url": receiver.url})
    code, out, err = await grpcurl(app.host.address, token, "RegisterDevice", body)
    assert code == 0, err
    assert json.loads(out)["device"]["webhook_url"] == receiver.url

    code, out, err = await grpcurl(app.host.address, token, "ListDevices", "{}")
    assert code == 0 and [d["device_id"] for d in json.loads(out)["devices"]] == ["phone"]

    evil = body.replace(receiver.url, "https://evil.example.com/hook")
    code, out, err = await grpcurl(app.host.address, token, "RegisterDevice", evil)
    assert code != 0
    assert "InvalidArgument" in err and "WEBHOOK_URL_NOT_ALLOWED" in err
