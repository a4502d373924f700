"""CreatePost's client request ids: a retried CreatePost returns the post the first call made.

Everything about the de-duplication is here, so it moves with the posts' storage: the
request id's bounds, the record (the post id and a sha256 of the text), the verdict on a
record found, and its reads and writes in PostgreSQL's ``post_requests`` table
(``migrations/001_feed.sql``). The record is written in the same transaction as the post
(:meth:`feed_svc.records.FeedRecords.create_post`), so it survives exactly what the post
survives; two concurrent retries meet on the table's primary key and store one post.
A record older than ``REQUEST_TTL_S`` no longer counts and is replaced by a new call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from feedchat_runtime.errors import AlreadyExists, InvalidArgument

MAX_REQUEST_ID_CHARS = 64
REQUEST_TTL_S = 86400
"""Seconds a request id keeps returning its post (documented in the proto)."""


def check_request_id(request_id: str) -> str:
    """'' (no de-duplication) or 1..64 printable ASCII characters without spaces."""
    if len(request_id) > MAX_REQUEST_ID_CHARS or not all("!" <= c <= "~" for c in request_id):
        raise InvalidArgument.field(
            "request_id",
            f"at most {MAX_REQUEST_ID_CHARS} printable ASCII characters, no spaces",
            reason="REQUEST_ID_INVALID",
        )
    return request_id


@dataclass(frozen=True)
class PostRequest:
    """One CreatePost call that carries a request id."""

    author: int
    request_id: str
    digest: str  # sha256 of the text, hex

    @classmethod
    def of(cls, author: int, request_id: str, text: str) -> PostRequest:
        return cls(author, request_id, hashlib.sha256(text.encode()).hexdigest())

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
                reason="REQUEST_ID_REUSED",
                metadata={"post_id": post_id},
            )
        return int(post_id)


async def recorded(conn: asyncpg.Connection, request: PostRequest, now_ms: int) -> str | None:
    """The live record of ``request`` (``<post id>:<digest>``), or None."""
    row = await conn.fetchrow(
        "SELECT post_id, digest FROM post_requests "
        "WHERE author_id = $1 AND request_id = $2 AND created_ms >= $3",
        request.author,
        request.request_id,
        now_ms - REQUEST_TTL_S * 1000,
    )
    return None if row is None else f"{row['post_id']}:{row['digest']}"


async def claim(
    conn: asyncpg.Connection, request: PostRequest, post_id: int, now_ms: int
) -> str | None:
    """Record ``post_id`` for ``request`` inside the post's transaction; when a live record
    of an earlier call exists (committed, or committed while this waited on its row),
    nothing is written and that record is returned."""
    stored = await conn.fetchval(
        "INSERT INTO post_requests (author_id, request_id, post_id, digest, created_ms) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (author_id, request_id) DO UPDATE "
        "SET post_id = EXCLUDED.post_id, digest = EXCLUDED.digest, "
        "created_ms = EXCLUDED.created_ms WHERE post_requests.created_ms < $6 "
        "RETURNING true",
        request.author,
        request.request_id,
        post_id,
        request.digest,
        now_ms,
        now_ms - REQUEST_TTL_S * 1000,
    )
    if stored:
        return None
    return await recorded(conn, request, now_ms)
