"""Transport details: client address parsing, and storage outages as UNAVAILABLE."""

from __future__ import annotations

import grpc
import pytest

from account_svc.servicer import peer_host
from feedchat.account.v1 import account_pb2 as pb
from feedchat_client.errors import error_details
from feedchat_local.embedded import free_port
from tests.account_svc.conftest import PASSWORD, StartAccount


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:53422", "127.0.0.1"),
        ("ipv6:[::1]:53422", "::1"),
        ("ipv6:[2001:DB8::7]:1", "2001:db8::7"),
        ("unix:/tmp/sock", "unix"),
        ("", "unknown"),
    ],
)
def test_peer_host_keeps_only_the_address(peer: str, host: str) -> None:
    assert peer_host(peer) == host


async def test_redis_outage_leaves_sign_up_working_and_login_unavailable(
    start_account: StartAccount,
) -> None:
    # Redis holds only the cache and the login counters: the record does not need it.
    account = await start_account(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    await account.sign_up("nobody")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.Login(pb.LoginRequest(username="nobody", password=PASSWORD))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.reason == "STORAGE_UNAVAILABLE"
