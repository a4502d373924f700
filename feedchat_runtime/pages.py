"""Paging, one dialect for every listing: signed page tokens and one page-size rule.

A page token is ``base64url(version | caller | scope | position | tag)``: ``position`` is
where the next page starts (exclusive; an id or a sequence number), ``caller`` the user
it was issued to (0: a feedchat service), ``scope`` what was listed (a user whose posts
or followers, a channel; 0 when the listing has no scope). The tag is HMAC-SHA256
(16 bytes) over the listing's name and the body, so a token we did not issue, an altered
one, or one presented by another caller, for another listing or another scope, is
INVALID_ARGUMENT with the one reason ``PAGE_TOKEN_INVALID``. An empty token asks for the
first page.

Page sizes follow one rule: 0 means the listing's default; 1..maximum is taken as is;
anything else is INVALID_ARGUMENT ``PAGE_SIZE_OUT_OF_RANGE``.

Every server signs with the same key (``--cursor-secret``, else one derived from
``--auth-secret``), so a token stays valid across the instances of a service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from feedchat_runtime.auth import DEV_AUTH_SECRET
from feedchat_runtime.config import ServiceConfig
from feedchat_runtime.errors import InvalidArgument

TOKEN_REASON = "PAGE_TOKEN_INVALID"
SIZE_REASON = "PAGE_SIZE_OUT_OF_RANGE"
MAX_TOKEN_CHARS = 128

_LAYOUT = struct.Struct(">BQQQ")  # version, caller, scope, position
_VERSION = 2
_TAG_BYTES = 16
_UINT64 = (1 << 64) - 1


def derive_key(cursor_secret: str, auth_secret: str) -> bytes:
    """The signing key: the configured one, else derived from the auth secret."""
    if cursor_secret:
        return cursor_secret.encode()
    return hmac.new(auth_secret.encode(), b"feedchat page tokens", hashlib.sha256).digest()


def page_tokens(config: ServiceConfig) -> PageTokens:
    """The codec every server of this deployment shares."""
    auth_secret = config.auth_secret or (DEV_AUTH_SECRET if config.dev else "")
    return PageTokens(derive_key(config.cursor_secret, auth_secret))


def invalid_token() -> InvalidArgument:
    return InvalidArgument.field(
        "page_token",
        "not a page token issued to this caller for this listing",
        reason=TOKEN_REASON,
    )


class PageTokens:
    """Issues and checks page tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, listing: str, body: bytes) -> bytes:
        message = listing.encode() + b"\x00" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def issue(self, listing: str, caller: int, position: int, scope: int = 0) -> str:
        """A token continuing ``listing`` (of ``scope``) for ``caller`` after ``position``."""
        body = _LAYOUT.pack(_VERSION, caller, scope, position)
        return base64.urlsafe_b64encode(body + self._tag(listing, body)).rstrip(b"=").decode()

    def check(self, token: str, listing: str, caller: int, scope: int = 0) -> int | None:
        """The position in ``token``; None for an empty token (the first page)."""
        if not token:
            return None
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise invalid_token()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise invalid_token() from None
        body, tag = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if len(body) != _LAYOUT.size or not 0 <= caller <= _UINT64 or not 0 <= scope <= _UINT64:
            raise invalid_token()
        if not hmac.compare_digest(tag, self._tag(listing, body)):
            raise invalid_token()
        version, owner, token_scope, position = _LAYOUT.unpack(body)
        if version != _VERSION or owner != caller or token_scope != scope:
            raise invalid_token()
        return int(position)


def page_size(requested: int, default: int, maximum: int) -> int:
    """The page size to use: 0 means ``default``; outside 1..``maximum`` is refused."""
    if requested == 0:
        return default
    if not 1 <= requested <= maximum:
        raise InvalidArgument.field(
            "page_size",
            f"must be between 1 and {maximum} (0 for {default})",
            reason=SIZE_REASON,
        )
    return requested
