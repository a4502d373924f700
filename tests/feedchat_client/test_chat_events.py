"""The Python client's edits, deletes, reactions and replies: on a stream and by poll."""

from __future__ import annotations

import pytest

from feedchat_client import ChatMessage, ChatSendError
from tests.feedchat_client.helpers import direct_pair
from tests.feedchat_client.system import System


async def test_stream_and_poller_edit_delete_react_and_reply_and_see_each_event_once(
    system: System,
) -> None:
    alice, bob, channel = await direct_pair(system)
    async with (
        alice.chat.connection("a") as a,
        bob.chat.poller("b", wait=5) as b,
    ):
        await a.wait_connected(10)
        question = await a.send(channel, "lunch?")
        answer = await b.send(channel, "12:30", reply_to=question.message_id)
        # a's own sends come when acked, others' when they arrive: a reads the answer first
        streamed = [await a.next_message(10) for _ in range(2)]
        await a.edit(channel, question.message_id, "lunch today?")
        await b.react(channel, question.message_id, "👍")
        await b.react(channel, question.message_id, "👍", remove=True)
        await b.react(channel, question.message_id, "🎉")
        await b.delete(channel, answer.message_id)
        with pytest.raises(ChatSendError) as refused:
            await b.edit(channel, question.message_id, "not mine")
        assert (refused.value.code, refused.value.reason) == (
            "PERMISSION_DENIED",
            "NOT_MESSAGE_SENDER",
        )
        with pytest.raises(ChatSendError) as refused:
            await a.react(channel, question.message_id, "two words")
        assert refused.value.reason == "EMOJI_INVALID_CHARACTERS"
        streamed += [await a.next_message(10) for _ in range(5)]
        polled = [await b.next_message(10) for _ in range(7)]
    for seen in (streamed, polled):
        assert [m.seq for m in seen] == [1, 2, 3, 4, 5, 6, 7]
        assert _summary(seen) == [
            ("message", "lunch?", 0),
            ("message", "12:30", question.message_id),
            ("edit", "lunch today?", question.message_id),
            ("reaction_added", "👍", question.message_id),
            ("reaction_removed", "👍", question.message_id),
            ("reaction_added", "🎉", question.message_id),
            ("delete", "", answer.message_id),
        ]
    history, _ = await bob.chat.history(channel)
    deleted, edited = history
    assert (deleted.deleted_ms > 0, deleted.text, deleted.reply_to) == (
        True,
        "",
        question.message_id,
    )
    assert (edited.text, edited.edited_ms > 0) == ("lunch today?", True)
    assert [(r.emoji, r.count, r.reacted) for r in edited.reactions] == [("🎉", 1, True)]


def _summary(messages: list[ChatMessage]) -> list[tuple[str, str, int]]:
    out = []
    for m in messages:
        if m.event is None:
            out.append(("message", m.text, m.reply_to))
        else:
            e = m.event
            out.append((e.kind, e.text or e.emoji, e.target_message_id))
    return out
