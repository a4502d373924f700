"""The Node.js client against real servers: a Node user and a Python user chat both ways
and the Node user reads a feed holding the Python user's post."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.feedchat_client.system import System

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """clients/node with its dependencies installed (`npm ci` once if they are missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed (Node 18+)"
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(
            [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
            check=True,
            timeout=300,
        )
    return NODE_DIR


async def _events(process: asyncio.subprocess.Process) -> Any:
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            return
        yield json.loads(line)


async def test_node_and_python_users_chat_both_ways_and_node_reads_python_post(
    system: System,
    node_client: Path,
) -> None:
    await system.start(chat_servers=2)
    py = system.client()
    tag = uuid.uuid4().hex[:8]
    await py.session.sign_up(f"py_{tag}", "password-123")
    post = await py.feed.post(f"python says hi {tag}")
    config = {
        "account": system.address("account"),
        "feed": system.address("feed"),
        "router": system.address("router"),
        "username": f"node_{tag}",
        "password": "password-123",
        "peerUserId": str(py.session.user_id),
        "expectPost": post.text,
        "send": f"hello from node {tag}",
        "expectReply": f"hello back from python {tag}",
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(node_client / "examples" / "e2e.js"),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(40):
            events = _events(process)
            ready = await anext(events)
            seen.append(ready)
            assert ready["event"] == "ready", ready
            node_user = int(ready["user_id"])
            assert (await py.account.lookup(f"node_{tag}")).user_id == node_user
            channel = await py.chat.open_direct(node_user)
            async with py.chat.connection("py-e2e") as conn:
                message = await conn.next_message(30)
                assert (message.sender_id, message.channel_id, message.text) == (
                    node_user,
                    channel.channel_id,
                    config["send"],
                )
                await conn.send(channel.channel_id, config["expectReply"], timeout=10)
                async for event in events:
                    seen.append(event)
                # node edited its message, then sent one more and deleted it: events in order
                after = [await conn.next_message(10) for _ in range(4)]
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    by_kind = {e["event"]: e for e in seen}
    assert "error" not in by_kind, (by_kind, stderr)
    assert post.text in by_kind["feed"]["texts"]
    posted = by_kind["posted"]
    assert posted["first"] == posted["retried"]
    node_posts = await py.feed.user_posts(node_user)
    assert [str(p.post_id) for p in node_posts.posts] == [posted["first"]]
    assert by_kind["chat"]["received"] == config["expectReply"]
    assert int(by_kind["chat"]["sender_id"]) == py.session.user_id
    assert int(by_kind["chat"]["channel_id"]) == channel.channel_id
    assert int(by_kind["sent"]["message_id"]) == message.message_id
    edit, extra, delete = after[1:]
    assert (after[0].text, after[0].sender_id) == (config["expectReply"], py.session.user_id)
    assert edit.event is not None and delete.event is not None
    assert (edit.event.kind, edit.event.target_message_id, edit.event.text) == (
        "edit",
        message.message_id,
        f"{config['send']} (edited)",
    )
    assert (extra.text, delete.event.kind, delete.event.target_message_id) == (
        "soon deleted",
        "delete",
        extra.message_id,
    )
    assert (by_kind["edited"]["seq"], by_kind["edited"]["deleted_seq"]) == ("3", "5")
    # Node started at the wrong chat server and followed the redirect to the owner.
    assert by_kind["chat"]["redirects"] == 1
    assert (
        by_kind["chat"]["instance"]
        == by_kind["chat"]["owner"]
        == system.owner(node_user).config.instance
    )


async def test_the_node_snippet_in_the_docs_runs_as_written(
    system: System,
    node_client: Path,
) -> None:
    doc = (NODE_DIR.parents[1] / "docs" / "clients.md").read_text()
    snippet = doc.split("<!-- node-snippet -->\n```js\n", 1)[1].split("```", 1)[0]
    await system.start(chat_servers=1)
    carol, bob = system.client(), system.client()
    await carol.session.sign_up("carol", "correct horse")
    await bob.session.sign_up("bob", "correct horse")
    process = await asyncio.create_subprocess_exec(
        "node",
        "-e",
        snippet,
        cwd=NODE_DIR.parents[1],
        env={
            **os.environ,
            "FEEDCHAT_ACCOUNT": system.address("account"),
            "FEEDCHAT_FEED": system.address("feed"),
            "FEEDCHAT_ROUTER": system.address("router"),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 40)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "carol's feed has 0 posts" and lines[-1].startswith("sent, message id ")
    channel = await bob.chat.open_direct(carol.session.user_id)
    [message], _ = await bob.chat.history(channel.channel_id)
    assert (message.sender_id, message.text) == (carol.session.user_id, "hi bob")
    assert [p.text for p in (await bob.feed.user_posts(carol.session.user_id)).posts] == [
        "hello from node"
    ]


async def test_node_chats_with_unary_calls_only_and_reads_its_stats(
    system: System,
    node_client: Path,
) -> None:
    await system.start(chat_servers=2)
    py = system.client()
    tag = uuid.uuid4().hex[:8]
    await py.session.sign_up(f"py_{tag}", "password-123")
    config = {
        "account": system.address("account"),
        "feed": system.address("feed"),
        "router": system.address("router"),
        "username": f"node_{tag}",
        "password": "password-123",
        "peerUserId": str(py.session.user_id),
        "expect": f"ping from python {tag}",
        "reply": f"pong from node {tag}",
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(node_client / "examples" / "e2e_poll.js"),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(40):
            events = _events(process)
            ready = await anext(events)
            assert ready["event"] == "ready", ready
            node_user = int(ready["user_id"])
            async with py.chat.connection("py-e2e") as conn:  # the stream side
                await conn.send(int(ready["channel_id"]), config["expect"], timeout=10)
                async for message in conn.messages():
                    if message.sender_id == node_user:
                        break
                assert message.text == config["reply"]
                async for event in events:
                    seen.append(event)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    by_kind = {e["event"]: e for e in seen}
    assert "error" not in by_kind, (by_kind, stderr)
    chat = by_kind["chat"]
    assert (chat["received"], int(chat["sender_id"])) == (config["expect"], py.session.user_id)
    assert int(chat["message_id"]) == message.message_id
    assert chat["duplicate"] is True and chat["same_id"] is True  # the retry stored nothing
    assert chat["redirects"] == 1 and chat["instance"] == chat["owner"]
    assert by_kind["stats"] == {"event": "stats", "total": "2", "buckets": 60}
