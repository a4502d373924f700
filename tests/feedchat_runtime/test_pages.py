"""Page tokens: opaque, bound to their listing, caller and scope, refused when touched;
one page-size rule."""

from __future__ import annotations

import base64

import pytest

from feedchat_runtime.errors import InvalidArgument
from feedchat_runtime.pages import PageTokens, derive_key, page_size


def test_token_round_trips_a_64_bit_position() -> None:
    tokens = PageTokens(derive_key("", "secret"))
    position = 2**64 - 1
    token = tokens.issue("feed.GetFeed", 42, position, scope=2**63 + 5)
    assert tokens.check(token, "feed.GetFeed", 42, scope=2**63 + 5) == position
    assert tokens.check("", "feed.GetFeed", 42) is None


@pytest.mark.parametrize(
    "change",
    [
        "other_caller",
        "other_scope",
        "other_listing",
        "other_key",
        "bit_flip",
        "garbage",
        "too_long",
        "not_ascii",
    ],
)
def test_token_is_refused_when_anything_differs(change: str) -> None:
    tokens = PageTokens(derive_key("", "secret"))
    token = tokens.issue("feed.GetFeed", 42, 1000, scope=7)
    listing, caller, scope, checker = "feed.GetFeed", 42, 7, tokens
    if change == "other_caller":
        caller = 43
    elif change == "other_scope":
        scope = 8
    elif change == "other_listing":
        listing = "chat.GetHistory"
    elif change == "other_key":
        checker = PageTokens(derive_key("", "another secret"))
    elif change == "bit_flip":
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[20] ^= 1  # move the position by a little
        token = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    elif change == "garbage":
        token = "not a token!"
    elif change == "too_long":
        token = token * 5
    else:
        token = "é" + token[1:]
    with pytest.raises(InvalidArgument) as caught:
        checker.check(token, listing, caller, scope)
    assert caught.value.reason == "PAGE_TOKEN_INVALID"


def test_page_size_defaults_and_bounds() -> None:
    assert page_size(0, 20, 100) == 20
    assert page_size(100, 20, 100) == 100
    for bad in (101, -5):
        with pytest.raises(InvalidArgument) as caught:
            page_size(bad, 20, 100)
        assert caught.value.reason == "PAGE_SIZE_OUT_OF_RANGE"
