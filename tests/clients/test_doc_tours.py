"""The runnable blocks of the service pages (``<!-- recipe: NAME -->``), run as written
against real servers: the addresses come from the variables each block reads (defaulting
to `feedchat up`'s ports), the CLI finds the registry through FEEDCHAT_ETCD."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from tests.feedchat_client.system import System
from tests.grpcurl import json_objects

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECIPE = re.compile(r"<!-- recipe: ([\w-]+) -->\s*```sh\n(.*?)```", re.S)


def tour(page: str, name: str) -> str:
    recipes: dict[str, str] = dict(RECIPE.findall((DOCS / page).read_text()))
    return recipes[name]


async def run_tour(system: System, tmp_path: Path, page: str, name: str) -> str:
    env = {
        **os.environ,
        "FEEDCHAT_ETCD": system.etcd,
        "FEEDCHAT_ETCD_PREFIX": system.prefix,
        "FEEDCHAT_SESSION": str(tmp_path / "session.json"),
        **{s.upper(): h.address for s, h in system.hosts.items()},
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        tour(page, name),
        cwd=DOCS.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, f"{page} {name}:\n{err.decode()}"
    return out.decode()


async def test_presence_tour_runs_and_shows_the_device_come_and_go(
    system: System, tmp_path: Path
) -> None:
    await system.start(chat_servers=0, presence=True)
    out = await run_tour(system, tmp_path, "presence.md", "presence-tour")
    frames = json_objects(out.split(" is a service:")[0])
    statuses = [f["change"]["presence"]["status"] for f in frames if "change" in f]
    assert "PRESENCE_STATUS_AWAY" in statuses, frames
    [looked_up] = [f for f in frames if "presences" in f]
    assert looked_up["presences"][0]["status"] == "PRESENCE_STATUS_OFFLINE"
    assert "feedchat.presence.v1.PresenceService is a service:" in out


async def test_notify_tour_runs(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=0, notify=True)
    out = await run_tour(system, tmp_path, "notify.md", "notify-tour")
    assert "feedchat.notify.v1.NotifyService is a service:" in out
    assert {"channel_ids": ["500"]} in json_objects(out.split(" is a service:")[0])


async def test_account_tour_runs(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=0)
    out = await run_tour(system, tmp_path, "account.md", "account-tour")
    replies = json_objects(out)
    profiles = [r["user"] for r in replies if "user" in r]
    assert [p.get("display_name") for p in profiles] == [None, "Erin", "Erin"]
    assert [u.get("display_name") for r in replies for u in r.get("users", [])] == ["Erin"]
    refreshed, changed, signed_out, deleted = replies[-4:]
    assert refreshed["access_token"] and refreshed["refresh_token"]
    assert changed["access_token"] and changed["refresh_token"]  # ChangePassword
    assert signed_out == {"revoked_refresh_tokens": 1}  # the pair ChangePassword issued
    assert deleted["username_free_at"]


async def test_feed_tour_runs(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=0)
    out = await run_tour(system, tmp_path, "feed.md", "feed-tour")
    replies = json_objects(out)
    first, retried = (r["post"] for r in replies[:2])
    assert first["post_id"] == retried["post_id"]
    [page] = [r for r in replies if "posts" in r]
    assert [p["post_id"] for p in page["posts"]] == [first["post_id"]]
    assert [r["state"] for r in replies if "state" in r]
    assert [r for r in replies if "author_ids" in r]


async def test_chat_tour_runs(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=2)
    out = await run_tour(system, tmp_path, "chat.md", "chat-tour")
    replies = json_objects(out)
    kinds = [next(iter(r)) for r in replies]
    assert "sync_complete" in kinds and "send_ack" in kinds, replies
    history, polled = [r for r in replies if "messages" in r]
    assert [m["text"] for m in history["messages"]] == ["hi"]
    [listed] = [r for r in replies if "channels" in r]
    assert len(listed["channels"]) == 1
    [sent] = [r["ack"] for r in replies if "ack" in r]  # SendMessage
    assert sent["seq"] == "2"
    assert [m["text"] for m in polled["messages"]] == ["hi", "hi again"]  # PollInbox
    assert polled["inbox_cursor"] == polled["messages"][-1]["inbox_cursor"]
    [stats] = [r for r in replies if "counts" in r]  # GetMessageStats
    assert stats["total"] == "2" and stats["bucket"] == "STATS_BUCKET_MINUTE"


async def test_chat_events_tour_runs(system: System, tmp_path: Path) -> None:
    await system.start(chat_servers=2)
    out = await run_tour(system, tmp_path, "chat.md", "chat-events-tour")
    replies = json_objects(out)
    acks = [r["ack"]["seq"] for r in replies if "ack" in r]
    assert acks == ["3", "4", "5"]  # the edit, the reaction, the delete (after 2 messages)
    [refused] = [r for r in replies if "code" in r]
    assert refused["code"] == 7 and refused["details"][0]["reason"] == "NOT_MESSAGE_SENDER"
    [history] = [r for r in replies if "messages" in r]
    deleted, edited = history["messages"]
    assert "text" not in deleted and deleted["deleted_ms"] and deleted["reply_to_seq"] == "1"
    assert edited["text"] == "lunch today?" and edited["edited_ms"]
    assert edited["reactions"] == [{"emoji": "👍", "count": 1}]
