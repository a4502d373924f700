"""Redis keys of chat: one function per key family (the scripts get every key via KEYS).

Hash tags put each script's keys in one slot, on one Redis node or a Redis Cluster:

- **Channel bucket** ``{cb:<b>}``, ``b = channel_id mod CHANNEL_BUCKETS``: everything the
  send's channel step touches -- the channel's member set, sequence counter and history,
  the senders' dedup records and rate buckets in that channel -- and the bucket's
  pending-fanout records. Keeping the pending records beside the channels (instead of one
  slot per channel) is what lets any chat server find them: it scans CHANNEL_BUCKETS
  known keys, never the key space.
- **User** ``{u:<id>}``: the user's inbox, the message ids recently appended to it (what
  makes a retried append a no-op), device cursors and read markers.

::

    chat:chan:{cb:<b>}:<channel>:members          set of member user ids (copy of PostgreSQL's)
    chat:chan:{cb:<b>}:<channel>:seq              counter: last per-channel seq
    chat:chan:{cb:<b>}:<channel>:hist             stream of messages, entry id "<seq>-0"
    chat:chan:{cb:<b>}:<channel>:dedup:<sender>:<client_msg_id>
                                                  hash: the send's digest and ids (TTL)
    chat:chan:{cb:<b>}:<channel>:rate:<sender>    hash: the sender's token bucket here
    chat:chan:{cb:<b>}:<channel>:stats:<day>      hash: message counts (chat_svc.store_stats)
    chat:chan:{cb:<b>}:<channel>:ids              zset message id -> seq (messages, not events)
    chat:chan:{cb:<b>}:<channel>:state            hash: edits, reactions, tombstones per
                                                  message (see chat_svc.scripts.SEND_MANY)
    chat:fanout:{cb:<b>}:due                      zset "<channel>:<seq>" -> claim time (ms)
    chat:fanout:{cb:<b>}:rec                      hash "<channel>:<seq>" -> recipient ids
    chat:inbox:{u:<id>}                           stream: the user's inbox
    chat:inbox:{u:<id>}:ids                       zset message id -> inbox entry ms
    chat:cursor:{u:<id>}                          hash device id -> acked inbox cursor
    chat:read:{u:<id>}                            hash channel id -> highest seq read
    chat:layout                                   string: the key layout ("2": this one)
"""

from __future__ import annotations

LAYOUT_KEY = "chat:layout"
"""The chat key layout this Redis holds (see :mod:`chat_svc.layout`)."""

CHANNEL_BUCKETS = 256
"""Channel buckets (hash tags). Part of the key layout: changing it moves every channel."""


def bucket(channel_id: int) -> int:
    return channel_id % CHANNEL_BUCKETS


def _chan(channel_id: int) -> str:
    return f"chat:chan:{{cb:{bucket(channel_id)}}}:{channel_id}"


def chan_members_key(channel_id: int) -> str:
    return f"{_chan(channel_id)}:members"


def chan_seq_key(channel_id: int) -> str:
    return f"{_chan(channel_id)}:seq"


def chan_history_key(channel_id: int) -> str:
    return f"{_chan(channel_id)}:hist"


def chan_ids_key(channel_id: int) -> str:
    return f"{_chan(channel_id)}:ids"


def chan_state_key(channel_id: int) -> str:
    return f"{_chan(channel_id)}:state"


def dedup_key(channel_id: int, sender_id: int, client_msg_id: str) -> str:
    return f"{_chan(channel_id)}:dedup:{sender_id}:{client_msg_id}"


def rate_key(channel_id: int, sender_id: int) -> str:
    return f"{_chan(channel_id)}:rate:{sender_id}"


def chan_stats_key(channel_id: int, day: int) -> str:
    return f"{_chan(channel_id)}:stats:{day}"


def fanout_due_key(bucket_no: int) -> str:
    return f"chat:fanout:{{cb:{bucket_no}}}:due"


def fanout_records_key(bucket_no: int) -> str:
    return f"chat:fanout:{{cb:{bucket_no}}}:rec"


def fanout_member(channel_id: int, seq: int) -> str:
    """A pending-fanout record's name in its bucket's ``due`` and ``rec`` keys."""
    return f"{channel_id}:{seq}"


def inbox_key(user_id: int) -> str:
    return f"chat:inbox:{{u:{user_id}}}"


def inbox_ids_key(user_id: int) -> str:
    return f"chat:inbox:{{u:{user_id}}}:ids"


def cursor_key(user_id: int) -> str:
    return f"chat:cursor:{{u:{user_id}}}"


def read_key(user_id: int) -> str:
    return f"chat:read:{{u:{user_id}}}"
