"""Per-user bounds on long-lived calls: at most N concurrent streams of a method per user.

The RPC guard holds a slot for every open call of a method named in
``AuthPolicy.stream_limits`` made with a user token; one call past the limit is refused
with RESOURCE_EXHAUSTED ``TOO_MANY_STREAMS`` (ErrorInfo metadata ``limit`` and
``method``) while the user's other calls, and every other user, are unaffected. Slots are
counted per server process; a chat user's streams all land on the one server that owns
the user, so there the bound is exact.

A method may share another's bound (``AuthPolicy.shared_stream_limits``): chat's
PollInbox calls (held long polls, unary) take slots of the same per-user count as its
Connect streams, so a user holds at most N of both together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from feedchat_runtime.errors import ResourceExhausted

REASON = "TOO_MANY_STREAMS"


class UserStreamSlots:
    """Open calls per (method, user), bounded by ``limits`` (method path -> max)."""

    def __init__(self, limits: Mapping[str, int], shared: Mapping[str, str] | None = None) -> None:
        """``shared`` maps a method to the method in ``limits`` whose slots it takes."""
        self._limits = dict(limits)
        self._shared = dict(shared or {})
        self._open: dict[tuple[str, int], int] = {}

    def open_calls(self, method: str, user_id: int) -> int:
        return self._open.get((self._shared.get(method, method), user_id), 0)

    @contextlib.contextmanager
    def hold(self, method: str, user_id: int | None) -> Iterator[None]:
        """Hold one of the user's slots of ``method`` for the ``with`` block."""
        bound = self._shared.get(method, method)
        limit = self._limits.get(bound)
        if limit is None or user_id is None:
            yield
            return
        key = (bound, user_id)
        if self._open.get(key, 0) >= limit:
            sharing = [m for m, b in self._shared.items() if b == bound]
            name = "/".join(m.rsplit("/", 1)[-1] for m in [bound, *sharing])
            raise ResourceExhausted(
                f"at most {limit} {name} calls of one user may be open at once on this "
                "server; close one first",
                reason=REASON,
                metadata={"limit": str(limit), "method": method},
            )
        self._open[key] = self._open.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._open[key] - 1
            if left:
                self._open[key] = left
            else:
                del self._open[key]
