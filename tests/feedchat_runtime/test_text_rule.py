"""One rule for user-visible text, applied by every service that stores some: control
characters (C0, DEL, C1 such as the 8-bit CSI) are refused, newlines only where the
field is multi-line."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from feedchat.account.v1 import account_pb2, account_pb2_grpc
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat.feed.v1 import feed_pb2, feed_pb2_grpc
from feedchat_runtime.errors import InvalidArgument
from feedchat_runtime.text import TextRule
from tests.chat_svc.chatkit import Device, auth
from tests.feedchat_client.system import System
from tests.rpc_errors import failure
from tests.waiting import wait_until

CONTROLS = ["nul\x00", "esc\x1b[31m", "del\x7f", "csi\x9b31m", "c1\x85"]
NEWLINES = ["two\nlines", "cr\rhere", "tab\there", "sep\u2028"]


def _reason(rule: TextRule, value: str) -> str | None:
    try:
        rule.check(value)
    except InvalidArgument as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("value", CONTROLS)
def test_control_characters_are_refused_in_every_kind_of_field(value: str) -> None:
    for rule in (TextRule("t", 100, "T"), TextRule("t", 100, "T", multiline=True)):
        assert _reason(rule, value) == "T_INVALID_CHARACTERS"


def test_newlines_and_tabs_only_in_multi_line_fields() -> None:
    single, multi = TextRule("t", 100, "T"), TextRule("t", 100, "T", multiline=True)
    assert [_reason(single, v) for v in NEWLINES] == ["T_INVALID_CHARACTERS"] * 4
    assert [_reason(multi, v) for v in NEWLINES] == [None, None, None, None]


def test_length_emptiness_and_plain_unicode() -> None:
    rule = TextRule("t", 5, "T")
    assert rule.check("héllo") == "héllo" and rule.check("🙂 ok") == "🙂 ok"
    assert _reason(rule, "toolong") == "T_TOO_LONG"
    assert _reason(rule, " \t ") == "T_EMPTY"
    assert _reason(TextRule("t", 5, "T", required=False), "") is None


async def _reason_of(call: Any) -> str:
    details = await failure(call)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    return details.reason


async def test_every_text_field_refuses_c1_nul_and_esc(whole_system: System) -> None:
    user = 11
    bad = ["csi\x9b2J", "nul\x00", "esc\x1b[2J"]
    async with grpc.aio.insecure_channel(whole_system.address("feed")) as channel:
        feed = feed_pb2_grpc.FeedServiceStub(channel)
        for text in bad:
            assert (
                await _reason_of(
                    feed.CreatePost(feed_pb2.CreatePostRequest(text=text), metadata=auth(user))
                )
                == "POST_INVALID_CHARACTERS"
            )
        # multi-line text keeps its newlines
        await feed.CreatePost(feed_pb2.CreatePostRequest(text="a\nb"), metadata=auth(user))
    async with grpc.aio.insecure_channel(whole_system.address("account")) as channel:
        account = account_pb2_grpc.AccountServiceStub(channel)
        session = await account.SignUp(
            account_pb2.SignUpRequest(username="texter", password="password-123")
        )
        mine = (("authorization", f"Bearer {session.access_token}"),)
        for text in [*bad, "two\nlines"]:
            assert (
                await _reason_of(
                    account.UpdateProfile(
                        account_pb2.UpdateProfileRequest(display_name=text), metadata=mine
                    )
                )
                == "PROFILE_INVALID_CHARACTERS"
            )
        for text in bad:
            assert (
                await _reason_of(
                    account.UpdateProfile(account_pb2.UpdateProfileRequest(bio=text), metadata=mine)
                )
                == "PROFILE_INVALID_CHARACTERS"
            )
    chat_address = whole_system.address("chat")
    async with grpc.aio.insecure_channel(chat_address) as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        for name in [*bad, "two\nlines"]:
            assert (
                await _reason_of(
                    chat.CreateGroup(
                        chat_pb2.CreateGroupRequest(name=name, member_ids=[2]), metadata=auth(user)
                    )
                )
                == "GROUP_NAME_INVALID_CHARACTERS"
            )
        group = (
            await chat.CreateGroup(
                chat_pb2.CreateGroupRequest(name="fine", member_ids=[2]), metadata=auth(user)
            )
        ).channel.channel_id
    device = await Device(user, chat_address).open()
    try:
        for i, text in enumerate(bad):
            device.send(group, text, client_msg_id=f"bad-{i}")
        await wait_until(lambda: len(device.send_errors) == len(bad), what="three refusals")
        assert {e.reason for e in device.send_errors} == {"MESSAGE_INVALID_CHARACTERS"}
        await device.sent(device.send(group, "multi\nline"))
    finally:
        await device.close()
