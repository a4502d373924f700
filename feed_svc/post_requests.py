"""CreatePost's client request ids: a retried CreatePost returns the post the first call made.

Everything about the de-duplication is here, so it moves with the posts' storage: the
request id's bounds, the record (``<post id>:<sha256 of the text>``) and its key, the
verdict on a record found, and the read of it. The record is written in the same
transaction as the post (:meth:`feed_svc.store.FeedStore.create_post`, which WATCHes its
key so two concurrent retries store one post), so it survives exactly what the post
survives, server restarts included.

- ``feed:{u<author>}:req:<request id>``  string ``<post id>:<digest>``, kept ``REQUEST_TTL_S``
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from feedchat_runtime.errors import AlreadyExists, InvalidArgument

MAX_REQUEST_ID_CHARS = 64
REQUEST_TTL_S = 86400
"""Seconds a request id keeps returning its post (documented in the proto)."""


def check_request_id(request_id: str) -> str:
    """'' (no de-duplication) or 1..64 printable ASCII characters without spaces."""
    if len(request_id) > MAX_REQUEST_ID_CHARS or not all(
        "!" <= c <= "~" for c in request_id
    ):
        raise InvalidArgument.field(
            "request_id", f"at most {MAX_REQUEST_ID_CHARS} printable ASCII characters, "
            "no spaces", reason="REQUEST_ID_INVALID",
        )
    return request_id


def request_key(author: int, request_id: str) -> str:
    return f"feed:{{u{author}}}:req:{request_id}"


@dataclass(frozen=True)
class PostRequest:
    """One CreatePost call that carries a request id."""

    author: int
    request_id: str
    digest: str  # sha256 of the text, hex

    @classmethod
    def of(cls, author: int, request_id: str, text: str) -> PostRequest:
        return cls(author, request_id, hashlib.sha256(text.encode()).hexdigest())

    @property
    def key(self) -> str:
        return request_key(self.author, self.request_id)

    def record(self, post_id: int) -> str:
        return f"{post_id}:{self.digest}"

    def original(self, record: str | None) -> int | None:
        """The post an earlier call with this request id stored (None: no earlier call)."""
        return None if record is None else self.post_of(record)

    def post_of(self, record: str) -> int:
        """The post id of a record of this request id; ALREADY_EXISTS when that call had
        another text."""
        post_id, _, digest = record.partition(":")
        if digest != self.digest:
            raise AlreadyExists(
                "request_id was already used for a post with a different text",
                reason="REQUEST_ID_REUSED", metadata={"post_id": post_id},
            )
        return int(post_id)


class PostRequestStore:
    """The read half in Redis (the write is part of the post's transaction)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def recorded(self, request: PostRequest) -> str | None:
        return as_record(await self.redis.get(request.key))


def as_record(found: bytes | str | None) -> str | None:
    """A record as Redis returned it (bytes), as text."""
    return found.decode() if isinstance(found, bytes) else found
