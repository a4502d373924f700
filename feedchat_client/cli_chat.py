"""`feedchat chat`: an interactive chat with a user or a group.

Typed lines are sent (each with its own client_msg_id, retried until acked); incoming
messages of the channel are printed. ``--poll`` does the same with unary calls only
(long polls of the inbox and SendMessage) instead of a Connect stream. With stdin not a
terminal (a pipe), every line is sent and the command exits once all are acked (after
``--linger`` seconds of listening).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable

from feedchat_client.chat_poll import ChatPoller
from feedchat_client.chat_stream import ChatConnection
from feedchat_client.cli_output import Output
from feedchat_client.client import FeedchatClient
from feedchat_client.cursors import FileCursorStore
from feedchat_client.models import ChatMessage, SentMessage


async def run_chat(
    client: FeedchatClient,
    out: Output,
    *,
    channel_id: int,
    title: str,
    device_id: str,
    cursor_file: str,
    history: int,
    linger: float,
    names: Callable[[int], Awaitable[str]],
    poll: bool = False,
) -> int:
    me = client.session.user_id
    shown: set[int] = set()
    newest = 0
    if history > 0:
        page, _ = await client.chat.history(channel_id, page_size=history)
        for message in reversed(page):
            shown.add(message.message_id)
            newest = max(newest, message.message_id)
            out.message(message, await names(message.sender_id))
    out.progress(
        f"chat with {title} (channel {channel_id}); type a line and press Enter "
        "to send, Ctrl-D to leave"
    )
    sent_ids: set[str] = set()

    def on_state(state: str, detail: str) -> None:
        if state in ("connected", "redirected", "moved", "reconnecting", "failed"):
            out.progress(f"{state}: {detail}")

    cursors = FileCursorStore(cursor_file)
    connection: ChatConnection | ChatPoller = (
        client.chat.poller(device_id, cursors=cursors, on_state=on_state)
        if poll
        else client.chat.connection(device_id, cursors=cursors, on_state=on_state)
    )
    async with connection:

        async def show_incoming() -> None:
            async for message in connection.messages():
                if message.channel_id != channel_id or message.message_id in shown:
                    continue
                if message.message_id <= newest:
                    continue  # older than the history shown: a first sync's backlog
                shown.add(message.message_id)
                if message.sender_id == me and message.client_msg_id in sent_ids:
                    continue  # our own line, already on screen / reported as sent
                out.message(message, await names(message.sender_id))

        printer = asyncio.create_task(show_incoming())
        sends: list[asyncio.Task[SentMessage]] = []
        lines = _stdin_lines()
        try:
            while True:
                line = await lines.get()
                if not line:
                    break
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                task = asyncio.create_task(_send(connection.send, channel_id, text, sent_ids))
                task.add_done_callback(lambda t: _report(out, t))
                sends.append(task)
            unacked = sum(not t.done() for t in sends)
            if unacked:
                out.progress(f"waiting for {unacked} ack(s)")
                await asyncio.gather(*sends, return_exceptions=True)
            if linger > 0:
                await asyncio.sleep(linger)
        finally:
            printer.cancel()
    failed = [t for t in sends if t.exception() is not None]
    return 1 if failed else 0


def _stdin_lines() -> asyncio.Queue[str]:
    """Lines typed (or piped) on stdin; "" at end of input.

    A daemon thread reads them, so Ctrl-C never waits for a blocked ``readline`` (an
    executor thread would keep the process alive until Enter is pressed)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            except RuntimeError:  # the loop has closed: the command is over
                return
            if not line:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return queue


async def _send(
    send: Callable[..., object], channel_id: int, text: str, sent_ids: set[str]
) -> SentMessage:
    import uuid

    cmid = uuid.uuid4().hex
    sent_ids.add(cmid)
    result = await send(channel_id, text, client_msg_id=cmid)  # type: ignore[misc]
    assert isinstance(result, SentMessage)
    return result


def _report(out: Output, task: asyncio.Task[SentMessage]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        out.error(f"not sent: {error}")
        return
    sent = task.result()
    if out.json_mode or not sys.stdin.isatty():
        out.emit("sent", f"sent #{sent.message_id} (seq {sent.seq})", sent=sent)


MESSAGE_COMMANDS = {
    "reply": ("send a message in reply to another message of the chat", "text"),
    "edit": ("edit the text of a message you sent", "text"),
    "delete": ("delete a message you sent (a group's owner: anyone's)", ""),
    "react": ("react to a message with an emoji", "emoji"),
    "unreact": ("take back one of your reactions to a message", "emoji"),
}
"""The commands that act on one message: name -> (help, what else they take)."""


def add_message_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """`feedchat reply|edit|delete|react|unreact MESSAGE_ID ... (--user NAME | --group ID)`."""
    for name, (help_text, value) in MESSAGE_COMMANDS.items():
        p = add(name, help_text)
        p.add_argument("message_id", type=int, help="the message's id (#... in `feedchat chat`)")
        if value == "text":
            p.add_argument("text", nargs="+")
        elif value:
            p.add_argument("emoji")
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--user", help="username: the message is in your chat with them")
        target.add_argument("--group", type=int, help="group channel id")


async def run_message_command(
    client: FeedchatClient, out: Output, command: str, channel_id: int, args: argparse.Namespace
) -> int:
    """One reply, edit, delete or reaction (unary calls; any chat server)."""
    chat, target, cmid = client.chat, args.message_id, uuid.uuid4().hex
    if command == "reply":
        text = " ".join(args.text)
        sent = await chat.send_message(channel_id, text, client_msg_id=cmid, reply_to=target)
        done = f"replied to #{target}: #{sent.message_id}"
    elif command == "edit":
        sent = await chat.edit_message(channel_id, target, " ".join(args.text), client_msg_id=cmid)
        done = f"edited #{target}"
    elif command == "delete":
        sent = await chat.delete_message(channel_id, target, client_msg_id=cmid)
        done = f"deleted #{target}"
    else:
        call = chat.add_reaction if command == "react" else chat.remove_reaction
        sent = await call(channel_id, target, args.emoji, client_msg_id=cmid)
        done = f"{'reacted' if command == 'react' else 'took back'} {args.emoji} on #{target}"
    out.emit(command, f"{done} (seq {sent.seq})", sent=sent, target=target)
    return 0


__all__ = ["run_chat", "ChatMessage", "add_message_commands", "run_message_command"]
