"""Author lookups through account_svc: batched, cached briefly, and a down account
service degrades reads instead of failing them."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from feedchat_client.errors import error_details
from tests.feed_svc.conftest import System, fanout_done


async def test_account_service_down_is_unavailable_for_follow_but_reads_go_on(
    system: System,
) -> None:
    author = await system.sign_up("named")
    reader = await system.sign_up()
    await reader.follow(author.user_id)
    await reader.feed()
    post = await author.post("still readable")
    await fanout_done(system, post.post_id)
    assert (await reader.feed()).posts[0].author.username == "named"
    await system.account_host.stop()
    await asyncio.sleep(system.config.author_cache_ttl)  # let the cached profile expire
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reader.follow(author.user_id + 1)
    assert (await error_details(caught.value)).code == grpc.StatusCode.UNAVAILABLE
    page = await reader.feed()
    assert [p.post_id for p in page.posts] == [post.post_id]
    assert (page.posts[0].author.user_id, page.posts[0].author.username) == (author.user_id, "")
