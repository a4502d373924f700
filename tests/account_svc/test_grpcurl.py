"""grpcurl against a real account_svc: sign up, then a token-guarded call with and without."""

from __future__ import annotations

from tests.account_svc.conftest import Account
from tests.grpcurl import call

SERVICE = "feedchat.account.v1.AccountService"


async def test_grpcurl_sign_up_then_token_guarded_call(account: Account) -> None:
    signed = (
        await call(
            account.address, f"{SERVICE}/SignUp", {"username": "curly", "password": "grpcurl pass"}
        )
    ).json()
    token = signed["access_token"]
    assert int(str(signed["user_id"])) > 0

    login = await call(
        account.address, f"{SERVICE}/Login", {"username": "Curly", "password": "grpcurl pass"}
    )
    assert login.json()["user_id"] == signed["user_id"]

    profile = await call(account.address, f"{SERVICE}/GetProfile", {}, str(token))
    user = profile.json()["user"]
    assert isinstance(user, dict) and user["username"] == "curly"

    anonymous = await call(account.address, f"{SERVICE}/GetProfile", {})
    assert anonymous.code != 0
    assert "Unauthenticated" in anonymous.err
