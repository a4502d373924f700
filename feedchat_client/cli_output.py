"""How the CLI prints: readable lines for people, JSON lines (``--json``) for scripts,
progress on stderr."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, is_dataclass
from typing import Any, TextIO

from feedchat_client.models import ChatMessage, Notification, Post, Presence


def _plain(value: Any) -> Any:
    """Dataclasses as dicts; ids above 2^53 as strings so JSON readers keep them exact."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    return value


def ago(stamp: float | None, now: float | None = None) -> str:
    if not stamp:
        return "never"
    seconds = max(0, int((now or time.time()) - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


_EVENT_VERBS = {
    "edit": "edited",
    "delete": "deleted",
    "reaction_added": "reacted",
    "reaction_removed": "took back",
}


def _message_line(message: ChatMessage, sender: str) -> str:
    event = message.event
    if event is not None:
        verb = _EVENT_VERBS.get(event.kind, event.kind)
        what = f" {event.emoji} on" if event.emoji else ""
        text = f": {event.text}" if event.text else ""
        return f"{sender} {verb}{what} #{event.target_message_id}{text}"
    text = "(deleted)" if message.deleted_ms else message.text
    marks = [f"#{message.message_id}"]
    if message.reply_to:
        marks.append(f"reply to #{message.reply_to}")
    if message.edited_ms:
        marks.append("edited")
    marks += [f"{r.emoji} {r.count}" for r in message.reactions]
    return f"{sender}: {text}  ({', '.join(marks)})"


class Output:
    """Prints results; ``json_mode`` switches to one JSON object per line."""

    def __init__(
        self,
        json_mode: bool,
        quiet: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def emit(self, event: str, text: str, **fields: Any) -> None:
        """One result: ``text`` for people, ``{"event": ..., **fields}`` for scripts."""
        if self.json_mode:
            print(json.dumps({"event": event, **_plain(fields)}), file=self.out, flush=True)
        else:
            print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        """A progress note on stderr (kept out of stdout, so pipes stay clean)."""
        if not self.quiet:
            print(f"… {text}", file=self.err, flush=True)

    def error(self, text: str, **fields: Any) -> None:
        """A failure: ``error: text`` on stderr, or under ``--json`` one
        ``{"event": "error", "message": ..., **fields}`` line on stdout."""
        if self.json_mode:
            print(
                json.dumps({"event": "error", "message": text, **_plain(fields)}),
                file=self.out,
                flush=True,
            )
        else:
            print(f"error: {text}", file=self.err, flush=True)

    def post(self, post: Post) -> None:
        who = post.author.username or f"user {post.author.user_id}"
        self.emit(
            "post", f"[{ago(post.created_at)}] @{who}: {post.text}  (#{post.post_id})", post=post
        )

    def presence(self, name: str, presence: Presence) -> None:
        seen = "" if presence.status != "offline" else f" (last seen {ago(presence.last_seen)})"
        self.emit(
            "presence", f"{name:<20} {presence.status}{seen}", username=name, presence=presence
        )

    def message(self, message: ChatMessage, sender: str) -> None:
        """A message (``[12:00:00] ann: hi  (#id)``, with reply, edit, delete and reaction
        marks), or a channel event (``[12:00:01] ann edited #id: hi!``)."""
        clock = time.strftime("%H:%M:%S", time.localtime(message.created_ms / 1000))
        self.emit(
            "message", f"[{clock}] {_message_line(message, sender)}", message=message, sender=sender
        )

    def notification(self, item: Notification, sender: str) -> None:
        mark = " " if item.read else "*"
        times = f" x{item.count}" if item.count > 1 else ""
        self.emit(
            "notification",
            f"{mark} #{item.notification_id} [{ago(item.updated_at)}] "
            f"{sender}{times}: {item.preview}",
            notification=item,
            sender=sender,
        )
