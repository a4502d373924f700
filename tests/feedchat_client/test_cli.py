"""The `feedchat` client commands, run as processes against a live in-process system."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.feedchat_client.system import System
from tests.grpcurl import call
from tests.waiting import wait_until


class Cli:
    def __init__(self, system: System, session: Path) -> None:
        self.base = [
            "--etcd",
            system.etcd,
            "--etcd-prefix",
            system.prefix,
            "--session",
            str(session),
        ]

    async def run(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        command, *rest = argv
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "feedchat_local.cli",
            command,
            *self.base,
            *rest,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def json(self, *argv: str, stdin: str = "") -> list[dict[str, Any]]:
        code, out, err = await self.run(*argv, "--json", stdin=stdin)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]


async def test_two_users_sign_up_post_follow_read_feed_and_chat(
    system: System,
    tmp_path: Path,
) -> None:
    await system.start(chat_servers=2, presence=True)
    tag = uuid.uuid4().hex[:6]
    alice_name, bob_name = f"alice_{tag}", f"bob_{tag}"
    alice = Cli(system, tmp_path / "a" / "session.json")
    bob = Cli(system, tmp_path / "b" / "session.json")
    signed = await asyncio.gather(
        alice.json("signup", alice_name, "--password", "password-123"),
        bob.run("signup", bob_name, stdin="password-123\n"),
    )
    assert signed[0][0]["username"] == alice_name
    code, out, _ = signed[1]
    assert code == 0 and f"signed up and logged in as {bob_name}" in out

    posted, fanout = await alice.json("post", "hello", "from", "the", "cli", "--wait")
    assert fanout["status"]["state"] in ("done", "unknown")
    assert posted["post"]["text"] == "hello from the cli"
    [followed] = await bob.json("follow", alice_name)
    assert followed["changed"] is True
    feed = await bob.json("feed", "--page-size", "5")
    assert [(e["event"], e["post"]["text"], e["post"]["author"]["username"]) for e in feed] == [
        ("post", "hello from the cli", alice_name)
    ]
    code, out, _ = await bob.run("feed")
    assert code == 0 and f"@{alice_name}: hello from the cli" in out

    sent = await alice.json("chat", bob_name, stdin="hi bob\nsecond line\n")
    assert [e["event"] for e in sent] == ["sent", "sent"]
    seen = await bob.json("chat", alice_name, "--history", "5")
    assert [(e["sender"], e["message"]["text"]) for e in seen] == [
        (alice_name, "hi bob"),
        (alice_name, "second line"),
    ]

    [group] = await alice.json("group", "friends", bob_name)
    group_id = group["channel"]["channel_id"]
    assert group["channel"]["member_count"] == 2
    [said] = await bob.json("chat", "--group", group_id, stdin="hello group\n")
    assert said["sent"]["channel_id"] == group_id
    heard = await alice.json("chat", "--group", group_id)
    assert [(e["sender"], e["message"]["text"]) for e in heard] == [(bob_name, "hello group")]

    [presence] = await bob.json("presence", alice_name)
    assert (presence["username"], presence["presence"]["status"]) == (alice_name, "offline")


async def test_errors_are_short_messages_not_tracebacks(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=0)
    cli = Cli(system, tmp_path / "session.json")
    code, _, err = await cli.run("feed")
    assert code == 1 and "not logged in" in err and "Traceback" not in err
    code, _, err = await cli.run("signup", "x", "--password", "password-123")
    assert code == 1 and "invalid_argument" in err and "username" in err and "Traceback" not in err


async def test_json_goes_before_or_after_the_command_and_errors_come_as_json(
    system: System,
    tmp_path: Path,
) -> None:
    await system.start(chat_servers=0)
    cli = Cli(system, tmp_path / "session.json")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feedchat_local.cli",
        "--json",
        "feed",
        *cli.base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    [error] = [json.loads(line) for line in out.decode().splitlines()]
    assert error["event"] == "error" and "not logged in" in error["message"]

    code, out_text, _ = await cli.run("signup", "x", "--password", "password-123", "--json")
    assert code == 1
    [refused] = [json.loads(line) for line in out_text.splitlines()]
    assert (refused["code"], refused["reason"]) == ("INVALID_ARGUMENT", "USERNAME_INVALID")
    assert [field for field, _ in refused["field_violations"]] == ["username"]

    code, _, err = await cli.run("signup", "x", "--password", "password-123")
    assert code == 1
    # The field's problem is said once, not repeated in parentheses.
    [line] = [text for text in err.splitlines() if text.startswith("error:")]
    assert line.count("username:") == 1, line


async def test_token_command_mints_a_token_grpcurl_can_use(
    system: System,
    tmp_path: Path,
) -> None:
    await system.start(chat_servers=0)
    cli = Cli(system, tmp_path / "session.json")
    name = f"tok_{uuid.uuid4().hex[:6]}"
    await cli.json("signup", name, "--password", "password-123")
    code, out, err = await cli.run("token")
    assert code == 0, err
    profile = await call(
        system.address("account"),
        "feedchat.account.v1.AccountService/GetProfile",
        token=out.strip(),
    )
    assert profile.json()["user"]["username"] == name  # type: ignore[index]


async def _alice_and_bob(system: System, tmp_path: Path) -> tuple[str, Cli, Cli]:
    """Two signed-up CLI sessions, alice_<tag> and bob_<tag>."""
    tag = uuid.uuid4().hex[:6]
    alice, bob = Cli(system, tmp_path / "a.json"), Cli(system, tmp_path / "b.json")
    await alice.json("signup", f"alice_{tag}", "--password", "password-123")
    await bob.json("signup", f"bob_{tag}", "--password", "password-123")
    return tag, alice, bob


async def test_online_command_shows_the_user_online_until_it_ends(
    system: System,
    tmp_path: Path,
) -> None:
    await system.start(chat_servers=0, presence=True)
    tag, alice, bob = await _alice_and_bob(system, tmp_path)
    online = asyncio.ensure_future(alice.run("online", "--for", "4"))

    async def alice_is(status: str) -> bool:
        [seen] = await bob.json("presence", f"alice_{tag}")
        return bool(seen["presence"]["status"] == status)

    await wait_until(lambda: alice_is("online"), what="alice online while `online` runs")
    code, out, err = await online
    assert code == 0, err
    assert "online as user" in out
    await wait_until(lambda: alice_is("offline"), what="alice offline after `online` ended")


async def test_notifications_command_lists_and_marks_read(
    system: System,
    tmp_path: Path,
) -> None:
    await system.start(chat_servers=1, notify=True)
    tag, alice, bob = await _alice_and_bob(system, tmp_path)
    await alice.json("chat", f"bob_{tag}", stdin="are you there?\n")  # bob is offline

    async def listed() -> list[dict[str, Any]]:
        return [e for e in await bob.json("notifications") if e["event"] == "notification"]

    [item] = await wait_until(listed, what="bob's notification")
    assert item["sender"] == f"alice_{tag}"
    assert item["notification"]["preview"] == "are you there?"
    assert item["notification"]["read"] is False
    [marked] = await bob.json(
        "notifications", "--read", str(item["notification"]["notification_id"])
    )
    assert marked["marked_count"] == 1
    [again] = await listed()
    assert again["notification"]["read"] is True


async def test_passwd_signout_all_and_delete_account_commands(
    system: System,
    tmp_path: Path,
) -> None:
    await system.start(chat_servers=0)
    name = f"carol_{uuid.uuid4().hex[:6]}"
    phone = Cli(system, tmp_path / "phone" / "session.json")
    laptop = Cli(system, tmp_path / "laptop" / "session.json")
    await phone.json("signup", name, "--password", "password-123")
    await laptop.json("login", name, "--password", "password-123")

    [changed] = await laptop.json("passwd", stdin="password-123\npassword-456\n")
    assert changed["event"] == "password_changed"
    await laptop.json("whoami")  # this device goes on
    code, _, err = await phone.run("login", name, "--password", "password-123")
    assert code == 1 and "unauthenticated" in err
    await phone.json("login", name, "--password", "password-456")

    [signed_out] = await phone.json("signout-all")
    assert signed_out["revoked_refresh_tokens"] == 2
    code, _, err = await phone.run("whoami")
    assert code == 1 and "not logged in" in err

    code, _, err = await laptop.run("delete-account", "--password", "password-456")
    assert code == 2 and "--yes" in err
    await laptop.json("login", name, "--password", "password-456")
    [deleted] = await laptop.json("delete-account", "--yes", stdin="password-456\n")
    assert deleted["event"] == "account_deleted" and deleted["username_free_at"]
    code, _, err = await laptop.run("login", name, "--password", "password-456")
    assert code == 1 and "unauthenticated" in err


async def test_chat_poll_uses_unary_calls_and_stats_draws_the_counts(
    system: System, tmp_path: Path
) -> None:
    await system.start(chat_servers=2)
    tag = uuid.uuid4().hex[:6]
    alice_name, bob_name = f"alice_{tag}", f"bob_{tag}"
    alice = Cli(system, tmp_path / "a" / "session.json")
    bob = Cli(system, tmp_path / "b" / "session.json")
    await alice.json("signup", alice_name, "--password", "password-123")
    await bob.json("signup", bob_name, "--password", "password-123")

    sent = await alice.json("chat", "--poll", bob_name, stdin="hi by poll\nagain\n")
    assert [e["event"] for e in sent] == ["sent", "sent"]
    seen = await bob.json("chat", "--poll", alice_name, "--history", "0", "--linger", "1")
    assert [(e["sender"], e["message"]["text"]) for e in seen if e["event"] == "message"] == [
        (alice_name, "hi by poll"),
        (alice_name, "again"),
    ]
    [group] = await alice.json("group", "pollers", bob_name)
    group_id = str(group["channel"]["channel_id"])
    [said] = await bob.json("chat", "--poll", "--group", group_id, stdin="to the group\n")
    assert said["sent"]["seq"] == 1

    [direct] = await alice.json("stats", bob_name, "--bucket", "minute", "--buckets", "5")
    assert direct["total"] == 2 and len(direct["counts"]) == 5
    [everywhere] = await bob.json("stats", "--bucket", "day", "--buckets", "2")
    assert everywhere["total"] == 3
    code, out, _ = await alice.run("stats", "--group", group_id, "--bucket", "hour")
    assert code == 0 and "1 messages in group" in out and "█" in out


async def test_reply_edit_react_and_delete_commands(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=1)
    tag = uuid.uuid4().hex[:6]
    alice_name, bob_name = f"alice_{tag}", f"bob_{tag}"
    alice = Cli(system, tmp_path / "a" / "session.json")
    bob = Cli(system, tmp_path / "b" / "session.json")
    await alice.json("signup", alice_name, "--password", "password-123")
    await bob.json("signup", bob_name, "--password", "password-123")
    [sent] = await alice.json("chat", bob_name, "--history", "0", stdin="lunch?\n")
    question = str(sent["sent"]["message_id"])
    [replied] = await bob.json("reply", question, "12:30", "ok?", "--user", alice_name)
    answer = str(replied["sent"]["message_id"])
    [edited] = await alice.json("edit", question, "lunch", "today?", "--user", bob_name)
    assert (edited["event"], edited["sent"]["seq"]) == ("edit", 3)
    await bob.json("react", question, "👍", "--user", alice_name)
    await bob.json("react", question, "🎉", "--user", alice_name)
    await bob.json("unreact", question, "👍", "--user", alice_name)
    code, out, _ = await alice.run("delete", answer, "--user", bob_name, "--json")
    assert code == 1 and json.loads(out)["reason"] == "NOT_MESSAGE_SENDER"
    [deleted] = await bob.json("delete", answer, "--user", alice_name)
    assert deleted["sent"]["seq"] == 7
    code, out, _ = await alice.run("chat", bob_name, "--history", "5")
    lines = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]
    assert lines == [
        f"{alice_name}: lunch today?  (#{question}, edited, 🎉 1)",
        f"{bob_name}: (deleted)  (#{answer}, reply to #{question})",
    ]
