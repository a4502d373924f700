"""Profiles: own-profile updates only, field limits, batch and username lookup."""

from __future__ import annotations

import grpc
import pytest

from feedchat.account.v1 import account_pb2 as pb
from feedchat_client.errors import error_details
from tests.account_svc.conftest import Account, bearer


def test_update_profile_request_has_no_way_to_name_a_user() -> None:
    assert "user_id" not in pb.UpdateProfileRequest.DESCRIPTOR.fields_by_name
    assert set(pb.UpdateProfileRequest.DESCRIPTOR.fields_by_name) == {"display_name", "bio"}


async def test_token_of_user_a_changes_only_a_profile(account: Account) -> None:
    alice = await account.sign_up("alice")
    bob = await account.sign_up("bob")
    updated = await account.stub.UpdateProfile(
        pb.UpdateProfileRequest(display_name="Alice A.", bio="hello\nworld"),
        metadata=bearer(alice.access_token),
    )
    assert updated.user.user_id == alice.user_id
    assert (updated.user.display_name, updated.user.bio) == ("Alice A.", "hello\nworld")
    read_b = await account.stub.GetProfile(
        pb.GetProfileRequest(user_id=bob.user_id), metadata=bearer(alice.access_token)
    )
    assert (read_b.user.display_name, read_b.user.bio) == ("", "")


async def test_unset_fields_stay_and_empty_string_clears(account: Account) -> None:
    user = await account.sign_up("carl")
    auth = bearer(user.access_token)
    await account.stub.UpdateProfile(
        pb.UpdateProfileRequest(display_name="Carl", bio="bio"), metadata=auth
    )
    kept = await account.stub.UpdateProfile(pb.UpdateProfileRequest(bio=""), metadata=auth)
    assert (kept.user.display_name, kept.user.bio) == ("Carl", "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.UpdateProfileRequest(display_name="x" * 65), "display_name"),
        (pb.UpdateProfileRequest(display_name="tab\there"), "display_name"),
        (pb.UpdateProfileRequest(bio="b" * 281), "bio"),
        (pb.UpdateProfileRequest(bio="bell\a"), "bio"),
    ],
)
async def test_out_of_bounds_profile_fields_are_invalid_argument(
    account: Account, request_: pb.UpdateProfileRequest, field: str
) -> None:
    user = await account.sign_up("dora")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.UpdateProfile(request_, metadata=bearer(user.access_token))
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details.field_violations] == [field]


async def test_limits_accept_exactly_the_maximum(account: Account) -> None:
    user = await account.sign_up("e" * 32)
    reply = await account.stub.UpdateProfile(
        pb.UpdateProfileRequest(display_name="é" * 64, bio="ü" * 280),
        metadata=bearer(user.access_token),
    )
    assert len(reply.user.bio) == 280


async def test_get_users_returns_known_users_in_order_and_skips_unknown(
    account: Account,
) -> None:
    a = await account.sign_up("anna")
    b = await account.sign_up("ben")
    reply = await account.stub.GetUsers(
        pb.GetUsersRequest(user_ids=[b.user_id, 999, a.user_id, b.user_id, 0]),
        metadata=bearer(a.access_token),
    )
    assert [(u.user_id, u.username) for u in reply.users] == [
        (b.user_id, "ben"),
        (a.user_id, "anna"),
    ]


async def test_get_users_refuses_more_than_500_ids(account: Account) -> None:
    user = await account.sign_up("fay")
    await account.stub.GetUsers(
        pb.GetUsersRequest(user_ids=list(range(1, 501))), metadata=bearer(user.access_token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.GetUsers(
            pb.GetUsersRequest(user_ids=list(range(1, 502))), metadata=bearer(user.access_token)
        )
    details = await error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations[0][0] == "user_ids"


async def test_unknown_profile_and_username_are_not_found(account: Account) -> None:
    user = await account.sign_up("gus")
    auth = bearer(user.access_token)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.GetProfile(pb.GetProfileRequest(user_id=42), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.LookupUsername(pb.LookupUsernameRequest(username="nope"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.LookupUsername(pb.LookupUsernameRequest(username="no!"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
