"""Every Redis name feed_svc uses -- keys, stream group, pub/sub channels and messages --
one function or constant per family, and the encoding of sorted-set members.

Per-user keys share the hash tag ``{u<id>}``, so a script on one user's keys stays in one
Redis Cluster slot::

    feed:{u<id>}:tl         zset    feed cache: '<20-digit post id>:<author id>' members
    feed:{u<id>}:floor      string  the cache is complete for post ids >= this
    feed:{u<id>}:stale      string  set: the cache is being rebuilt (reads pull instead)
    feed:{u<id>}:ack        string  newest post id the user's stream acknowledged
    feed:{u<id>}:rate       hash    CreatePost token bucket
    feed:{u<id>}:posts      zset    ids of the user's posts (cache of the record)
    feed:{u<id>}:followers  zset    follower ids (cache of the record)
    feed:{u<id>}:following  zset    followed ids (cache of the record)
    feed:{u<id>}:alerts     set     followers alerted of the user's posts (cache)
    feed:{u<id>}:alerting   set     authors the user gets post alerts for (cache)
    feed:{u<id>}:removed    string  set once the account was deleted
    feed:post:<post id>     string  post body JSON {"a": author, "t": text} (cache)

The fanout queue shares ``{fanout}``, so acknowledging a job, counting its progress and
logging the post as landed is one script::

    feed:{fanout}:jobs        stream  fanout jobs, consumer group ``fanout``
    feed:{fanout}:post:<id>   hash    one post's fanout progress
    feed:{fanout}:landed      stream  entries in the order they landed (resume tokens)

Process-wide keys (one slot each on a cluster): ``feed:active`` (hash user -> ms of the
last read), ``feed:streaming`` (zset user -> ms its open streams are good until),
``feed:celebrities`` (set), ``feed:warm`` / ``feed:warming`` (refill marker and lock).
``notify:queue`` is notify_svc's stream (its contract is :mod:`feedchat_runtime.notify_queue`).

Ids in sorted sets are 20-digit zero-padded decimals with score 0, ordered
lexicographically (exact for Snowflake ids beyond 2^53, which floats cannot score).
"""

from __future__ import annotations

from feedchat_runtime.ids import pad as pad  # re-exported: feed_svc builds members here


def entry(post_id: int, author_id: int) -> str:
    """A feed cache member: ``<padded post id>:<author id>``."""
    return f"{pad(post_id)}:{author_id}"


def parse_entry(member: str) -> tuple[int, int]:
    post, _, author = member.partition(":")
    return int(post), int(author)


# --- per-user keys ---------------------------------------------------------------------
def _user(user: int) -> str:
    return f"feed:{{u{user}}}"


def feed_key(user: int) -> str:
    return f"{_user(user)}:tl"


def floor_key(user: int) -> str:
    return f"{_user(user)}:floor"


def stale_key(user: int) -> str:
    return f"{_user(user)}:stale"


def ack_key(user: int) -> str:
    return f"{_user(user)}:ack"


def bucket_key(user: int) -> str:
    return f"{_user(user)}:rate"


def user_posts_key(user: int) -> str:
    return f"{_user(user)}:posts"


def followers_key(user: int) -> str:
    return f"{_user(user)}:followers"


def following_key(user: int) -> str:
    return f"{_user(user)}:following"


def alerts_key(author: int) -> str:
    return f"{_user(author)}:alerts"


def alerting_key(user: int) -> str:
    return f"{_user(user)}:alerting"


def removed_key(user: int) -> str:
    """Set when the user's account was deleted: their posts and follows are refused."""
    return f"{_user(user)}:removed"


def post_key(post_id: int) -> str:
    return f"feed:post:{post_id}"


# --- the fanout queue --------------------------------------------------------------------
GROUP = "fanout"
JOBS_KEY = "feed:{fanout}:jobs"
LANDED_KEY = "feed:{fanout}:landed"
"""Stream: feed entries in the order they landed (chunk acknowledged, celebrity post
created), kept for the StreamFeed resume window; its positions are resume tokens."""


def progress_key(post_id: int) -> str:
    return f"feed:{{fanout}}:post:{post_id}"


# --- process-wide keys ---------------------------------------------------------------------
CELEBRITIES_KEY = "feed:celebrities"
WARM_KEY = "feed:warm"
"""Set once the caches of the record (graph, post ids, celebrities) were filled from
PostgreSQL; missing after a wiped Redis, which triggers the refill."""
WARMING_KEY = "feed:warming"
"""The lock of the instance refilling the caches (expires if it dies)."""
ACTIVE_KEY = "feed:active"
"""Hash: user -> ms of their last feed read (fanout skips users not seen recently)."""
STREAMING_KEY = "feed:streaming"
"""Zset: user -> ms until which they have a StreamFeed open (refreshed while open)."""

# --- pub/sub ---------------------------------------------------------------------------
CONTROL_CHANNEL = "feed:control"
"""Process-wide notes: ``promoted:<author>`` when an author becomes a celebrity,
``removed:<post>:<author>`` when a post was deleted, ``landed:<log position>`` after each
landed-log entry (written by the scripts)."""
FOLLOWING_CHANGED = "ctl:following"
"""Sent on a user's live channel when whom they follow changed (streams resync)."""


def live_channel(user: int) -> str:
    """Fanned-out entries (and control notes) for one user's open streams."""
    return f"feed:live:{user}"


def author_channel(author: int) -> str:
    """Posts of a celebrity author, for the streams of their followers."""
    return f"feed:celebrity:{author}"


def promoted_note(author: int) -> str:
    return f"promoted:{author}"


def removed_note(post_id: int, author: int) -> str:
    return f"removed:{post_id}:{author}"
