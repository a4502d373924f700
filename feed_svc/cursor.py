"""Opaque, tamper-checked page tokens.

A token is ``base64url(kind | user | position | hmac)``: ``kind`` says which listing it
belongs to (feed, a user's posts, followers, following), ``user`` binds it to the caller
(or listed user), ``position`` is the last id of the previous page (the next page holds
what lies strictly beyond it). The HMAC-SHA256 tag (16 bytes) makes a token we did not
issue, or one moved to another listing or user, an INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct

from feedchat_runtime.errors import InvalidArgument

_LAYOUT = struct.Struct(">BBQQ")  # version, kind, user, position
_VERSION = 1
_TAG_BYTES = 16
_MAX_TOKEN_CHARS = 128


class Listing(enum.IntEnum):
    FEED = 1
    USER_POSTS = 2
    FOLLOWERS = 3
    FOLLOWING = 4


def derive_key(cursor_secret: str, auth_secret: str) -> bytes:
    """The signing key: the configured one, else derived from the auth secret."""
    if cursor_secret:
        return cursor_secret.encode()
    return hmac.new(auth_secret.encode(), b"feedchat feed page tokens", hashlib.sha256).digest()


class PageTokens:
    """Issues and checks page tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_TAG_BYTES]

    def issue(self, listing: Listing, user: int, position: int) -> str:
        body = _LAYOUT.pack(_VERSION, int(listing), user, position)
        return base64.urlsafe_b64encode(body + self._tag(body)).rstrip(b"=").decode()

    def check(self, token: str, listing: Listing, user: int) -> int | None:
        """The position in ``token``; None for an empty token (the first page)."""
        if not token:
            return None
        bad = InvalidArgument.field(
            "page_token", "not a page token this server issued for this listing",
            reason="PAGE_TOKEN_INVALID",
        )
        if len(token) > _MAX_TOKEN_CHARS:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise bad from exc
        body, tag = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if len(body) != _LAYOUT.size or not hmac.compare_digest(tag, self._tag(body)):
            raise bad
        version, kind, owner, position = _LAYOUT.unpack(body)
        if version != _VERSION or kind != int(listing) or owner != user:
            raise bad
        return int(position)


def page_size(requested: int, default: int = 20, maximum: int = 100) -> int:
    """The page size to use: 0 means the default; outside 1..maximum is INVALID_ARGUMENT."""
    if requested == 0:
        return default
    if requested < 0 or requested > maximum:
        raise InvalidArgument.field(
            "page_size", f"must be between 1 and {maximum} (0 for {default})",
            reason="PAGE_SIZE_OUT_OF_RANGE",
        )
    return requested
