"""Taking entries out of a full feed cache (unfollow) never hides older posts of the
authors still followed: paging goes on past the shrunk cache into their post lists."""

from __future__ import annotations

from tests.feed_svc.conftest import StartSystem, fanout_done

CAP = 10


async def test_unfollow_at_the_cache_cap_keeps_every_post_of_the_others(
    start_system: StartSystem,
) -> None:
    system = await start_system(feed_cache_size=CAP)
    authors = [await system.sign_up() for _ in range(4)]
    readers = [await system.sign_up() for _ in range(len(authors))]
    for reader in readers:
        for author in authors:
            await reader.follow(author.user_id)
        await reader.feed()  # a reader is active from now: fanout writes their cache
    await system.feed_app.feed.timeline.wait_rebuilds()
    posts: dict[int, list[int]] = {a.user_id: [] for a in authors}
    for round_ in range(6):
        for author in authors:
            post = await author.post(f"round {round_} by {author.user_id}")
            posts[author.user_id].append(post.post_id)
    for ids in posts.values():
        for post_id in ids:
            await fanout_done(system, post_id)
    everything = sorted((i for ids in posts.values() for i in ids), reverse=True)
    for reader in readers:
        assert await reader.feed_ids(page_size=7) == everything  # 24 posts, cache holds 10
    for reader, gone in zip(readers, authors, strict=True):
        assert await reader.unfollow(gone.user_id) is True
        kept = sorted(
            (i for a, ids in posts.items() if a != gone.user_id for i in ids), reverse=True
        )
        for size in (1, 4, 100):
            assert await reader.feed_ids(page_size=size) == kept
