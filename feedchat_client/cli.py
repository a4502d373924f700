"""`feedchat` client commands: signup, login, post, follow, feed, chat, presence, ...

They find every service through the etcd registry ``feedchat up`` writes to (``--etcd``,
default 127.0.0.1:2379) and keep the session (tokens) in a file, by default
``~/.config/feedchat/session.json`` (``--session`` or ``FEEDCHAT_SESSION``). Output is
for people; ``--json`` prints one JSON object per line for scripts. Progress notes go to
stderr.

``feedchat_local.cli`` adds these subcommands with :func:`add_commands` and hands parsed
arguments to :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc

from feedchat_client.cli_chat import (
    MESSAGE_COMMANDS,
    add_message_commands,
    run_chat,
    run_message_command,
)
from feedchat_client.cli_output import Output
from feedchat_client.client import FeedchatClient
from feedchat_client.discovery import EtcdDiscovery
from feedchat_client.errors import FeedchatClientError, NotLoggedIn, RpcError
from feedchat_client.ids import decode
from feedchat_client.tokens import FileTokenStore

COMMANDS = (
    "signup",
    "login",
    "logout",
    "whoami",
    "token",
    "post",
    "follow",
    "unfollow",
    "feed",
    "chat",
    "group",
    "presence",
    "online",
    "notifications",
    "id",
)
DEFAULT_SESSION = "~/.config/feedchat/session.json"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FEEDCHAT_{name}", default)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--etcd",
        default=_env("ETCD", "127.0.0.1:2379"),
        help="etcd host:port where services are registered [FEEDCHAT_ETCD]",
    )
    common.add_argument("--etcd-prefix", default=_env("ETCD_PREFIX", "/feedchat"))
    common.add_argument(
        "--session",
        default=_env("SESSION", DEFAULT_SESSION),
        help=f"session (token) file, default {DEFAULT_SESSION} [FEEDCHAT_SESSION]",
    )
    common.add_argument("--json", action="store_true", help="one JSON object per line")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress notes")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    return common


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client subcommands to the `feedchat` parser."""
    common = _common()

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_text, description=help_text)

    for name, verb in (("signup", "create an account and log in"), ("login", "log in")):
        p = add(name, verb)
        p.add_argument("username")
        p.add_argument(
            "--password",
            default=_env("PASSWORD", ""),
            help="password [FEEDCHAT_PASSWORD]; asked for when not given",
        )
        if name == "signup":
            p.add_argument("--display-name", default="")
    p = add("passwd", "change your password (other devices must log in again)")
    p.add_argument(
        "--password",
        default=_env("PASSWORD", ""),
        help="current password [FEEDCHAT_PASSWORD]; asked for when not given",
    )
    p.add_argument(
        "--new-password",
        default=_env("NEW_PASSWORD", ""),
        help="new password [FEEDCHAT_NEW_PASSWORD]; asked for when not given",
    )
    add("signout-all", "sign out on every device (every refresh token is revoked)")
    p = add("delete-account", "delete your account: profile, login and posts")
    p.add_argument(
        "--password",
        default=_env("PASSWORD", ""),
        help="password [FEEDCHAT_PASSWORD]; asked for when not given",
    )
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    add("logout", "forget the saved session")
    add("whoami", "show the logged-in user")
    add(
        "token",
        'print a fresh access token (for grpcurl: -H "authorization: Bearer $(feedchat token)")',
    )
    p = add("post", "publish a post")
    p.add_argument("text", nargs="+")
    p.add_argument(
        "--wait", action="store_true", help="show the fanout's progress until every follower has it"
    )
    for name in ("follow", "unfollow"):
        p = add(name, f"{name} a user")
        p.add_argument("user", help="username (or id:<number>)")
    p = add("feed", "read your home feed (paged), or watch it live")
    p.add_argument("--page-size", type=int, default=20)
    p.add_argument("--page-token", default="", help="continue from a previous page")
    p.add_argument("--pages", type=int, default=1, help="how many pages to print")
    p.add_argument("--watch", action="store_true", help="print new posts as they land")
    p = add("chat", "chat with a user or a group (interactive)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("user", nargs="?", help="username to chat with")
    target.add_argument("--group", type=int, help="group channel id")
    p.add_argument(
        "--device",
        default=f"cli-{socket.gethostname()}",
        help="device id (each device keeps its own sync cursor)",
    )
    p.add_argument("--history", type=int, default=10, help="recent messages to show first")
    p.add_argument(
        "--linger",
        type=float,
        default=0.0,
        help="with piped input: seconds to keep listening after the last send",
    )
    p.add_argument(
        "--poll",
        action="store_true",
        help="unary calls only: long-poll the inbox and send with SendMessage (no stream)",
    )
    add_message_commands(add)
    p = add("stats", "message counts per minute, hour or day, with a bar chart")
    target = p.add_mutually_exclusive_group()
    target.add_argument("user", nargs="?", help="username: your direct channel with them")
    target.add_argument("--group", type=int, help="group channel id")
    p.add_argument(
        "--bucket", choices=("minute", "hour", "day"), default="hour", help="bucket size"
    )
    p.add_argument(
        "--buckets", type=int, default=24, help="how many buckets back from now (1..1440)"
    )
    p = add("group", "create a group chat")
    p.add_argument("name")
    p.add_argument("members", nargs="*", help="usernames to add")
    p = add("presence", "show whether users are online")
    p.add_argument("users", nargs="+")
    p = add("online", "be online (a presence session with heartbeats) until Ctrl-C")
    p.add_argument("--status", choices=("online", "away"), default="online")
    p.add_argument(
        "--for",
        dest="duration",
        type=float,
        default=0.0,
        help="seconds to stay online, then go offline (0: until Ctrl-C)",
    )
    p = add("id", "decode feedchat ids (message, post, user, group): time, worker, sequence")
    p.add_argument("ids", nargs="+", metavar="ID")
    p = add("notifications", "list your notifications, newest first, or mark them read")
    p.add_argument("--page-size", type=int, default=20)
    p.add_argument("--page-token", default="", help="continue from a previous page")
    p.add_argument(
        "--read",
        type=int,
        nargs="+",
        metavar="ID",
        default=[],
        help="mark these notification ids read instead of listing",
    )


def bar_chart(counts: list[tuple[int, int]], bucket: str, width: int = 40) -> list[str]:
    """One line per bucket: its UTC start, a bar scaled to the largest count, the count."""
    top = max((c for _, c in counts), default=0)
    fmt = {"minute": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d"}[bucket]
    lines = []
    for start, count in counts:
        label = datetime.fromtimestamp(start / 1000, UTC).strftime(fmt)
        bar = "█" * (round(count / top * width) if top else 0)
        if count and not bar:
            bar = "▏"
        lines.append(f"{label}  {bar:<{width}}  {count}")
    return lines


def _ask(given: str, prompt: str, confirm: bool) -> str:
    """``given``, else the next line of piped stdin, else asked for on the terminal."""
    if given:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise SystemExit("passwords differ")
    return first


def _password(args: argparse.Namespace, confirm: bool, prompt: str = "password: ") -> str:
    return _ask(str(args.password or ""), prompt, confirm)


class Commands:
    """The subcommands, each an ``async def`` returning the exit code."""

    def __init__(self, args: argparse.Namespace, client: FeedchatClient, out: Output) -> None:
        self.args = args
        self.client = client
        self.out = out
        self._names: dict[int, str] = {}

    async def user_id(self, user: str) -> int:
        if user.startswith("id:"):
            return int(user[3:])
        found = await self.client.account.lookup(user)
        self._names[found.user_id] = found.username
        return found.user_id

    async def name(self, user_id: int) -> str:
        """A user's name (looked up once, then cached)."""
        if user_id not in self._names:
            found = await self.client.account.users([user_id])
            self._names[user_id] = found[0].username if found else f"user {user_id}"
        return self._names[user_id]

    async def signup(self) -> int:
        password = _password(self.args, confirm=True)
        self.out.progress("signing up (password hashing takes a moment)")
        tokens = await self.client.session.sign_up(
            self.args.username, password, self.args.display_name
        )
        self.out.emit(
            "signed_up",
            f"signed up and logged in as {tokens.username} (user {tokens.user_id})",
            user_id=tokens.user_id,
            username=tokens.username,
        )
        return 0

    async def login(self) -> int:
        password = _password(self.args, confirm=False)
        self.out.progress("logging in")
        tokens = await self.client.session.log_in(self.args.username, password)
        self.out.emit(
            "logged_in",
            f"logged in as {tokens.username} (user {tokens.user_id})",
            user_id=tokens.user_id,
            username=tokens.username,
        )
        return 0

    async def logout(self) -> int:
        self.client.session.log_out()
        self.out.emit("logged_out", "logged out")
        return 0

    async def passwd(self) -> int:
        current = _password(self.args, confirm=False, prompt="current password: ")
        new = _ask(self.args.new_password, "new password: ", confirm=True)
        self.out.progress("changing the password")
        tokens = await self.client.session.change_password(current, new)
        self.out.emit(
            "password_changed",
            "password changed; other devices must log in again",
            user_id=tokens.user_id,
        )
        return 0

    async def signout_all(self) -> int:
        revoked = await self.client.session.sign_out_everywhere()
        self.out.emit(
            "signed_out_everywhere",
            f"signed out everywhere ({revoked} sessions revoked); log in again",
            revoked_refresh_tokens=revoked,
        )
        return 0

    async def delete_account(self) -> int:
        if not self.args.yes:
            self.out.error("deleting an account cannot be undone: add --yes to confirm")
            return 2
        password = _password(self.args, confirm=False)
        free_at = await self.client.session.delete_account(password)
        stamp = free_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        self.out.emit(
            "account_deleted",
            f"account deleted; the username is free again from {stamp}",
            username_free_at=stamp,
        )
        return 0

    async def whoami(self) -> int:
        me = await self.client.account.me()
        self.out.emit("user", f"{me.username} (user {me.user_id})", user=me)
        return 0

    async def id(self) -> int:
        for text in self.args.ids:
            try:
                parts = decode(int(text))
            except ValueError:
                self.out.error(f"{text!r} is not a feedchat id (a number from 1 to 2^63-1)")
                return 1
            when = datetime.fromtimestamp(parts.unix_ms / 1000, UTC)
            stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self.out.emit(
                "id",
                f"{text}: {stamp}  worker {parts.worker}  sequence {parts.sequence}",
                id=int(text),
                time=stamp,
                unix_ms=parts.unix_ms,
                worker=parts.worker,
                sequence=parts.sequence,
            )
        return 0

    async def token(self) -> int:
        token = await self.client.session.access_token()
        self.out.emit("token", token, access_token=token)
        return 0

    async def post(self) -> int:
        post = await self.client.feed.post(" ".join(self.args.text))
        self.out.emit("posted", f"posted #{post.post_id}", post=post)
        if self.args.wait:
            while True:
                status = await self.client.feed.fanout_status(post.post_id)
                self.out.progress(
                    f"fanout {status.state}: {status.followers_done}/"
                    f"{status.followers_total} followers"
                )
                if status.state in ("done", "pulled_at_read", "unknown"):
                    break
                await asyncio.sleep(0.5)
            self.out.emit("fanout", f"fanout {status.state}", status=status)
        return 0

    async def follow(self) -> int:
        target = await self.user_id(self.args.user)
        changed = await self.client.feed.follow(target)
        self.out.emit(
            "followed",
            f"following {self.args.user}" + ("" if changed else " (already)"),
            user_id=target,
            changed=changed,
        )
        return 0

    async def unfollow(self) -> int:
        target = await self.user_id(self.args.user)
        changed = await self.client.feed.unfollow(target)
        self.out.emit(
            "unfollowed",
            f"not following {self.args.user}" + ("" if changed else " (was not)"),
            user_id=target,
            changed=changed,
        )
        return 0

    async def feed(self) -> int:
        if self.args.watch:
            return await self.watch()
        token = self.args.page_token
        for number in range(self.args.pages):
            page = await self.client.feed.page(self.args.page_size, token)
            if not page.posts and number == 0:
                self.out.emit("empty", "your feed is empty (follow someone?)")
            for post in page.posts:
                self.out.post(post)
            token = page.next_page_token
            if not token:
                break
        if token:
            self.out.emit(
                "next_page", f"more: feedchat feed --page-token {token}", next_page_token=token
            )
        return 0

    async def watch(self) -> int:
        def on_state(state: str, detail: str) -> None:
            self.out.progress(f"{state}: {detail}")

        def on_removed(post_id: int) -> None:
            self.out.emit("removed", f"(post #{post_id} was deleted)", post_id=post_id)

        async for post in self.client.feed.live(on_state=on_state, on_removed=on_removed):
            self.out.post(post)
        return 0

    async def chat(self) -> int:
        if self.args.group is not None:
            channel_id, title = self.args.group, f"group {self.args.group}"
        else:
            peer = await self.user_id(self.args.user)
            channel = await self.client.chat.open_direct(peer)
            channel_id, title = channel.channel_id, self.args.user
        me = self.client.session.tokens
        if me is not None:
            self._names[me.user_id] = me.username or "me"
        return await run_chat(
            self.client,
            self.out,
            channel_id=channel_id,
            title=title,
            device_id=self.args.device,
            cursor_file=self.args.cursor_file,
            history=self.args.history,
            linger=self.args.linger,
            names=self.name,
            poll=self.args.poll,
        )

    async def message_command(self) -> int:
        """reply, edit, delete, react, unreact (see :data:`MESSAGE_COMMANDS`)."""
        if self.args.group is not None:
            channel_id = self.args.group
        else:
            peer = await self.user_id(self.args.user)
            channel_id = (await self.client.chat.open_direct(peer)).channel_id
        return await run_message_command(
            self.client, self.out, self.args.command, channel_id, self.args
        )

    async def stats(self) -> int:
        if self.args.group is not None:
            channel_id, title = self.args.group, f"group {self.args.group}"
        elif self.args.user:
            peer = await self.user_id(self.args.user)
            channel_id = (await self.client.chat.open_direct(peer)).channel_id
            title = self.args.user
        else:
            channel_id, title = 0, "all your channels"
        bucket = self.args.bucket
        size = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}[bucket]
        end = -(-int(time.time() * 1000) // size) * size  # the end of the current bucket
        stats = await self.client.chat.stats(
            channel_id, bucket, start_ms=end - self.args.buckets * size, end_ms=end
        )
        self.out.emit(
            "stats",
            f"{stats.total} messages in {title}, per {bucket} (UTC)",
            channel_id=channel_id,
            bucket=bucket,
            total=stats.total,
            counts=[{"start_ms": start, "count": count} for start, count in stats.counts],
        )
        if not self.out.json_mode:
            for line in bar_chart(stats.counts, bucket):
                print(line)
        return 0

    async def group(self) -> int:
        members = [await self.user_id(u) for u in self.args.members]
        group = await self.client.chat.create_group(self.args.name, members)
        self.out.emit(
            "group",
            f"group {group.name!r} is channel {group.channel_id} "
            f"({group.member_count} members): feedchat chat --group "
            f"{group.channel_id}",
            channel=group,
        )
        return 0

    async def presence(self) -> int:
        ids = [await self.user_id(u) for u in self.args.users]
        for name, presence in zip(self.args.users, await self.client.presence.get(ids)):
            self.out.presence(name, presence)
        return 0

    async def online(self) -> int:
        session = await self.client.presence.connect(status=self.args.status)
        me = self.client.session.user_id
        self.out.emit(
            "online",
            f"{self.args.status} as user {me}; Ctrl-C goes offline",
            user_id=me,
            status=self.args.status,
        )
        try:
            # Heartbeats run in the session; closing it (also on Ctrl-C) goes offline at once.
            await asyncio.sleep(self.args.duration if self.args.duration > 0 else math.inf)
        finally:
            await session.close()
        self.out.emit("offline", "offline", user_id=me, status="offline")
        return 0

    async def notifications(self) -> int:
        if self.args.read:
            marked = await self.client.notify.mark_read(self.args.read)
            self.out.emit("marked_read", f"{marked} marked read", marked_count=marked)
            return 0
        page = await self.client.notify.page(self.args.page_size, self.args.page_token)
        if not page.notifications and not self.args.page_token:
            self.out.emit("empty", "no notifications")
        for item in page.notifications:
            self.out.notification(item, await self.name(item.sender_id))
        if page.next_page_token:
            self.out.emit(
                "next_page",
                f"more: feedchat notifications --page-token {page.next_page_token}",
                next_page_token=page.next_page_token,
            )
        return 0


async def _run(args: argparse.Namespace, out: Output) -> int:
    discovery = EtcdDiscovery(args.etcd, args.etcd_prefix, timeout=args.timeout)
    client = FeedchatClient(discovery, tokens=FileTokenStore(args.session), timeout=args.timeout)
    try:
        name = "message_command" if args.command in MESSAGE_COMMANDS else args.command
        handler: Callable[[], Awaitable[int]] = getattr(
            Commands(args, client, out), name.replace("-", "_")
        )
        return await handler()
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    """Run one parsed client subcommand; errors are printed, not traced."""
    out = Output(args.json, args.quiet)
    # Library warnings (a broken etcd watch being retried) are noise for a person here.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # Chat cursors live beside the session file: session.json -> session.cursors.json.
    args.cursor_file = os.path.splitext(os.path.expanduser(args.session))[0] + ".cursors.json"
    try:
        return asyncio.run(_run(args, out))
    except KeyboardInterrupt:
        return 130
    except NotLoggedIn:
        out.error("not logged in: run `feedchat login USERNAME` (or `feedchat signup`)")
    except RpcError as exc:
        if exc.code == grpc.StatusCode.UNAUTHENTICATED and exc.reason.startswith("REFRESH"):
            out.error("session expired: log in again", code=exc.code.name, reason=exc.reason)
        else:
            text = f"{exc.code.name.lower()}: {exc.message}"
            # A field error's message already names the field; add only what it lacks.
            missing = [
                f"{f}: {d}" for f, d in exc.field_violations if f"{f}: {d}" not in exc.message
            ]
            if missing:
                text += " (" + "; ".join(missing) + ")"
            if exc.retry_after:
                text += f" — retry in {exc.retry_after:.1f}s"
            out.error(
                text,
                code=exc.code.name,
                reason=exc.reason,
                field_violations=exc.field_violations,
                retry_after=exc.retry_after,
            )
    except FeedchatClientError as exc:
        out.error(str(exc))
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the client commands alone (``python -m feedchat_client.cli``)."""
    parser = argparse.ArgumentParser(prog="feedchat", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
