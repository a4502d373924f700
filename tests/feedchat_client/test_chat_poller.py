"""ChatPoller (unary calls only): redirects, a crashed owner, cursor resumption."""

from __future__ import annotations

import pytest

from feedchat_client import Backoff, MemoryCursorStore
from tests.feedchat_client.helpers import StateLog, texts, user
from tests.feedchat_client.system import System
from tests.waiting import wait_until


async def test_a_poller_whose_server_crashes_resumes_elsewhere_losing_and_repeating_nothing(
    system: System,
) -> None:
    await system.start(chat_servers=2)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    owner = system.owner(bob.session.user_id)
    other = next(a for a in system.live_chats if a is not owner)
    cursors, log = MemoryCursorStore(), StateLog()
    backoff = Backoff(base=0.05, cap=0.5)
    async with alice.chat.poller("a", wait=5) as a:
        await a.send(channel.channel_id, "one")
        async with bob.chat.poller("b", cursors=cursors, backoff=backoff, on_state=log) as b:
            assert await texts(b, 1) == ["one"]
            assert b.instance == owner.config.instance and b.polls >= 1
            await wait_until(lambda: owner.hub.devices(bob.session.user_id), what="held poll")
            # A crash: no drain, no deregistration; the held poll just breaks.
            assert owner.host.built is not None
            await owner.host.built.server.stop(None)
            await owner.host.session.close(revoke=False)
            sent = [await a.send(channel.channel_id, f"after {i}") for i in range(3)]
            assert await texts(b, 3, timeout=20) == ["after 0", "after 1", "after 2"]
            assert b.instance == other.config.instance
            assert "reconnecting" in log.states()
            assert cursors.load(bob.session.user_id, "b") == b.cursor
            with pytest.raises(TimeoutError):
                await b.next_message(timeout=0.5)  # nothing repeated
            assert all(not s.duplicate for s in sent)


async def test_a_poller_started_at_the_wrong_server_follows_the_redirect(system: System) -> None:
    await system.start(chat_servers=2)
    alice = await user(system, "alice")
    owner = system.owner(alice.session.user_id)
    other = next(a for a in system.live_chats if a is not owner)
    log = StateLog()
    async with alice.chat.poller("p", on_state=log, wait=1, address=other.address) as poller:
        await wait_until(lambda: poller.polls >= 1, what="a first answer")
        assert poller.redirects == 1 and poller.instance == owner.config.instance
        assert ("redirected", owner.address) in log.events
