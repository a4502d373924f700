"""grpcurl against a real account_svc: sign up, then a token-guarded call with and without."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.account_svc.conftest import Account

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SERVICE = "feedchat.account.v1.AccountService"


async def grpcurl(address: str, method: str, body: dict[str, object],
                  *headers: str) -> tuple[int, str, str]:
    args = [GRPCURL, "-plaintext", "-max-time", "20"]
    for header in headers:
        args += ["-H", header]
    args += ["-d", json.dumps(body), address, f"{SERVICE}/{method}"]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_sign_up_then_token_guarded_call(account: Account) -> None:
    code, out, err = await grpcurl(
        account.address, "SignUp", {"username": "curly", "password": "grpcurl pass"}
    )
    assert code == 0, err
    signed = json.loads(out)
    token = signed["access_token"]
    assert int(signed["user_id"]) > 0

    code, out, err = await grpcurl(
        account.address, "Login", {"username": "Curly", "password": "grpcurl pass"}
    )
    assert code == 0, err
    assert json.loads(out)["user_id"] == signed["user_id"]

    code, out, err = await grpcurl(
        account.address, "GetProfile", {}, f"authorization: Bearer {token}"
    )
    assert code == 0, err
    assert json.loads(out)["user"]["username"] == "curly"

    code, out, err = await grpcurl(account.address, "GetProfile", {})
    assert code != 0
    assert "Unauthenticated" in err
