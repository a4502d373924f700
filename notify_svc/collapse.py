"""Collapsing: a burst of messages in one channel becomes one notification with a count.

The rules (applied atomically per job by the store's apply script):

1. A job is applied at most once per (user, message): a marker records the first outcome
   for ``--dedup-ttl`` seconds, and a retried or re-claimed job replays that outcome
   instead of counting again.
2. A muted channel drops the job: no notification, no push.
3. When the user has an *open* notification for the same (kind, channel) — opened less
   than ``--collapse-window`` seconds ago and not read since — the message only raises
   its count and refreshes its preview, sender and last message id. Nothing is pushed.
4. Otherwise the message opens a new notification (its id is the message id) and that
   notification is pushed to every device once. The window runs from that moment and is
   not extended by later messages, so a channel that stays busy pushes at most once per
   window; marking the notification read closes the window early.

A window of 0 turns collapsing off (every message pushes).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from feedchat_runtime.notify_queue import Job
from notify_svc.store import ApplyResult, NotifyStore

CREATED = "created"
COLLAPSED = "collapsed"
MUTED = "muted"


class Collapser:
    """Applies jobs to users' notification lists with the rules above."""

    def __init__(
        self,
        store: NotifyStore,
        window: float,
        dedup_ttl: float,
        keep: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._window_ms = int(window * 1000)
        self._ttl_ms = max(1, int(dedup_ttl * 1000))
        self._keep = keep
        self._clock = clock

    async def apply(self, job: Job) -> ApplyResult:
        """Apply ``job``; the result says whether it opened (and must push) a notification."""
        at_ms = job.created_ms or int(self._clock() * 1000)
        return await self._store.apply(
            job.user_id,
            job.kind,
            job.channel_id,
            job.message_id,
            job.sender_id,
            job.preview,
            at_ms,
            self._window_ms,
            self._ttl_ms,
            self._keep,
        )
