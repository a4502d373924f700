"""Page tokens: opaque, bound to their listing and user, refused when touched."""

from __future__ import annotations

import base64

import pytest

from feed_svc.cursor import Listing, PageTokens, derive_key, page_size
from feedchat_runtime.errors import InvalidArgument


def test_token_round_trips_a_snowflake_sized_position() -> None:
    tokens = PageTokens(derive_key("", "secret"))
    position = 2**63 + 12345
    token = tokens.issue(Listing.FEED, 42, position)
    assert tokens.check(token, Listing.FEED, 42) == position
    assert tokens.check("", Listing.FEED, 42) is None


@pytest.mark.parametrize("change", ["other_user", "other_listing", "other_key", "bit_flip"])
def test_token_is_refused_when_anything_differs(change: str) -> None:
    tokens = PageTokens(derive_key("", "secret"))
    token = tokens.issue(Listing.FEED, 42, 1000)
    listing, user, checker = Listing.FEED, 42, tokens
    if change == "other_user":
        user = 43
    elif change == "other_listing":
        listing = Listing.USER_POSTS
    elif change == "other_key":
        checker = PageTokens(derive_key("", "another secret"))
    else:
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[10] ^= 1  # move the position by a little
        token = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidArgument) as caught:
        checker.check(token, listing, user)
    assert caught.value.reason == "PAGE_TOKEN_INVALID"


def test_page_size_defaults_and_bounds() -> None:
    assert page_size(0) == 20
    assert page_size(100) == 100
    with pytest.raises(InvalidArgument):
        page_size(101)
    with pytest.raises(InvalidArgument):
        page_size(-5)
